"""Which trial configs a sweep runs, as Tune sees them: grid cells, and the trial config behind a Tune
trial's config (a grid cell or an Optuna draw).

A grid sweep runs its `schemes` rows under each combination of its `grid` axes; a search sweep lets
Optuna draw `n_trials` rows (`initsweep.sweep.search`), as flat `scheme` and `scheme.param` keys, and the
search's `params` (settings such as `init.bias_std`) under their dotted keys.
Seeds are never searched: every trial trains on all of the sweep's seeds. Light on purpose: the
trainable imports this on every worker.
"""

from __future__ import annotations

from typing import Any

from initsweep.config import SchemeRow, SweepConfig, TrialConfig

__all__ = ["grid_cells", "row_from_params", "trial_from_params"]


def grid_cells(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The grid's trials as plain dicts, `{"row": scheme row, "axes": grid values}`, in `trials()` order
    (what each Tune trial's config carries under "cell")."""
    return [{"row": row.model_dump(), "axes": axes} for axes in sweep.combinations() for row in sweep.schemes]


def trial_from_params(sweep: SweepConfig, params: dict[str, Any]) -> TrialConfig:
    """The trial config of a Tune trial's config: a grid cell (in a tuned sweep, with its stage and tuned
    values), or an Optuna draw."""
    if "cell" not in params and sweep.search is not None:  # an Optuna draw: its settings beside the scheme's
        return sweep.trial(row_from_params(params), {k: params[k] for k in sweep.search.params}, checked=True)
    cell = params.get("cell", {})
    row, axes = row_from_params(params), cell.get("axes")
    return sweep.trial(row, axes, params.get("tuned"), params.get("stage"), checked=True)


def row_from_params(params: dict[str, Any]) -> SchemeRow:
    """The scheme row of a Tune trial's config: a grid cell's row or Optuna's flat `scheme.param` keys."""
    if "cell" in params:
        return SchemeRow.model_validate(params["cell"]["row"])
    scheme = params["scheme"]
    prefix = f"{scheme}."
    chosen = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return SchemeRow.model_validate({"scheme": scheme, "params": chosen})
