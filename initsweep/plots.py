"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG.

They read `ReportRow`s (a trial config and its seeds' results), so a report drawn at the end of a sweep
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

if TYPE_CHECKING:
    from initsweep.report import ReportRow, RowSummary
    from initsweep.schemes import Range

__all__ = [
    "accuracy_by_scheme",
    "loss_curves",
    "objective_vs_params",
    "optimization_history",
    "param_importances",
    "signal_propagation",
]

ZERO_FLOOR = 1e-12
"""Where a zero lands on a log axis (all-zeros init has exactly zero activations)."""


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def _colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def loss_curves(rows: list[ReportRow], path: Path) -> Path:
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


def accuracy_by_scheme(rows: list[ReportRow], summaries: list[RowSummary], metric: str, path: Path) -> Path:
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
    ax.set_xlabel(f"{metric} (%): seeds (dots), mean and 95% CI (diamond, bar)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def signal_propagation(rows: list[ReportRow], path: Path) -> Path:
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
    rows: list[ReportRow], space: dict[str, dict[str, Range | float | int | str]], metric: str, path: Path
) -> Path:
    """One panel per searched parameter name: the objective against its value, coloured by scheme."""
    from initsweep.schemes import Range

    panels: dict[str, list[tuple[str, Range]]] = {}
    for scheme, params in space.items():
        for name, r in params.items():
            if isinstance(r, Range) and not r.choices:
                panels.setdefault(name, []).append((scheme, r))
    names = sorted(panels) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    schemes = sorted(space)
    colors = dict(zip(schemes, _colors(len(schemes)), strict=True))
    for ax, name in zip(axes[0], names, strict=True):
        for scheme, r in panels.get(name, []):
            pts = [(row.params[name], row.objective) for row in rows if row.scheme == scheme and name in row.params]
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


def optimization_history(rows: list[ReportRow], mode: str, metric: str, path: Path) -> Path:
    """The objective of each trial in the order trials finished, and the best so far."""
    fig, ax = plt.subplots(figsize=(8, 4))
    values = [row.objective for row in rows]
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
