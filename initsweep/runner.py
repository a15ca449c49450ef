"""Runs a sweep's trials in this process, one after another: the `--no-ray` debug path.

No Ray, no MLflow: breakpoints and profilers work on the real training code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from initsweep.config import SweepConfig
from initsweep.data import load_data
from initsweep.train import TrialResult, run_trial

__all__ = ["default_device", "load_sweep_data", "run_in_process"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sweep_data(sweep: SweepConfig):
    """The sweep's data, loaded once and shared by all its trials."""
    d = sweep.data
    return load_data(
        d.dataset, limit=d.limit, val_fraction=d.val_fraction, normalize=d.normalize, split_seed=d.split_seed
    )


def run_in_process(
    sweep: SweepConfig,
    *,
    device: str | None = None,
    on_trial: Callable[[int, int, TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Train every trial of the sweep here; `on_trial(index, total, result)` after each."""
    data = load_sweep_data(sweep)
    trials = sweep.trials()
    results = []
    for i, trial in enumerate(trials, 1):
        result = run_trial(trial, data, device=device or default_device())
        results.append(result)
        if on_trial is not None:
            on_trial(i, len(trials), result)
    return results
