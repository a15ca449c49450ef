"""Each trial summarized over its seeds: intervals of the final metrics, the paired comparison with the
baseline row, published numbers beside ours, and what a search's best trial says about its range."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

from initsweep.catalog.schemes import Range
from initsweep.catalog.tasks import TASKS
from initsweep.config import SweepConfig
from initsweep.report.stats import ADJUSTMENT, Interval, Paired, adjust_p_values, mean_ci, paired_difference
from initsweep.report.tables import ci_cell, digits_of, fmt, md_table, p_cell, shorten, signed_ci, text_table
from initsweep.results import FINAL_METRICS, TrialResult, rank_key

__all__ = [
    "RowSummary",
    "baseline_of",
    "boundary_warnings",
    "importances",
    "reference_section",
    "result_table",
    "summarize",
    "terminal_table",
]


@dataclass
class RowSummary:
    trial: TrialResult
    intervals: dict[str, Interval]
    """Mean and CI over seeds of each final metric the trial has."""
    vs_baseline: Paired | None = None
    reference: dict[str, tuple[float, bool]] = field(default_factory=dict)
    """Run name -> (published value, inside our interval)."""

    @property
    def diverged(self) -> int:
        return self.trial.n_diverged


def summarize(results: list[TrialResult], sweep: SweepConfig) -> list[RowSummary]:
    """Per-trial intervals, the paired comparison with the baseline, published numbers; sorted best first
    (trials with a diverged seed last: they are never the best)."""
    level, obj = sweep.report.level, sweep.objective
    summaries = []
    for r in results:
        metrics = [m for m in FINAL_METRICS if all(m in s.final for s in r.seeds)]
        summaries.append(RowSummary(r, {m: mean_ci([s.final[m] for s in r.seeds], level) for m in metrics}))
    for s in summaries:  # under a grid, against the baseline row with the same grid values
        baseline = baseline_of([r for r in results if r.axes == s.trial.axes], sweep)
        if baseline is not None and s.trial is not baseline:
            s.vs_baseline = _paired(s.trial, baseline, obj.metric, level)
    compared = [s for s in summaries if s.vs_baseline is not None]
    for s, q in zip(compared, adjust_p_values([s.vs_baseline.p_value for s in compared]), strict=True):
        s.vs_baseline = dataclasses.replace(s.vs_baseline, p_adjusted=q)
    ref = sweep.report.reference
    if ref is not None:
        for s in summaries:
            ours = s.intervals.get(ref.metric)
            for run, value in ref.values.get(s.trial.row_name, {}).items():
                s.reference[run] = (value, ours is not None and ours.contains(value))
    summaries.sort(key=lambda s: rank_key(obj.mode, s.intervals[obj.metric].mean, s.diverged > 0))
    return summaries


def baseline_of(results: list[TrialResult], sweep: SweepConfig) -> TrialResult | None:
    """The trial of the baseline row: `report.baseline`, or the pytorch_default row."""
    wanted = sweep.report.baseline
    for r in results:
        if (wanted is not None and r.row_name == wanted) or (wanted is None and r.scheme == "pytorch_default"):
            return r
    return None


def _paired(trial: TrialResult, baseline: TrialResult, metric: str, level: float) -> Paired | None:
    mine = {s.seed: s.final[metric] for s in trial.seeds}
    theirs = {s.seed: s.final[metric] for s in baseline.seeds}
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return paired_difference([mine[k] for k in shared], [theirs[k] for k in shared], level)


def result_table(summaries: list[RowSummary], sweep: SweepConfig) -> tuple[list[str], list[list[str]]]:
    """The result table's header and cells (shared by the terminal, Markdown and CSV forms)."""
    pct, task = round(sweep.report.level * 100), TASKS[sweep.task]
    has = {m for s in summaries for m in s.intervals}
    intervals = [m for m in task.intervals if m in has or m == task.intervals[0]]
    has_baseline = any(s.vs_baseline is not None for s in summaries)
    obj = sweep.objective.metric
    header = ["rank", "scheme", "n", *(f"{METRIC_LABELS.get(m, m)} ({pct}% CI)" for m in intervals)]
    header += [METRIC_LABELS.get(m, m) for m in task.test_metrics]
    header += ["train loss (epoch mean)", "last-batch loss", "diverged"]
    header += [f"Δ {obj} vs baseline ({pct}% CI)", "p (paired t)", f"p ({ADJUSTMENT})"] if has_baseline else []
    cells = []
    for rank, s in enumerate(summaries, 1):
        i = s.intervals
        row = [str(rank), s.trial.name, str(len(s.trial.seeds)), *(ci_cell(i.get(m), digits_of(m)) for m in intervals)]
        row += [fmt(i[m].mean, digits_of(m)) if m in i else "-" for m in task.test_metrics]
        row += [
            fmt(i["train_loss"].mean, 4),
            fmt(i["last_batch_loss"].mean, 4),
            str(s.diverged),
        ]
        if has_baseline:
            vs = s.vs_baseline
            row += (
                ["baseline", "", ""]
                if vs is None
                else [signed_ci(vs.difference, digits_of(obj)), p_cell(vs.p_value), p_cell(vs.p_adjusted)]
            )
        cells.append(row)
    return header, cells


