"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG.

They read `TrialResult`s (a trial config and its seeds' results), so a report drawn at the end of a sweep
and one rebuilt from MLflow are the same pictures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from initsweep.catalog.schemes import Range
from initsweep.catalog.tasks import DIVERGED_LOSS
from initsweep.report.tables import diverged_note

if TYPE_CHECKING:
    from initsweep.report.grid import GridPanel
    from initsweep.report.summary import RowSummary
    from initsweep.report.transfer import TransferPanel
    from initsweep.report.tuning import Choice
    from initsweep.results import TrialResult

__all__ = [
    "grid_heatmap",
    "loss_curves",
    "lr_transfer",
    "metric_by_scheme",
    "objective_vs_params",
    "optimization_history",
    "param_importances",
    "phase_diagram",
    "signal_by_layer",
    "signal_propagation",
    "tuning_sensitivity",
]

ZERO_FLOOR = 1e-12
"""Where a zero lands on a log axis (all-zeros init has exactly zero activations)."""


def _save(fig, path: Path, layout: bool = True) -> Path:
    """Write the PNG; `layout=False` for figures with a shared colorbar (trimmed to their contents instead)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None}, bbox_inches=None if layout else "tight")
    plt.close(fig)
    return path


def _colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def loss_curves(rows: list[TrialResult], path: Path) -> Path:
    """Training loss against step, mean over seeds with a min-max band: the founding experiment's plot."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for row, color in zip(rows, _colors(len(rows)), strict=True):
        curves = [dict(s.step_losses) for s in row.seeds if s.step_losses]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not steps:
            continue
        values = np.array([[c[step] for step in steps] for c in curves])
        ax.plot(steps, values.mean(0), color=color, label=row.name, lw=1.4)
        ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.18, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (minibatch, log scale)")
    ax.set_title("Training loss: mean over seeds, band = min to max")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def metric_by_scheme(rows: list[TrialResult], summaries: list[RowSummary], metric: str, path: Path) -> Path:
    """Each seed's final value as a dot, the mean with its confidence interval as a bar."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    ys = np.arange(len(rows))[::-1]
    for y, row, s in zip(ys, rows, summaries, strict=True):
        values = [seed.final[metric] for seed in row.seeds]
        ax.scatter(values, [y] * len(values), s=14, color="tab:gray", alpha=0.7, zorder=2)
        ci = s.intervals[metric]
        if not math.isnan(ci.low):
            ax.errorbar(
                ci.mean, y, xerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="none", ecolor="tab:blue", capsize=3
            )
        ax.scatter([ci.mean], [y], marker="D", color="tab:blue", zorder=3)
    ax.set_yticks(ys, [r.name for r in rows], fontsize=8)
    unit = " (%)" if "accuracy" in metric else ""
    ax.set_xlabel(f"{metric}{unit}: seeds (dots), mean and 95% CI (diamond, bar)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def signal_propagation(rows: list[TrialResult], path: Path) -> Path:
    """Per-layer output std and weight-gradient norm at init (log scale): why a scheme fails."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    panels = {"act_std": [], "grad_norm": []}
    for row in rows:
        diags = [s.diagnostics for s in row.seeds if s.diagnostics]
        for key, lines in panels.items():
            if diags:
                lines.append((row.name, np.array([[layer[key] for layer in d] for d in diags]).mean(0)))
    layers = next((s.diagnostics for r in rows for s in r.seeds if s.diagnostics), [])
    for ax, lines, title in zip(axes, panels.values(), ("output std", "weight-gradient norm"), strict=True):
        positive = [v for _, values in lines for v in values if v > 0 and np.isfinite(v)]
        floor = min(positive) / 100 if positive else ZERO_FLOOR  # exact zeros (all-zeros init) drawn here
        for (name, values), color in zip(lines, _colors(len(lines)), strict=True):
            ax.plot(range(1, len(values) + 1), np.where(values > 0, values, floor), marker="o", color=color, label=name)
        ax.axhline(floor, color="black", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(layers) + 1), [d["layer"] for d in layers], fontsize=7, rotation=20)
        ax.set_title(f"At init: {title} of each layer (dotted line: exactly 0)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean over seeds (log scale)")
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def objective_vs_params(
    rows: list[TrialResult],
    space: dict[str, dict[str, Range | float | int | str]],
    metric: str,
    path: Path,
    settings: dict[str, Range] | None = None,
) -> Path:
    """One panel per searched parameter name (and per searched setting, `init.bias_std`): the objective
    against its value, coloured by scheme."""
    panels: dict[str, list[tuple[str, Range]]] = {}
    for scheme, params in space.items():
        for name, r in params.items():
            if isinstance(r, Range) and not r.choices:
                panels.setdefault(name, []).append((scheme, r))
    for key, r in (settings or {}).items():
        panels[key] = [(scheme, r) for scheme in space]
    names = sorted(panels) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    schemes = sorted(space)
    colors = dict(zip(schemes, _colors(len(schemes)), strict=True))
    for ax, name in zip(axes[0], names, strict=True):
        for scheme, r in panels.get(name, []):
            pts = [
                ((r.params | r.axes)[name], r.mean(metric))
                for r in rows
                if r.scheme == scheme and name in (r.params | r.axes)
            ]
            if pts:
                ax.scatter(*zip(*pts, strict=True), color=colors[scheme], label=scheme, s=18)
            if r.log:
                ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if panels.get(name):
            ax.legend(fontsize=7)
    return _save(fig, path)


