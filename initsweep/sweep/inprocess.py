"""Runs a sweep's trials in this process, one after another: the `--no-ray` debug path.

No Ray, no MLflow: breakpoints and profilers work on the real training code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from initsweep.config import SweepConfig
from initsweep.engine.data import load_configured
from initsweep.engine.models import check_sweep
from initsweep.engine.train import run_trial
from initsweep.report.tuning import choices
from initsweep.results import TrialResult

__all__ = ["default_device", "run_in_process"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_in_process(
    sweep: SweepConfig,
    *,
    device: str | None = None,
    on_trial: Callable[[int, int, TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Train every trial of the sweep here; `on_trial(index, total, result)` after each. A tuned sweep
    runs its two stages: every listed candidate on the tuning seeds, then each row at its choice."""
    data = load_configured(sweep.data, sweep.task)
    check_sweep(sweep, data)  # your model built and run on one batch first: bad code is one clear line
    results: list[TrialResult] = []

    def run(trials) -> None:
        for trial in trials:
            results.append(run_trial(trial, data, device=device or default_device()))
            if on_trial is not None:
                on_trial(len(results), sweep.n_trials, results[-1])

    if sweep.tune is None:
        run(sweep.trials())
        return results
    run(sweep.tuning_trials())  # lists only: a range needs Optuna (through Ray), refused by tuning_trials
    chosen = {(c.row, tuple(c.axes.items())): c.chosen for c in choices(results, sweep)}
    run(
        sweep.trial(row, axes, chosen[row.name, tuple(axes.items())], "eval")
        for axes in sweep.combinations()
        for row in sweep.schemes
        if chosen.get((row.name, tuple(axes.items())))
    )
    return results
