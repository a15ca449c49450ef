"""Theory beside measurement: mean-field theory's prediction for each trial (`initsweep.prediction`) set
against what trained.

For every MLP trial the report gives sigma_w^2, sigma_b^2, chi1, the phase and 6 xi_c, the depth up to
which Schoenholz et al. (2017) find networks train. When the grid's first axis is `model.depth`, each row's
6 xi_c is drawn over the depth heatmap and the generated summary says, for each row (each weight scale),
the deepest depth that trains next to its 6 xi_c. The phase diagram places every trial in the
(sigma_w^2, sigma_b^2) plane beside the critical line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from initsweep.config import SweepConfig
from initsweep.prediction import Prediction, predict
from initsweep.report import plots
from initsweep.report.grid import GridPanel, chance_accuracy, trains
from initsweep.report.stats import Interval, mean_ci
from initsweep.report.tables import ci_cell, md_table
from initsweep.results import TrialResult
from initsweep.theory import critical_weight_variance, mean_field

__all__ = [
    "PhasePanel",
    "RowTheory",
    "depth_marks",
    "depth_scale_field",
    "phase_panels",
    "row_theories",
    "theory_section",
]


@dataclass
class RowTheory:
    """One row of a depth panel: theory's numbers and the deepest depth that trained."""

    row: str
    prediction: Prediction
    deepest: object | None
    """The deepest column whose interval lies above chance + the margin; None if none does."""
    deepest_ci: Interval | None


def _depth_axis(sweep: SweepConfig) -> bool:
    return bool(sweep.grid) and next(iter(sweep.grid)) == "model.depth"


def _row_prediction(panel: GridPanel, row: str) -> Prediction | None:
    """A row's prediction: the same at every depth (equal hidden widths), so its first cell's."""
    cell = next((panel.cells[row, c] for c in panel.columns if (row, c) in panel.cells), None)
    return predict(cell.config) if cell else None


def row_theories(panel: GridPanel, sweep: SweepConfig) -> list[RowTheory]:
    """Theory and measurement for each row of a depth panel (rows theory has no numbers for left out)."""
    chance = chance_accuracy(sweep)
    out = []
    for row in panel.rows:
        prediction = _row_prediction(panel, row)
        if prediction is None:
            continue
        measured = [c for c in panel.columns if (row, c) in panel.intervals] if chance is not None else []
        trained = [c for c in measured if trains(panel.intervals[row, c], chance)]
        deepest = trained[-1] if trained else None
        out.append(RowTheory(row, prediction, deepest, panel.intervals[row, deepest] if trained else None))
    return out


def depth_marks(panels: list[GridPanel], sweep: SweepConfig) -> list[dict[str, float]] | None:
    """Per panel, row -> 6 xi_c, for the heatmap; None unless the columns are depths."""
    if not _depth_axis(sweep):
        return None
    marks = [{t.row: t.prediction.trainable_depth for t in row_theories(p, sweep)} for p in panels]
    return marks if any(marks) else None


FAR = 1e4
"""A 6 xi_c beyond this many layers is shown as ∞ (the critical line, within the root's precision)."""


def _depth_text(depth: float) -> str:
    return "∞" if depth > FAR else f"{depth:.0f}" if depth >= 10 else f"{depth:.1f}"


def _numbers(p: Prediction) -> list[str]:
    mf = p.mean_field
    depth = _depth_text(p.trainable_depth)
    return [f"{mf.weight_variance:.3g}", f"{mf.bias_variance:.3g}", f"{mf.chi1:.3f}", mf.phase, depth]


def theory_lines(theories: list[RowTheory], axis: str) -> list[str]:
    """One sentence per row: its weight scale, phase and 6 xi_c, and the deepest depth that trained."""
    lines = []
    for t in theories:
        mf = t.prediction.mean_field
        measured = (
            f"the deepest {axis} that trains is {t.deepest} ({ci_cell(t.deepest_ci)})"
            if t.deepest is not None
            else f"no {axis} trains"
        )
        lines.append(
            f"{t.row} (σ_w² {mf.weight_variance:.3g}, σ_b² {mf.bias_variance:.3g}, χ1 {mf.chi1:.3f}, {mf.phase}): "
            f"{measured}; theory's 6 ξc = {_depth_text(t.prediction.trainable_depth)}."
        )
    return lines


@dataclass
class PhasePanel:
    """One panel of the phase diagram: trials of one activation and depth."""

    activation: str
    depth: int
    points: list[tuple[float, float, float]]
    """(sigma_w^2, sigma_b^2, mean objective) per trial."""


def phase_panels(results: list[TrialResult], sweep: SweepConfig) -> dict[str, PhasePanel]:
    """Title (`tanh, depth 40`) -> its trials in the (sigma_w^2, sigma_b^2) plane."""
    metric = sweep.objective.metric
    keyed = []
    for r in results:
        p = predict(r.config) if r.seeds else None
        if p is not None:
            keyed.append((r.config.model.activation, len(r.config.model.hidden), p.mean_field, r.mean(metric)))
    panels: dict[str, PhasePanel] = {}
    for activation, depth, mf, value in sorted(keyed, key=lambda k: (k[0], k[1])):
        title = f"{activation}, depth {depth}"
        panel = panels.setdefault(title, PhasePanel(activation, depth, []))
        panel.points.append((mf.weight_variance, mf.bias_variance, value))
    return panels


