"""Search spaces: which trial configs a sweep runs.

A grid sweep runs its `schemes` rows; a search sweep lets Optuna draw `n_trials` rows from a
define-by-run space built from the scheme registry: a categorical scheme and, conditional on it, that
scheme's parameters (named `scheme.param`, so each scheme's parameters are their own dimensions).
Seeds are never searched: every trial trains on all of the sweep's seeds.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from initsweep.config import SchemeRow, SearchConfig, SweepConfig
from initsweep.schemes import Range

__all__ = ["OptunaSpace", "grid_rows", "make_sampler", "row_from_params"]


def grid_rows(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The grid's rows as plain dicts (what each Tune trial's config carries)."""
    return [row.model_dump() for row in sweep.schemes]


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
    """The scheme row of a Tune trial's config: a grid row (`row`) or Optuna's flat `scheme.param` keys."""
    if "row" in params:
        return SchemeRow.model_validate(params["row"])
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
