"""Results people can trust: per-trial summaries over seeds with confidence intervals, paired comparisons
against a baseline, published numbers beside ours, plots, and the Markdown/HTML/CSV report.

The report reads `ReportRow`s only (a trial's scheme and its seeds' final metrics, loss curves and init
diagnostics), built from in-process results or read back from MLflow, so the report written at the end
of a sweep and one rebuilt from MLflow alone are the same files.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import markdown

from initsweep.config import SweepConfig
from initsweep.schemes import Range
from initsweep.stats import Interval, Paired, mean_ci, paired_difference
from initsweep.train import SeedResult, TrialResult

__all__ = [
    "ReportRow",
    "RowSummary",
    "SeedRecord",
    "aggregate",
    "build_report",
    "ci_cell",
    "md_table",
    "rows_from_results",
    "summarize",
    "text_table",
]

SUMMARY_METRICS = ("val_accuracy", "val_accuracy_train_mode", "test_accuracy", "train_loss", "last_batch_loss")


def aggregate(seeds: Sequence[SeedResult], epoch: int | None = None) -> dict[str, float]:
    """Mean (`metric`) and sample std (`metric_std`) over seeds of each metric at `epoch` (1-based),
    or of the final metrics with test accuracy when `epoch` is None; plus `n` and `diverged`."""
    rows = [s.final if epoch is None else s.epochs[epoch - 1] for s in seeds]
    out: dict[str, float] = {"n": len(rows), "diverged": sum(s.diverged for s in seeds)}
    for key in rows[0]:
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


@dataclass
class SeedRecord:
    seed: int
    final: dict[str, float]
    """The last epoch's metrics, and test_accuracy when measured."""
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    diverged: bool = False


@dataclass
class ReportRow:
    """One trial config and its seeds, in the order the trials finished."""

    name: str
    scheme: str
    params: dict[str, float | int | str]
    seeds: list[SeedRecord]
    objective: float = math.nan
    """Mean over seeds of the sweep's objective metric."""
    axes: dict[str, object] = field(default_factory=dict)
    """The grid values of the trial (dotted key -> value)."""
    row: str = ""
    """The config's scheme row it ran (the same under every grid combination); default: `name`."""

    def __post_init__(self) -> None:
        self.row = self.row or self.name


def rows_from_results(results: list[TrialResult], metric: str) -> list[ReportRow]:
    rows = []
    for r in results:
        seeds = [SeedRecord(s.seed, s.final, list(s.step_losses), s.diagnostics, s.diverged) for s in r.seeds]
        c = r.config
        row = ReportRow(c.name, c.scheme.scheme, dict(c.scheme.params), seeds, axes=dict(c.axes), row=c.scheme.name)
        row.objective = statistics.fmean(s.final[metric] for s in seeds)
        rows.append(row)
    return rows


@dataclass
class RowSummary:
    row: ReportRow
    intervals: dict[str, Interval]
    """Mean and CI over seeds of each metric the row has."""
    diverged: int
    vs_baseline: Paired | None = None
    reference: dict[str, tuple[float, bool]] = field(default_factory=dict)
    """Run name -> (published value, inside our interval)."""


def summarize(rows: list[ReportRow], sweep: SweepConfig) -> list[RowSummary]:
    """Per-row intervals, the paired comparison with the baseline, published numbers; sorted best first
    (rows with a diverged seed last: they are never the best)."""
    level, obj = sweep.report.level, sweep.objective
    summaries = []
    for row in rows:
        metrics = [m for m in SUMMARY_METRICS if all(m in s.final for s in row.seeds)]
        intervals = {m: mean_ci([s.final[m] for s in row.seeds], level) for m in metrics}
        summaries.append(RowSummary(row, intervals, sum(s.diverged for s in row.seeds)))
    for s in summaries:  # under a grid, against the baseline row with the same grid values
        baseline = _baseline([r for r in rows if r.axes == s.row.axes], sweep)
        if baseline is not None and s.row is not baseline:
            s.vs_baseline = _paired(s.row, baseline, obj.metric, level)
    ref = sweep.report.reference
    if ref is not None:
        for s in summaries:
            ours = s.intervals.get(ref.metric)
            for run, value in ref.values.get(s.row.row, {}).items():
                s.reference[run] = (value, ours is not None and ours.contains(value))
    sign = -1 if obj.mode == "max" else 1
    summaries.sort(key=lambda s: (s.diverged > 0, sign * s.intervals[obj.metric].mean))
    return summaries


