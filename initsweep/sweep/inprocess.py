"""Runs a sweep's trials in this process, one after another: the `--no-ray` debug path.

No Ray, no MLflow: breakpoints and profilers work on the real training code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from initsweep.config import SweepConfig
from initsweep.engine.data import load_configured
from initsweep.engine.train import run_trial
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
    """Train every trial of the sweep here; `on_trial(index, total, result)` after each."""
    data = load_configured(sweep.data)
    trials = sweep.trials()
    results = []
    for i, trial in enumerate(trials, 1):
        result = run_trial(trial, data, device=device or default_device())
        results.append(result)
        if on_trial is not None:
            on_trial(i, len(trials), result)
    return results
