"""What the first stage of a fair comparison chose: per row (and grid values), each candidate's objective
over the tuning seeds, the value chosen by the same rule the sweep used, whether it sits at the edge
of what was tried (then the best may lie beyond), and what stage 2 measured at it (with `tune.confirm`:
at other settings, a larger width say, so the table reads "chosen at width 128, judged at 1024")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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
    judged: tuple[Interval, int] | None = None
    """Stage 2: the objective over the evaluation seeds at the chosen values (and `tune.confirm`), and its
    diverged seeds; None until that trial has finished."""
    tuned_at: dict[str, Any] = field(default_factory=dict)
    """Each `tune.confirm` key's value in stage 1 (`model.width` -> 128): what the choice was made at."""


def choices(results: list[TrialResult], sweep: SweepConfig) -> list[Choice]:
    """The choice of every row under every grid combination, from its stage-1 trials."""
    if sweep.tune is None:
        return []
    metric, level, mode = sweep.objective.metric, sweep.report.level, sweep.objective.mode
    tuning = [r for r in results if r.config.stage == "tune"]
    judged = {(r.row_name, tuple(r.axes.items())): r for r in results if r.config.stage == "eval" and r.seeds}
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
            stage2 = judged.get((row.name, tuple(axes.items())))
            out.append(
                Choice(
                    f"{mine[0].row_name} {settings}".strip(),
                    mine[0].row_name,
                    axes,
                    [(r.config.tuned, mean_ci([s.final[metric] for s in r.seeds], level), r.n_diverged) for r in mine],
                    top.config.tuned if top else None,
                    (mean_ci([s.final[metric] for s in stage2.seeds], level), stage2.n_diverged) if stage2 else None,
                    {k: _setting(mine[0].config, k) for k in sweep.tune.confirm},
                )
            )
    return out


def _setting(config: Any, key: str) -> Any:
    """A dotted key's value in a trial config (`model.width`)."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else getattr(config, part, None)
    return config


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(values: dict) -> str:
    """A candidate's values, short: `lr=0.003, gain=1.2` (a float by its key's last part)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


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
    """Markdown: the rule, each row's choice with every candidate's interval and what stage 2 measured at
    it (at `tune.confirm`'s settings beside the ones it was chosen at), edge warnings, the plot."""
    if not chosen:
        return ""
    t, pct, metric = sweep.tune, round(sweep.report.level * 100), sweep.objective.metric
    keys = ", ".join(f"`{k}`" for k in t.params)
    judged_at = ", ".join(f"{k}={_text(v)}" for k, v in t.confirm.items())
    at = f" with `tune.confirm` on top ({judged_at})" if t.confirm else ""
    intro = (
        f"Each row's {keys} was chosen on the tuning seeds {t.seeds}: every candidate trained on them, and "
        f"the best mean `{metric}` ({sweep.objective.mode}; a candidate with a diverged seed never wins) was "
        f"chosen. Every other section of this report judges each row at its own choice{at} on the evaluation "
        f"seeds {sweep.seeds}, which chose nothing. Cells: mean over the tuning seeds [{pct}% t-interval]; "
        "judged: the mean over the evaluation seeds at the choice, likewise."
    )
    if t.confirm:
        tuned_at = ", ".join(f"{k}={' or '.join(sorted({_text(c.tuned_at[k]) for c in chosen}))}" for k in t.confirm)
        base = getattr(sweep.model, "base_width", None)
        if "model.width" in t.confirm and {c.tuned_at["model.width"] for c in chosen} == {base}:
            tuned_at += " (model.base_width: there mup and sp are the same model)"
        intro += f" Chosen at {tuned_at}, judged at {judged_at}."
    labels = [_label(values) for values, _, _ in chosen[0].candidates]
    listed = sweep.tune.candidates() is not None
    judged_header = f"judged at {judged_at}" if t.confirm else "judged"
    header = ["row", "chosen", judged_header, *(labels if listed else ["candidates (value: mean [CI])"])]
    cells = []
    digits = digits_of(sweep.objective.metric)
    for c in chosen:
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in (c.chosen or {}).items())
        marks = [ci_cell(ci, digits) + (f" ({d} diverged)" if d else "") for _, ci, d in c.candidates]
        if not listed:
            marks = ["; ".join(f"{_label(v)}: {m}" for (v, _, _), m in zip(c.candidates, marks, strict=True))]
        if shown and all(d for _, _, d in c.candidates):
            shown += " (every candidate diverged: the first)"
        result = "-" if c.judged is None else ci_cell(c.judged[0], digits)
        if c.judged is not None and c.judged[1]:
            result += f" ({c.judged[1]} diverged)"
        cells.append([c.name, shown or "(none finished)", result, *marks])
    parts = [f"## Tuning (stage 1)\n\n{intro}\n\n{md_table(header, cells)}"]
    notes = edge_notes(chosen, sweep)
    if notes:
        parts.append("Chosen at the edge of what was tried:\n\n" + "\n".join(f"- {n}" for n in notes))
    parts += [f"![{title}](plots/{png.name})" for title, png in pngs.items()]
    return "\n\n".join(parts) + "\n"