def _baseline(rows: list[ReportRow], sweep: SweepConfig) -> ReportRow | None:
    wanted = sweep.report.baseline
    for row in rows:
        if (wanted is not None and row.row == wanted) or (wanted is None and row.scheme == "pytorch_default"):
            return row
    return None


def _paired(row: ReportRow, baseline: ReportRow, metric: str, level: float) -> Paired | None:
    mine = {s.seed: s.final[metric] for s in row.seeds}
    theirs = {s.seed: s.final[metric] for s in baseline.seeds}
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return paired_difference([mine[k] for k in shared], [theirs[k] for k in shared], level)


def _fmt(x: float, digits: int = 2) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def ci_cell(ci: Interval | None) -> str:
    if ci is None:
        return "-"
    if math.isnan(ci.low):
        return f"{ci.mean:.2f} (n=1)"
    return f"{ci.mean:.2f} [{ci.low:.2f}, {ci.high:.2f}]"


def _p(p: float) -> str:
    return "-" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def table_rows(summaries: list[RowSummary], sweep: SweepConfig) -> tuple[list[str], list[list[str]]]:
    """The result table's header and cells (shared by the terminal, Markdown and CSV forms)."""
    pct = round(sweep.report.level * 100)
    train_mode = any("val_accuracy_train_mode" in s.intervals for s in summaries)
    has_baseline = any(s.vs_baseline is not None for s in summaries)
    obj = sweep.objective.metric
    header = ["rank", "scheme", "n", f"val acc % ({pct}% CI)"]
    header += [f"val acc dropout-on % ({pct}% CI)"] if train_mode else []
    header += ["test acc %", "train loss (epoch mean)", "last-batch loss", "diverged"]
    header += [f"Δ {obj} vs baseline ({pct}% CI)", "p (paired t)"] if has_baseline else []
    cells = []
    for rank, s in enumerate(summaries, 1):
        i = s.intervals
        row = [str(rank), s.row.name, str(len(s.row.seeds)), ci_cell(i.get("val_accuracy"))]
        row += [ci_cell(i.get("val_accuracy_train_mode"))] if train_mode else []
        row += [
            _fmt(i["test_accuracy"].mean) if "test_accuracy" in i else "-",
            _fmt(i["train_loss"].mean, 4),
            _fmt(i["last_batch_loss"].mean, 4),
            str(s.diverged),
        ]
        if has_baseline:
            vs = s.vs_baseline
            row += ["baseline", ""] if vs is None else [_signed_ci(vs.difference), _p(vs.p_value)]
        cells.append(row)
    return header, cells


def _signed_ci(ci: Interval) -> str:
    if math.isnan(ci.low):
        return f"{ci.mean:+.2f} (n=1)"
    return f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"


def text_table(summaries: list[RowSummary], sweep: SweepConfig) -> str:
    header, cells = table_rows(summaries, sweep)
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 1 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in cells]
    return "\n".join(lines)


def md_table(header: list[str], cells: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *cells]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def reference_section(summaries: list[RowSummary], sweep: SweepConfig) -> str:
    ref = sweep.report.reference
    if ref is None:
        return ""
    runs = sorted({run for s in summaries for run in s.reference})
    pct = round(sweep.report.level * 100)
    header = ["scheme", f"ours: {ref.metric} ({pct}% CI)"] + [f"{run}" for run in runs]
    cells = []
    inside = outside = 0
    for s in summaries:
        if not s.reference:
            continue
        row = [s.row.name, ci_cell(s.intervals.get(ref.metric))]
        for run in runs:
            if run not in s.reference:
                row.append("")
                continue
            value, ok = s.reference[run]
            inside, outside = inside + ok, outside + (not ok)
            row.append(f"{value:.3f} {'inside' if ok else 'OUTSIDE'}")
        cells.append(row)
    intro = (
        f"Published numbers ({ref.source or 'reference'}) beside our {pct}% interval of `{ref.metric}`: "
        f"{inside} inside, {outside} outside."
    )
    return f"## Published numbers\n\n{intro}\n\n{md_table(header, cells)}\n"


