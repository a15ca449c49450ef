"""Search spaces: which trial configs a sweep runs.

A grid sweep runs its `schemes` rows under each combination of its `grid` axes; a search sweep lets
Optuna draw `n_trials` rows from a define-by-run space built from the scheme registry: a categorical
scheme and, conditional on it, that scheme's parameters (named `scheme.param`, so each scheme's
parameters are their own dimensions).
Seeds are never searched: every trial trains on all of the sweep's seeds.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from initsweep.config import SchemeRow, SearchConfig, SweepConfig, TrialConfig
from initsweep.schemes import Range

__all__ = ["OptunaSpace", "grid_cells", "make_sampler", "row_from_params", "trial_from_params"]


def grid_cells(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The grid's trials as plain dicts, `{"row": scheme row, "axes": grid values}`, in `trials()` order
    (what each Tune trial's config carries under "cell")."""
    return [{"row": row.model_dump(), "axes": axes} for axes in sweep.combinations() for row in sweep.schemes]


def trial_from_params(sweep: SweepConfig, params: dict[str, Any]) -> TrialConfig:
    """The trial config of a Tune trial's config: a grid cell, or an Optuna draw."""
    cell = params.get("cell", {})
    return sweep.trial(row_from_params(params), cell.get("axes"))


class OptunaSpace:
    """A define-by-run space (a picklable callable: Tune saves its searcher with it). Fixed parameters
    come back as constants, so a trial's config alone says what it trained."""

    def __init__(self, search: SearchConfig):
        self.space = search.space()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        scheme = trial.suggest_categorical("scheme", list(self.space))
        fixed = {}
        for param, r in self.space[scheme].items():
            key = f"{scheme}.{param}"
            if not isinstance(r, Range):
                fixed[key] = r
            elif r.choices:
                trial.suggest_categorical(key, list(r.choices))
            elif r.integer:
                trial.suggest_int(key, int(r.low), int(r.high), log=r.log)
            else:
                trial.suggest_float(key, r.low, r.high, log=r.log)
        return fixed


def row_from_params(params: dict[str, Any]) -> SchemeRow:
    """The scheme row of a Tune trial's config: a grid cell's row or Optuna's flat `scheme.param` keys."""
    if "cell" in params:
        return SchemeRow.model_validate(params["cell"]["row"])
    scheme = params["scheme"]
    prefix = f"{scheme}."
    chosen = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return SchemeRow.model_validate({"scheme": scheme, "params": chosen})


def make_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    """TPE models each scheme's parameters jointly (`group`), which suits a conditional space."""
    with warnings.catch_warnings():  # QMC and TPE's multivariate/group options are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "random":
            return optuna.samplers.RandomSampler(seed=search.seed)
        if search.sampler == "qmc":
            return optuna.samplers.QMCSampler(seed=search.seed, warn_independent_sampling=False)
        return optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=True)