CONTOUR_GRID = (32, 20)
"""sigma_w^2 x sigma_b^2 points where 6 xi_c is computed for the contour (about 5 ms each)."""


def depth_scale_field(activation: str, sw2_range: tuple[float, float], top: float):
    """6 xi_c over a grid of the plane, for the contour 6 xi_c = depth (where a network that deep stops
    training, on either side of the critical line); xs, ys, values[y][x]."""
    nx, ny = CONTOUR_GRID
    lo, hi = sw2_range
    xs = [lo + (hi - lo) * i / (nx - 1) for i in range(nx)]
    ys = [top * j / (ny - 1) for j in range(ny)]
    values = []
    for sb2 in ys:
        row = []
        for sw2 in xs:
            try:
                row.append(min(mean_field(activation, sw2, sb2).trainable_depth, FAR))
            except ValueError:  # an absurd scale the length map cannot settle
                row.append(float("nan"))
        values.append(row)
    return xs, ys, values


def _critical_line(activation: str, top: float) -> list[tuple[float, float]]:
    line = []
    for i in range(41):
        sb2 = top * i / 40
        try:
            line.append((critical_weight_variance(activation, sb2), sb2))
        except ValueError:  # no critical point at this bias (gelu without bias)
            continue
    return line


def theory_section(
    results: list[TrialResult], panels: list[GridPanel], sweep: SweepConfig, folder: Path
) -> tuple[str, dict[str, Path]]:
    """Markdown "Theory beside measurement" and its figures; ("", {}) when no trial has a prediction."""
    points = phase_panels(results, sweep)
    if not points:
        return "", {}
    metric = sweep.objective.metric
    top = max(max(sb2 for _, sb2, _ in p.points) for p in points.values()) * 1.25 or 0.1
    sw2s = [sw2 for p in points.values() for sw2, _, _ in p.points]
    sw2_range = (min(sw2s) * 0.9, max(sw2s) * 1.05)
    activations = {p.activation for p in points.values()}
    critical = {a: _critical_line(a, top) for a in activations}
    fields = {a: depth_scale_field(a, sw2_range, top) for a in activations} if max(sw2s) < 50 else {}
    pngs = {
        "Phase diagram: each trial in the (σ_w², σ_b²) plane": plots.phase_diagram(
            {title: p.points for title, p in points.items()},
            {title: critical[p.activation] for title, p in points.items()},
            metric,
            folder / "plots" / "phase_diagram.png",
            {title: (fields[p.activation], p.depth) for title, p in points.items() if p.activation in fields},
        )
    }
    dropout = getattr(sweep.model, "dropout", 0.0)
    intro = (
        "Mean-field theory (Poole et al. 2016; Schoenholz et al., ICLR 2017) for each MLP trial, from the "
        "hidden layers' weight variance σ_w² = fan_in × Var(W) and the biases' σ_b²: χ1 < 1 is the ordered "
        "phase (signals collapse, gradients vanish), χ1 > 1 the chaotic one (gradients explode), and networks "
        "train up to about 6 ξc layers, infinite on the critical line. The theory is for infinitely wide "
        "networks without dropout, trained long enough; "
        + (f"this sweep has dropout {dropout:g}, which it leaves out; " if dropout else "")
        + "the numbers assume the layer named in each trial's MLflow param `theory.layer`."
    )
    parts = [f"## Theory beside measurement\n\n{intro}"]
    header = ["σ_w²", "σ_b²", "χ1", "phase", "6 ξc"]
    if _depth_axis(sweep):
        for panel in panels:
            theories = row_theories(panel, sweep)
            if not theories:
                continue
            title = f"### {panel.title}" if panel.title else "### All trials"
            lines = "\n".join(f"- {line}" for line in theory_lines(theories, panel.axis))
            cells = [
                [
                    t.row,
                    *_numbers(t.prediction),
                    str(t.deepest) if t.deepest is not None else "none",
                    ci_cell(t.deepest_ci) if t.deepest_ci else "",
                ]
                for t in theories
            ]
            table = md_table(["row", *header, f"deepest {panel.axis} that trains", metric], cells)
            parts.append(f"{title}\n\n{lines}\n\n{table}")
    else:
        rows = []
        for r in results:
            p = predict(r.config) if r.seeds else None
            if p is not None:
                ci = mean_ci([s.final[metric] for s in r.seeds], sweep.report.level)
                key = (p.mean_field.weight_variance, p.mean_field.bias_variance)
                rows.append((key, [r.name, *_numbers(p), ci_cell(ci)]))
        cells = [cells for _, cells in sorted(rows, key=lambda row: row[0])]  # by σ_w², then σ_b²
        parts.append(md_table(["trial", *header, f"measured {metric}"], cells))
    parts += [f"![{title}](plots/{png.name})" for title, png in pngs.items()]
    return "\n\n".join(parts) + "\n", pngs