def boundary_warnings(summaries: list[RowSummary], sweep: SweepConfig, edge: float = 0.05) -> list[str]:
    """Searched parameters of the best trial that sit within `edge` of their range's ends."""
    if sweep.search is None or not summaries or summaries[0].diverged:
        return []
    best = summaries[0].row
    notes = []
    for name, r in sweep.search.space().get(best.scheme, {}).items():
        if not isinstance(r, Range) or r.choices or name not in best.params:
            continue
        value = float(best.params[name])
        lo, hi, v = (math.log(r.low), math.log(r.high), math.log(value)) if r.log else (r.low, r.high, value)
        position = (v - lo) / (hi - lo)
        if position < edge or position > 1 - edge:
            side = "low" if position < edge else "high"
            notes.append(
                f"The best trial's `{best.scheme}.{name}` = {value:.4g} lies within {edge:.0%} of the search "
                f"range's {side} end [{r.low:g}, {r.high:g}]: the optimum may lie outside; widen the range."
            )
    return notes


def importances(rows: list[ReportRow], sweep: SweepConfig) -> dict[str, float]:
    """fANOVA importances of the searched parameters, from a study rebuilt out of the rows."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = sweep.search.space()
    scheme_dist = CategoricalDistribution(list(space))
    study = optuna.create_study(direction="maximize" if sweep.objective.mode == "max" else "minimize")
    for row in rows:
        if row.scheme not in space or any(s.diverged for s in row.seeds):
            continue
        params, dists = {"scheme": row.scheme}, {"scheme": scheme_dist}
        for name, r in space[row.scheme].items():
            if not isinstance(r, Range):
                continue
            key = f"{row.scheme}.{name}"
            params[key] = row.params[name]
            if r.choices:
                dists[key] = CategoricalDistribution(list(r.choices))
            elif r.integer:
                dists[key] = IntDistribution(int(r.low), int(r.high), log=r.log)
            else:
                dists[key] = FloatDistribution(r.low, r.high, log=r.log)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=row.objective))
    if len(study.trials) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


@dataclass
class Report:
    folder: Path
    files: list[Path]
    summaries: list[RowSummary]
    text: str
    """The result table for the terminal."""


def build_report(
    rows: list[ReportRow],
    sweep: SweepConfig,
    folder: Path,
    title_note: str = "",
    failed: Sequence[tuple[str, str]] = (),
) -> Report:
    """Write report.md, report.html (images inlined), results.csv and plots/*.png into `folder`;
    `failed` lists the trials that ended in an error, as (name, the error's last line)."""
    from initsweep import gridreport, plots  # matplotlib: only where a report is drawn, not in every trial

    folder.mkdir(parents=True, exist_ok=True)
    summaries = summarize(rows, sweep)
    ranked = [s.row for s in summaries]
    obj = sweep.objective
    panels = gridreport.grid_panels(rows, sweep)
    grid_pngs = {}
    if panels:
        grid_pngs = {
            f"Mean {obj.metric} across the grid": plots.grid_heatmap(
                panels, obj.metric, folder / "plots" / "grid_heatmap.png"
            ),
            "Signal propagation at init, deepest network of each scheme": plots.signal_by_layer(
                panels, folder / "plots" / "signal_by_depth.png"
            ),
        }
    grid_md = gridreport.grid_section(panels, sweep, grid_pngs)
    pngs = {
        "Validation accuracy per scheme": plots.accuracy_by_scheme(
            ranked, summaries, "val_accuracy", folder / "plots" / "val_accuracy.png"
        ),
        "Training loss": plots.loss_curves(ranked[:12], folder / "plots" / "loss_curves.png"),
        "Signal propagation at init": plots.signal_propagation(
            ranked[:12], folder / "plots" / "signal_propagation.png"
        ),
    }
    notes: list[str] = []
    if sweep.search is not None:
        space = sweep.search.space()
        pngs["Objective against each searched parameter"] = plots.objective_vs_params(
            rows, space, obj.metric, folder / "plots" / "objective_vs_params.png"
        )
        pngs["Optimization history"] = plots.optimization_history(
            rows, obj.mode, obj.metric, folder / "plots" / "optimization_history.png"
        )
        imp = importances(rows, sweep)
        if imp:
            pngs["Parameter importances"] = plots.param_importances(imp, folder / "plots" / "param_importances.png")
        notes = boundary_warnings(summaries, sweep)

    header, cells = table_rows(summaries, sweep)
    with open(folder / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *cells])

    md = _markdown(sweep, summaries, header, cells, pngs, notes, title_note, failed, grid_md)
    (folder / "report.md").write_text(md)
    (folder / "report.html").write_text(_html(md, sweep.name, folder))
    files = [folder / "report.md", folder / "report.html", folder / "results.csv", *grid_pngs.values()]
    files += pngs.values()
    text = text_table(summaries, sweep)
    if failed:
        text += "\n\nfailed (no result, after their retries):\n" + "\n".join(f"  {n}: {e}" for n, e in failed)
    return Report(folder, files, summaries, text)


def _markdown(sweep, summaries, header, cells, pngs, notes, title_note, failed=(), grid_md="") -> str:
    obj, pct = sweep.objective, round(sweep.report.level * 100)
    kind = "Optuna search" if sweep.search else "grid"
    best = next((s for s in summaries if not s.diverged), None)
    baseline_row = _baseline([s.row for s in summaries], sweep)
    baseline = baseline_row.row if baseline_row else None
    parts = [
        f"# initsweep report: {sweep.name}",
        f"{kind} sweep, {len(summaries)} trials x {len(sweep.seeds)} seeds ({sweep.seeds}); "
        f"{sweep.model.name} on {sweep.data.dataset}"
        f"{f' ({sweep.data.limit} images)' if sweep.data.limit else ''}, {sweep.train.optimizer} "
        f"lr {sweep.train.lr:g}, batch {sweep.train.batch_size}, {sweep.train.epochs} epochs. "
        f"Objective: mean `{obj.metric}` over seeds ({obj.mode}). {title_note}".strip(),
    ]
    if best is not None:
        parts.append(f"**Best:** {best.row.name}, {obj.metric} {ci_cell(best.intervals[obj.metric])} ({pct}% CI).")
    if grid_md:
        parts.append(grid_md.rstrip())
    parts.append(
        f"## Results\n\nMeans over seeds with {pct}% t-intervals. `val acc` is measured in eval mode (the sound "
        "number); `dropout-on` with dropout still active, as the founding notebook did. "
        + (
            f"Δ is each row minus the baseline ({baseline}{', with the same grid values' if sweep.grid else ''}), "
            "paired by seed (seeds share data order and dropout streams), with a paired t-test. "
            if baseline
            else ""
        )
        + "Rows with a diverged seed are ranked last.\n\n"
        + md_table(header, cells)
    )
    if failed:
        parts.append(
            "## Failed trials\n\nThese trials raised an error on every attempt (see `error.txt` in their MLflow "
            "runs) and have no result:\n\n" + "\n".join(f"- {n}: `{e}`" for n, e in failed)
        )
    ref = reference_section(summaries, sweep)
    if ref:
        parts.append(ref)
    if notes:
        parts.append("## Search range\n\n" + "\n".join(f"- {n}" for n in notes))
    for title, png in pngs.items():
        parts.append(f"## {title}\n\n![{title}](plots/{png.name})")
    return "\n\n".join(parts) + "\n"


def _html(md: str, title: str, folder: Path) -> str:
    """The Markdown as one self-contained HTML page (images inlined, so it opens inside MLflow's UI)."""
    body = markdown.markdown(md, extensions=["tables"])
    for png in sorted((folder / "plots").glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        body = body.replace(f'src="plots/{png.name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
