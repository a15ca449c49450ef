"""What a width x learning-rate grid adds to the report: does the best lr move with width? (Tensor
Programs V's Figure 1: loss against log2 lr, one curve per width, one panel per parametrization.)

The section appears when the grid has both `model.width` and `train.lr` axes; every other axis (the
parametrization, say) and every scheme row makes a panel. Each width's best lr is the grid lr with the
best mean objective over seeds; its interval is a bootstrap over seeds (the seeds resampled with
replacement, the same draw for every lr, since seed k of every lr trains on the same data order), the
2.5th and 97.5th percentiles of the best lr (for a 95% level). The summary line per panel says how many
grid steps the optimum moved from the narrowest to the widest model, and across all widths, and where
a best lr is at the grid's edge (the optimum may lie beyond it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from initsweep.config import SweepConfig, axis_label
from initsweep.report.stats import Interval, mean_ci
from initsweep.report.tables import ci_cell, digits_of, md_table
from initsweep.results import TrialResult

__all__ = ["BestLr", "TransferPanel", "best_lr", "transfer_panels", "transfer_section"]

LR, WIDTH = "train.lr", "model.width"
BOOTSTRAP = 2000
"""Bootstrap resamples of the seeds for each best-lr interval (seeded: the same report every time)."""


@dataclass(frozen=True)
class BestLr:
    lr: float
    low: float
    high: float
    """The bootstrap interval's ends (grid lrs)."""


@dataclass
class TransferPanel:
    title: str
    """The other axes' values and the row (`parametrization=mup`), "" when there are none."""
    widths: list[int]
    lrs: list[float]
    cells: dict[tuple[int, float], TrialResult]
    """(width, lr) -> the trial; a failed trial has no cell."""
    intervals: dict[tuple[int, float], Interval]
    best: dict[int, BestLr]

    def step_shift(self, a: int, b: int) -> float:
        """Grid steps between the best lrs at widths `a` and `b` (log2 lr over the grid's log2 spacing)."""
        return abs(math.log2(self.best[b].lr) - math.log2(self.best[a].lr)) / _step(self.lrs)


def _step(lrs: list[float]) -> float:
    logs = np.log2(sorted(lrs))
    return float(np.median(np.diff(logs))) if len(logs) > 1 else 1.0


def best_lr(
    cells: dict[float, TrialResult], metric: str, mode: str, level: float = 0.95, seed: int = 0
) -> BestLr | None:
    """The lr with the best mean `metric` over seeds and its bootstrap interval; None without two seeds
    shared by every lr."""
    lrs = sorted(cells)
    per_seed = [{s.seed: s.final[metric] for s in cells[lr].seeds} for lr in lrs]
    seeds = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    if not seeds:
        return None
    values = np.array([[p[s] for s in seeds] for p in per_seed])  # (lrs, seeds)
    pick = np.argmax if mode == "max" else np.argmin
    best = lrs[int(pick(values.mean(1)))]
    if len(seeds) < 2:
        return BestLr(best, best, best)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(seeds), size=(BOOTSTRAP, len(seeds)))
    chosen = np.log2(np.array(lrs))[pick(values[:, draws].mean(2), axis=0)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(chosen, [tail, 100 - tail], method="nearest")
    return BestLr(best, float(2**low), float(2**high))


def transfer_panels(results: list[TrialResult], sweep: SweepConfig) -> list[TransferPanel]:
    """One panel per scheme row and combination of the other axes; none without width and lr axes."""
    if LR not in sweep.grid or WIDTH not in sweep.grid or sweep.schemes is None:
        return []
    others = [k for k in sweep.grid if k not in (LR, WIDTH)]
    widths, lrs = sorted(sweep.grid[WIDTH]), sorted(sweep.grid[LR])
    metric, mode, level = sweep.objective.metric, sweep.objective.mode, sweep.report.level
    panels = []
    for row in sweep.schemes:
        for values in itertools.product(*(sweep.grid[k] for k in others)):
            fixed = dict(zip(others, values, strict=True))
            cells = {
                (r.axes[WIDTH], r.axes[LR]): r
                for r in results
                if r.row_name == row.name and r.seeds and all(r.axes.get(k) == v for k, v in fixed.items())
            }
            words = [f"{axis_label(k, sweep.grid)}={v}" for k, v in fixed.items()]
            title = " ".join(([row.name] if len(sweep.schemes) > 1 else []) + words)
            intervals = {k: mean_ci([s.final[metric] for s in r.seeds], level) for k, r in cells.items()}
            best = {}
            for w in widths:
                found = best_lr({lr: cells[w, lr] for lr in lrs if (w, lr) in cells}, metric, mode, level)
                if found is not None:
                    best[w] = found
            panels.append(TransferPanel(title, widths, lrs, cells, intervals, best))
    return panels


def _lr(lr: float) -> str:
    return f"2^{math.log2(lr):.0f}" if math.log2(lr).is_integer() else f"{lr:.3g}"


def summary_line(panel: TransferPanel) -> str:
    """How far the optimum moved: narrowest to widest, and its range over every width."""
    found = [w for w in panel.widths if w in panel.best]
    if len(found) < 2:
        return f"{panel.title or 'all'}: too few widths finished to compare"
    a, b = found[0], found[-1]
    logs = [math.log2(panel.best[w].lr) for w in found]
    spread = (max(logs) - min(logs)) / _step(panel.lrs)
    edges = [w for w in found if panel.best[w].lr in (min(panel.lrs), max(panel.lrs))]
    edge = (
        f" At width {', '.join(map(str, edges))} the best lr is at the grid's edge: the optimum may lie beyond it."
        if edges
        else ""
    )
    return (
        f"**{panel.title or 'all'}**: the best lr moves {panel.step_shift(a, b):g} grid steps from width {a} "
        f"({_lr(panel.best[a].lr)}) to width {b} ({_lr(panel.best[b].lr)}); across all widths it spans "
        f"{spread:g} grid steps.{edge}"
    )


def transfer_section(panels: list[TransferPanel], sweep: SweepConfig, pngs: dict[str, Path]) -> str:
    """Markdown: each panel's summary line, the best-lr table, then the figures; "" without panels."""
    if not panels:
        return ""
    metric, pct = sweep.objective.metric, round(sweep.report.level * 100)
    header = ["panel", "width", "best lr", f"{pct}% bootstrap interval", f"{metric} at it"]
    cells = []
    for p in panels:
        for w in p.widths:
            if w in p.best:
                b = p.best[w]
                value = ci_cell(p.intervals[w, b.lr], digits_of(metric))
                cells.append([p.title or "all", str(w), f"{b.lr:.3g}", f"[{b.low:.3g}, {b.high:.3g}]", value])
    lines = [
        "## Learning-rate transfer across width",
        f"Each width's best `train.lr` (best mean `{metric}` over seeds {sweep.seeds}); the interval resamples the "
        f"seeds ({BOOTSTRAP} bootstrap draws). One grid step is x{2 ** _step(panels[0].lrs):g} in lr.",
        "",
        *(f"- {summary_line(p)}" for p in panels),
        "",
        md_table(header, cells),
    ]
    lines += [f"\n### {t}\n\n![{t}](plots/{path.name})" for t, path in pngs.items()]
    return "\n".join(lines) + "\n"