METRIC_LABELS = {
    "val_accuracy": "val acc %",
    "val_accuracy_train_mode": "val acc dropout-on %",
    "test_accuracy": "test acc %",
    "train_loss": "train loss",
    "val_loss": "val loss",
    "val_bits_per_token": "val bits/token",
    "test_loss": "test loss",
    "last_batch_loss": "last-batch loss",
}


MIN_NAME_WIDTH = 20
"""The trial names' column is never cut narrower than this; columns are left out first."""


def terminal_table(summaries: list[RowSummary], sweep: SweepConfig, width: int) -> tuple[str, bool]:
    """The result table within `width` columns, and whether a name was shortened: the objective with its
    interval always; then, while they fit, test accuracy, the paired difference with the baseline, the
    diverged count, the adjusted p, the dropout-on accuracy, the training loss. Names are cut in the middle
    to what is left; report.md has every column and the full names."""
    pct, obj = round(sweep.report.level * 100), sweep.objective.metric
    has = {m for s in summaries for m in s.intervals}
    has_baseline = any(s.vs_baseline is not None for s in summaries)

    def mean_of(metric: str, digits: int):
        return lambda s: fmt(s.intervals[metric].mean, digits) if metric in s.intervals else "-"

    def vs(cell, baseline: str = ""):
        return lambda s: baseline if s.vs_baseline is None else cell(s.vs_baseline)

    columns = [  # (priority: 0 always shown, lower kept longer; header; cell)
        (0, "#", None),
        (0, "scheme", None),
        (0, "n", lambda s: str(len(s.trial.seeds))),
        (0, f"{METRIC_LABELS.get(obj, obj)} ({pct}% CI)", lambda s: ci_cell(s.intervals.get(obj), digits_of(obj))),
    ]
    for metric in TASKS[sweep.task].intervals[1:]:  # the dropout-on accuracy, an LM's bits
        if metric in has and metric != obj:
            label = f"{METRIC_LABELS.get(metric, metric)} ({pct}% CI)"
            columns.append((5, label, lambda s, m=metric: ci_cell(s.intervals[m], digits_of(m))))
    for metric in TASKS[sweep.task].test_metrics:
        if metric in has:
            columns.append((1, METRIC_LABELS.get(metric, metric), mean_of(metric, digits_of(metric))))
    columns.append((6, "train loss", mean_of("train_loss", 4)))
    columns.append((3, "diverged", lambda s: str(s.diverged)))
    if has_baseline:
        columns.append(
            (2, f"Δ vs baseline ({pct}% CI)", vs(lambda v: signed_ci(v.difference, digits_of(obj)), "baseline"))
        )
        columns.append((4, "p (BH)", vs(lambda v: p_cell(v.p_adjusted))))

    names = [s.trial.name for s in summaries]
    cells = {h: [cell(s) for s in summaries] for _, h, cell in columns if cell is not None}
    cells["#"] = [str(rank) for rank in range(1, len(summaries) + 1)]

    def need(kept) -> int:  # the width without the names' column, separators included
        return sum(max(len(h), *(len(c) for c in cells[h])) for _, h, _ in kept if h != "scheme") + 2 * (len(kept) - 1)

    kept = list(columns)
    while need(kept) + MIN_NAME_WIDTH > width and max(p for p, _, _ in kept) > 0:
        kept.remove(max(kept, key=lambda c: c[0]))
    room = max(MIN_NAME_WIDTH, width - need(kept))
    cells["scheme"] = [shorten(n, room) for n in names]
    header = [h for _, h, _ in kept]
    rows = [[cells[h][i] for h in header] for i in range(len(summaries))]
    text = "\n".join(line.rstrip() for line in text_table(header, rows).splitlines())
    return text, any(len(n) > room for n in names)