def optimization_history(rows: list[TrialResult], mode: str, metric: str, path: Path) -> Path:
    """The objective of each trial in the order trials finished, and the best so far."""
    fig, ax = plt.subplots(figsize=(8, 4))
    values = [r.mean(metric) for r in rows]
    best = np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)
    ax.scatter(range(1, len(values) + 1), values, s=16, label="trial")
    ax.step(range(1, len(values) + 1), best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial (in the order it finished)")
    ax.set_ylabel(metric)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def param_importances(importances: dict[str, float], path: Path) -> Path:
    """Optuna's fANOVA importances as horizontal bars."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(1, len(importances)) + 1.2))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_xlim(0, 1)
    return _save(fig, path)


def _depth_position(depth: float, columns: list) -> float:
    """Where a depth falls on the heatmap's column positions 0..n-1, interpolated on a log scale; past
    either end, half a cell outside it (an infinite depth at the right edge)."""
    logs = np.log([float(c) for c in columns])
    if not math.isfinite(depth) or depth >= columns[-1]:
        return len(columns) - 0.5
    if depth <= columns[0]:
        return -0.5
    return float(np.interp(math.log(depth), logs, np.arange(len(columns))))


def grid_heatmap(panels: list[GridPanel], metric: str, path: Path, marks: list[dict[str, float]] | None = None) -> Path:
    """Mean over seeds of `metric`, scheme x the first grid axis, one panel per combination of the others;
    each cell printed with its value (a failed trial stays blank). `marks`, per panel, row -> a depth
    (mean-field theory's 6 xi_c), drawn as a red line through the rows where the columns are depths;
    a triangle at the right edge means deeper than the grid (infinite at the edge of chaos)."""
    rows = panels[0].rows
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(1.2 + 0.9 * len(panels[0].columns) * len(panels) + 2.2, 0.5 * len(rows) + 1.6),
        squeeze=False,
        sharey=True,
    )
    values = [
        np.array([[p.intervals[r, c].mean if (r, c) in p.intervals else np.nan for c in p.columns] for r in rows])
        for p in panels
    ]
    diverged = [v >= DIVERGED_LOSS / 1000 for v in values]  # seeds' penalties: labelled, not coloured
    values = [np.where(d, np.nan, v) for v, d in zip(values, diverged, strict=True)]
    decimals = 1 if "accuracy" in metric else 3
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)  # every trial failed: no colours
    for ax, panel, grid, gone in zip(axes[0], panels, values, diverged, strict=True):
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                light = v < vmin + 0.6 * (vmax - vmin)
                text, color = f"{v:.{decimals}f}", "white" if light else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
            elif gone[i, j]:
                note = diverged_note(panel.intervals[rows[i], panel.columns[j]].mean)
                ax.text(j, i, note.replace(" ", "\n", 1), ha="center", va="center", fontsize=8, color="tab:red")
        ax.set_xticks(range(len(panel.columns)), [str(c) for c in panel.columns])
        ax.set_xlabel(panel.axis)
        ax.set_title(panel.title or metric, fontsize=10)
    for ax, panel_marks, panel in zip(axes[0], marks or [], panels, strict=False):
        points = [(_depth_position(d, panel.columns), i) for i, r in enumerate(rows) if (d := panel_marks.get(r))]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color="red", lw=1.6, marker="|", ms=14, mew=2, label="6 ξc (mean-field theory)")
            edge = [(x, y) for x, y in points if x >= len(panel.columns) - 0.5]
            if edge:
                ax.scatter(*zip(*edge, strict=True), marker=">", color="red", s=40, zorder=3, clip_on=False)
            ax.set_xlim(-0.5, len(panel.columns) - 0.5)
            ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label=f"mean {metric}", shrink=0.9)
    return _save(fig, path, layout=False)


def signal_by_layer(panels: list[GridPanel], path: Path) -> Path:
    """The std of each layer's output at init (log scale) in each scheme's deepest network, one panel per
    combination of the other axes: where the signal holds, vanishes or explodes with depth."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels, strict=True):
        colors = _colors(len(panel.rows))
        for name, color in zip(panel.rows, colors, strict=True):
            trial = panel.deepest(name)
            diags = [s.diagnostics for s in trial.seeds if s.diagnostics] if trial else []
            if not diags:
                continue
            stds = np.array([[layer["act_std"] for layer in d] for d in diags]).mean(0)
            ax.plot(range(1, len(stds) + 1), np.where(stds > 0, stds, ZERO_FLOOR), color=color, label=name, lw=1.4)
        ax.set_yscale("log")
        ax.set_xlabel("layer (input side first; the last is the classifier)")
        ax.set_title(panel.title or "all trials", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("std of the layer's output at init (log scale)")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def tuning_sensitivity(chosen: list[Choice], metric: str, path: Path) -> Path:
    """The objective over the tuning seeds against each tuned key's value, a line per row (and grid values)
    with its confidence band; the chosen value circled. Flat lines: the row does not care; a peak at an
    end: the best value may lie beyond."""
    keys = list(chosen[0].candidates[0][0])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.6), squeeze=False)
    colors = _colors(len(chosen))
    for ax, key in zip(axes[0], keys, strict=True):
        numeric = all(isinstance(v[key], int | float) for c in chosen for v, _, _ in c.candidates)
        for c, color in zip(chosen, colors, strict=True):
            points = (
                sorted((v[key], ci) for v, ci, _ in c.candidates)
                if numeric
                else [(v[key], ci) for v, ci, _ in c.candidates]
            )
            xs = [x for x, _ in points] if numeric else list(range(len(points)))
            means = np.array([ci.mean for _, ci in points])
            ax.plot(xs, means, marker="o", color=color, label=c.name, lw=1.3, ms=4)
            lows = np.array([ci.low for _, ci in points])
            if np.isfinite(lows).all():
                ax.fill_between(xs, lows, [ci.high for _, ci in points], color=color, alpha=0.12, lw=0)
            if c.chosen is not None:
                x = c.chosen[key] if numeric else [p[0] for p in points].index(c.chosen[key])
                ax.scatter([x], [means[xs.index(x)]], s=90, facecolors="none", edgecolors=color, zorder=3)
        if numeric and all(x > 0 for c in chosen for x, _ in ((v[key], 0) for v, _, _ in c.candidates)):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"mean {metric} over the tuning seeds")
        ax.set_title(f"Sensitivity to {key} (circle: chosen; band: CI)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="best", ncol=1 if len(chosen) <= 12 else 2)
    return _save(fig, path)


def phase_diagram(
    panels: dict[str, list[tuple[float, float, float]]],
    critical: dict[str, list[tuple[float, float]]],
    metric: str,
    path: Path,
    contours: dict[str, tuple[tuple[list, list, list], int]] | None = None,
) -> Path:
    """Mean-field theory's phase diagram, sigma_w^2 against sigma_b^2: the critical line (chi1 = 1) between
    the ordered phase (left) and the chaotic one (right), and each trial as a dot coloured by its measured
    `metric`. `panels`: title -> (sigma_w^2, sigma_b^2, objective) per trial; `critical`: title -> the line;
    `contours`: title -> ((xs, ys, 6 xi_c on that grid), depth): the dashed contour 6 xi_c = depth, inside
    which theory says a network that deep trains."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 4.2), squeeze=False, sharey=True)
    values = [v for points in panels.values() for _, _, v in points if math.isfinite(v)]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    image = None
    for ax, (title, points) in zip(axes[0], panels.items(), strict=True):
        field = (contours or {}).get(title)
        if field is not None:
            (cx, cy, depths), depth = field
            grid = np.array(depths, dtype=float)
            if np.nanmax(grid) > depth > np.nanmin(grid):
                ax.contour(cx, cy, grid, levels=[depth], colors="red", linestyles="--", linewidths=1.2)
                ax.plot([], [], color="red", ls="--", lw=1.2, label=f"6 ξc = {depth} (trains inside)")
        line = critical.get(title, [])
        if line:
            ax.plot(*zip(*line, strict=True), color="black", lw=1.5, label="critical line (χ1 = 1)")
        if points:
            x, y, v = zip(*points, strict=True)
            image = ax.scatter(x, y, c=v, cmap="viridis", vmin=vmin, vmax=vmax, s=55, edgecolors="black", lw=0.4)
        ax.text(0.03, 0.95, "ordered", transform=ax.transAxes, fontsize=8, va="top")
        ax.text(0.97, 0.95, "chaotic", transform=ax.transAxes, fontsize=8, va="top", ha="right")
        ax.set_xlabel("σ_w² (fan_in × Var W)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("σ_b² (Var b)")
    axes[0][0].legend(fontsize=7, loc="center left")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label=f"mean {metric}", shrink=0.9)
    return _save(fig, path, layout=False)


def lr_transfer(panels: list[TransferPanel], metric: str, path: Path) -> Path:
    """`metric` against log2 lr, one curve per width (darker is wider) with each point's seed interval,
    one panel per parametrization (Tensor Programs V, Figure 1); a star on each width's best lr. A loss is
    shown up to 3x its lowest mean (the valley, not the blow-ups' scale); diverged points are left out
    (drawn as x at the top of the panel)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    widths = panels[0].widths
    finite = [
        v
        for p in panels
        for i in p.intervals.values()
        for v in (i.low, i.high, i.mean)
        if math.isfinite(v) and v < DIVERGED_LOSS / 1000
    ]
    top = max(finite) if finite else 1.0
    means = [
        i.mean for p in panels for i in p.intervals.values() if math.isfinite(i.mean) and i.mean < DIVERGED_LOSS / 1000
    ]
    lowest = min(means) if means else 0.0
    if lowest > 0:  # a loss: show the valley (up to 3x its floor), not the blow-ups' scale
        top = min(top, 3 * lowest)
    for ax, panel in zip(axes[0], panels, strict=True):
        for k, w in enumerate(widths):
            color = cmap(0.9 * (1 - k / max(1, len(widths) - 1)))
            points = [(lr, panel.intervals[w, lr]) for lr in panel.lrs if (w, lr) in panel.intervals]
            ok = [(math.log2(lr), i) for lr, i in points if i.mean < DIVERGED_LOSS / 1000]
            gone = [math.log2(lr) for lr, i in points if i.mean >= DIVERGED_LOSS / 1000]
            if ok:
                xs = [x for x, _ in ok]
                means = np.array([i.mean for _, i in ok])
                lows = np.array([i.low if math.isfinite(i.low) else i.mean for _, i in ok])
                highs = np.array([i.high if math.isfinite(i.high) else i.mean for _, i in ok])
                ax.plot(xs, means, color=color, marker="o", ms=3, label=f"width {w}")
                ax.fill_between(xs, lows, highs, color=color, alpha=0.2, lw=0)
            if gone:
                ax.scatter(gone, [top] * len(gone), marker="x", color=color)
            best = panel.best.get(w)
            if best is not None and panel.intervals[w, best.lr].mean < DIVERGED_LOSS / 1000:
                ax.scatter(
                    [math.log2(best.lr)],
                    [panel.intervals[w, best.lr].mean],
                    marker="*",
                    s=110,
                    color=color,
                    edgecolor="black",
                    zorder=3,
                )
        ax.set_xlabel("log2 learning rate")
        ax.set_title(panel.title or metric, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    if lowest > 0:
        axes[0][0].set_ylim(lowest - 0.05 * (top - lowest), top)
    axes[0][-1].legend(fontsize=8)
    return _save(fig, path)
