"""What the first stage of a fair comparison chose: per row (and grid values), each candidate's objective
over the tuning seeds, the value chosen by the same rule the sweep used, and whether it sits at the edge
of what was tried (then the best may lie beyond)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from initsweep.config import SweepConfig, TuneRange, axis_label
from initsweep.report.stats import Interval, mean_ci
from initsweep.report.tables import ci_cell, digits_of, md_table
from initsweep.results import TrialResult, rank_key

__all__ = ["Choice", "choices", "edge_notes", "tuning_section"]


@dataclass
class Choice:
    """One row under one grid combination: its candidates and the one it chose."""

    name: str
    """The row's name and grid values (`orthogonal(gain=auto) depth=8`)."""
    row: str
    axes: dict
    candidates: list[tuple[dict, Interval, int]]
    """(tuned values, objective over the tuning seeds, diverged seeds), in the order they were tried."""
    chosen: dict | None
    """None when no candidate finished."""


def choices(results: list[TrialResult], sweep: SweepConfig) -> list[Choice]:
    """The choice of every row under every grid combination, from its stage-1 trials."""
    if sweep.tune is None:
        return []
    metric, level, mode = sweep.objective.metric, sweep.report.level, sweep.objective.mode
    tuning = [r for r in results if r.config.stage == "tune"]
    listed = sweep.tune.candidates()
    if listed is not None:  # in the order they were tried: a tie goes to the first, as in the sweep
        tuning.sort(key=lambda r: listed.index(r.config.tuned))
    out = []
    for axes in sweep.combinations():
        for row in sweep.schemes:
            mine = [r for r in tuning if r.axes == axes and r.row_name == row.name]
            if not mine:
                continue
            # the sweep's own rule (`staged`): the best mean, a candidate with a diverged seed last, ties first
            top = min(mine, key=lambda r: rank_key(mode, r.mean(metric), r.n_diverged > 0))
            settings = " ".join(f"{axis_label(k, axes)}={v}" for k, v in axes.items())
            out.append(
                Choice(
                    f"{mine[0].row_name} {settings}".strip(),
                    mine[0].row_name,
                    axes,
                    [(r.config.tuned, mean_ci([s.final[metric] for s in r.seeds], level), r.n_diverged) for r in mine],
                    top.config.tuned if top else None,
                )
            )
    return out


def edge_notes(chosen: list[Choice], sweep: SweepConfig, edge: float = 0.05) -> list[str]:
    """A chosen value at the low or high end of what its key tried: the optimum may lie beyond."""
    notes = []
    for c in chosen:
        for key, value in (c.chosen or {}).items():
            spec = sweep.tune.params[key]
            if isinstance(spec, TuneRange):
                lo, hi, v = (
                    (math.log(spec.low), math.log(spec.high), math.log(value))
                    if spec.log
                    else (spec.low, spec.high, value)
                )
                side = "low" if (v - lo) / (hi - lo) < edge else "high" if (v - lo) / (hi - lo) > 1 - edge else None
                tried = f"[{spec.low:g}, {spec.high:g}]"
            else:
                numbers = sorted(x for x in spec if isinstance(x, int | float) and not isinstance(x, bool))
                if len(numbers) < 2 or value not in numbers:
                    continue
                side = "low" if value == numbers[0] else "high" if value == numbers[-1] else None
                tried = "[" + ", ".join(f"{x:g}" for x in numbers) + "]"
            if side:
                notes.append(
                    f"{c.name}: `{key}` chose {value:g}, the {side} end of {tried}; its best value may lie "
                    "beyond: widen the range."
                )
    return notes


def tuning_section(chosen: list[Choice], sweep: SweepConfig, pngs: dict) -> str:
    """Markdown: the rule, each row's choice with every candidate's interval, edge warnings, the plot."""
    if not chosen:
        return ""
    t, pct, metric = sweep.tune, round(sweep.report.level * 100), sweep.objective.metric
    keys = ", ".join(f"`{k}`" for k in t.params)
    intro = (
        f"Each row's {keys} was chosen on the tuning seeds {t.seeds}: every candidate trained on them, and "
        f"the best mean `{metric}` ({sweep.objective.mode}; a candidate with a diverged seed never wins) was "
        f"chosen. Every other section of this report judges each row at its own choice on the evaluation "
        f"seeds {sweep.seeds}, which chose nothing. Cells: mean over the tuning seeds [{pct}% t-interval]."
    )
    labels = [
        ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        for values, _, _ in chosen[0].candidates
    ]
    listed = sweep.tune.candidates() is not None
    header = ["row", "chosen", *(labels if listed else ["candidates (value: mean [CI])"])]
    cells = []
    for c in chosen:
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (c.chosen or {}).items())
        marks = [
            ci_cell(ci, digits_of(sweep.objective.metric)) + (f" ({d} diverged)" if d else "")
            for _, ci, d in c.candidates
        ]
        if not listed:
            marks = ["; ".join(f"{list(v.values())}: {m}" for (v, _, _), m in zip(c.candidates, marks, strict=True))]
        if shown and all(d for _, _, d in c.candidates):
            shown += " (every candidate diverged: the first)"
        cells.append([c.name, shown or "(none finished)", *marks])
    parts = [f"## Tuning (stage 1)\n\n{intro}\n\n{md_table(header, cells)}"]
    notes = edge_notes(chosen, sweep)
    if notes:
        parts.append("Chosen at the edge of what was tried:\n\n" + "\n".join(f"- {n}" for n in notes))
    parts += [f"![{title}](plots/{png.name})" for title, png in pngs.items()]
    return "\n\n".join(parts) + "\n"