def reference_section(summaries: list[RowSummary], sweep: SweepConfig) -> str:
    """Markdown: published numbers beside our interval, each marked inside or OUTSIDE."""
    ref = sweep.report.reference
    if ref is None:
        return ""
    runs = sorted({run for s in summaries for run in s.reference})
    pct = round(sweep.report.level * 100)
    header = ["scheme", f"ours: {ref.metric} ({pct}% CI)", *runs]
    cells = []
    inside = outside = 0
    for s in summaries:
        if not s.reference:
            continue
        row = [s.trial.name, ci_cell(s.intervals.get(ref.metric))]
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
    top = summaries[0].trial
    notes = []
    for name, r in sweep.search.space().get(top.scheme, {}).items():
        if not isinstance(r, Range) or r.choices or name not in top.params:
            continue
        value = float(top.params[name])
        lo, hi, v = (math.log(r.low), math.log(r.high), math.log(value)) if r.log else (r.low, r.high, value)
        position = (v - lo) / (hi - lo)
        if position < edge or position > 1 - edge:
            side = "low" if position < edge else "high"
            notes.append(
                f"The best trial's `{top.scheme}.{name}` = {value:.4g} lies within {edge:.0%} of the search "
                f"range's {side} end [{r.low:g}, {r.high:g}]: the optimum may lie outside; widen the range."
            )
    return notes


def importances(results: list[TrialResult], sweep: SweepConfig) -> dict[str, float]:
    """fANOVA importances of the searched parameters, from a study rebuilt out of the trials."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = sweep.search.space()
    scheme_dist = CategoricalDistribution(list(space))
    study = optuna.create_study(direction="maximize" if sweep.objective.mode == "max" else "minimize")
    for r in results:
        if r.scheme not in space or r.n_diverged:
            continue
        params, dists = {"scheme": r.scheme}, {"scheme": scheme_dist}
        for name, rng in space[r.scheme].items():
            if not isinstance(rng, Range):
                continue
            key = f"{r.scheme}.{name}"
            params[key] = r.params[name]
            if rng.choices:
                dists[key] = CategoricalDistribution(list(rng.choices))
            elif rng.integer:
                dists[key] = IntDistribution(int(rng.low), int(rng.high), log=rng.log)
            else:
                dists[key] = FloatDistribution(rng.low, rng.high, log=rng.log)
        for key, spec in sweep.search.params.items():  # the settings drawn beside the scheme
            params[key] = r.axes[key]
            dists[key] = (
                CategoricalDistribution(spec)
                if isinstance(spec, list)
                else FloatDistribution(spec.low, spec.high, log=spec.log)
            )
        value = r.mean(sweep.objective.metric)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    if len(study.trials) < 2:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
