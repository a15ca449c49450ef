"""What a grid with axes adds to the report: where along an axis (depth, say) each scheme stops training.

The first grid axis runs along the columns; the other axes' combinations are panels (one per
activation in the depth study). Each cell is one trial: the mean over seeds of the objective with its
confidence interval. The summary is generated from those intervals, so each claim carries its numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from initsweep.catalog.datasets import DATASETS
from initsweep.catalog.tasks import TASKS
from initsweep.config import SweepConfig, axis_label
from initsweep.report.stats import Interval, mean_ci
from initsweep.report.tables import ci_cell, digits_of, md_table
from initsweep.results import TrialResult

__all__ = ["GridPanel", "chance_accuracy", "grid_panels", "grid_section", "summary_lines", "trains"]

CHANCE_MARGIN = 5.0
"""Points above chance accuracy that separate "trains" (interval above) from "at chance" (below)."""


@dataclass
class GridPanel:
    """One combination of the other axes: rows (the config's scheme rows) x columns (the first axis)."""

    title: str
    """`activation=relu`, or "" when the grid has one axis."""
    axis: str
    """The column axis' short name (`depth`)."""
    columns: list
    rows: list[str]
    cells: dict[tuple[str, object], TrialResult]
    """(row, column value) -> the trial; a failed trial has no cell."""
    intervals: dict[tuple[str, object], Interval]

    def deepest(self, row: str) -> TrialResult | None:
        """The row's trial with the most layers (for signal propagation)."""
        found = [self.cells[row, c] for c in self.columns if (row, c) in self.cells]
        return max(found, key=lambda r: len(r.seeds[0].diagnostics), default=None)


def _sorted(values: list) -> list:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return sorted(values) if numeric else list(values)


def grid_panels(results: list[TrialResult], sweep: SweepConfig) -> list[GridPanel]:
    """The grid's panels, in the config's order; none without axes."""
    if not sweep.grid:
        return []
    column_key, *panel_keys = sweep.grid
    columns = _sorted(sweep.grid[column_key])
    names = [row.name for row in sweep.schemes]
    metric, level = sweep.objective.metric, sweep.report.level
    panels = []
    for values in itertools.product(*(sweep.grid[k] for k in panel_keys)):
        fixed = dict(zip(panel_keys, values, strict=True))
        mine = [r for r in results if all(r.axes.get(k) == v for k, v in fixed.items())]
        cells = {(r.row_name, r.axes.get(column_key)): r for r in mine}
        intervals = {key: mean_ci([s.final[metric] for s in r.seeds], level) for key, r in cells.items()}
        title = ", ".join(f"{axis_label(k, sweep.grid)}={v}" for k, v in fixed.items())
        panels.append(GridPanel(title, axis_label(column_key, sweep.grid), columns, names, cells, intervals))
    return panels


def chance_accuracy(sweep: SweepConfig) -> float | None:
    """Accuracy (%) of guessing one class, for a built-in dataset; None for your own (its classes are
    known only once it loads), which leaves out the trains / at-chance statements; None too for a task
    that measures no accuracy (a language model)."""
    if "val_accuracy" not in TASKS[sweep.task].epoch_metrics:
        return None
    info = DATASETS.get(sweep.data.dataset)
    return 100.0 / info.num_classes if info else None


def _state(ci: Interval, chance: float) -> str:
    """trains (interval above chance + margin), chance (below it), or unclear (the seeds disagree)."""
    lo, hi = (ci.mean, ci.mean) if math.isnan(ci.low) else (ci.low, ci.high)  # one seed: judge the mean
    if lo > chance + CHANCE_MARGIN:
        return "trains"
    if hi < chance + CHANCE_MARGIN:
        return "chance"
    return "unclear"


def trains(ci: Interval, chance: float) -> bool:
    """Whether a cell trains: its interval (one seed: its mean) lies above chance + the margin."""
    return _state(ci, chance) == "trains"


def summary_lines(panel: GridPanel, sweep: SweepConfig) -> list[str]:
    """Plain sentences: the best row at each column, then where each row trains and where it does not."""
    mode, metric = sweep.objective.mode, sweep.objective.metric
    axis = panel.axis
    pick = max if mode == "max" else min
    lines = []
    best_at = []
    for c in panel.columns:
        scored = [(row, panel.intervals[row, c]) for row in panel.rows if (row, c) in panel.intervals]
        if not scored:
            continue
        row, ci = pick(scored, key=lambda t: t[1].mean)
        ties = [r for r, other in scored if r != row and _overlap(ci, other)]
        tie_text = f" (intervals overlap: {', '.join(ties)})" if ties else ""
        best_at.append(f"{axis} {c}: {row} {ci_cell(ci, digits_of(metric))}{tie_text}")
    lines.append("Best at each " + axis + ": " + "; ".join(best_at) + ".")
    chance = chance_accuracy(sweep)
    if "accuracy" not in metric or chance is None:
        return lines
    for row in panel.rows:
        states = [
            (c, _state(panel.intervals[row, c], chance), panel.intervals[row, c])
            for c in panel.columns
            if (row, c) in panel.intervals
        ]
        if not states:
            continue
        trains = [s for s in states if s[1] == "trains"]
        at_chance = [s for s in states if s[1] == "chance"]
        unclear = [s for s in states if s[1] == "unclear"]
        parts = []
        if len(trains) == len(states):
            first, last = states[0], states[-1]
            parts.append(
                f"trains at every {axis}: {ci_cell(first[2])} at {axis} {first[0]}, "
                f"{ci_cell(last[2])} at {axis} {last[0]}"
            )
        elif trains:
            last = trains[-1]
            parts.append(f"trains up to {axis} {last[0]} ({ci_cell(last[2])})")
        if at_chance:
            first = at_chance[0]
            where = "at every " + axis if len(at_chance) == len(states) else f"from {axis} {first[0]}"
            parts.append(f"at chance {where} ({ci_cell(first[2])})")
        for c, _, ci in unclear:
            parts.append(f"seeds disagree at {axis} {c} ({ci_cell(ci)})")
        lines.append(f"{row}: " + "; ".join(parts) + ".")
    return lines


def _overlap(a: Interval, b: Interval) -> bool:
    if math.isnan(a.low) or math.isnan(b.low):  # one seed: no interval
        return False
    return a.low <= b.high and b.low <= a.high


def grid_section(panels: list[GridPanel], sweep: SweepConfig, pngs: dict[str, Path]) -> str:
    """Markdown: the figures, then per panel the generated summary and the heatmap's numbers."""
    if not panels:
        return ""
    pct = round(sweep.report.level * 100)
    metric = sweep.objective.metric
    chance = chance_accuracy(sweep)
    intro = (
        f"Each cell is one trial: mean `{metric}` over {len(sweep.seeds)} seeds [{pct}% t-interval]. "
        f"Rows are the config's schemes, columns the grid's `{next(iter(sweep.grid))}`."
    )
    if "accuracy" in metric and chance is not None:
        intro += (
            f" A scheme *trains* where its interval lies above chance + {CHANCE_MARGIN:g} points "
            f"({chance + CHANCE_MARGIN:g}%), is *at chance* where it lies below, and its seeds disagree between."
        )
    parts = [f"## Across the grid\n\n{intro}"]
    parts += [f"![{title}](plots/{png.name})" for title, png in pngs.items()]
    for panel in panels:
        title = f"### {panel.title}" if panel.title else "### All trials"
        summary = "\n".join(f"- {line}" for line in summary_lines(panel, sweep))
        header = ["scheme", *(f"{panel.axis} {c}" for c in panel.columns)]
        digits = digits_of(sweep.objective.metric)
        cells = [[row, *(ci_cell(panel.intervals.get((row, c)), digits) for c in panel.columns)] for row in panel.rows]
        parts.append(f"{title}\n\n{summary}\n\n{md_table(header, cells)}")
    return "\n\n".join(parts) + "\n"
