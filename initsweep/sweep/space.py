"""Which trial configs a sweep runs, as Tune sees them: grid cells, and the trial config behind a Tune
trial's config (a grid cell or an Optuna draw).

A grid sweep runs its `schemes` rows under each combination of its `grid` axes; a search sweep lets
Optuna draw `n_trials` rows (`initsweep.sweep.search`), as flat `scheme` and `scheme.param` keys, and the
search's `params` (settings such as `init.bias_std`) under their dotted keys.
Seeds are never searched: every trial trains on all of the sweep's seeds, except that a grid cell of the
last round may be split into seed shards (`shard_tail`), so that no slot idles while the last cells train;
the driver merges a cell's shards back into one trial before anything is printed or recorded. A seed trains
the same packed with others or not, up to float rounding (a batched kernel's reduction order depends on the
pack: weights about 1e-8 apart after an epoch), so the split changes a tail cell's metrics in their last
digits only; `resources.split_tail: false` keeps every cell whole. Light on purpose: the trainable imports
this on every worker.
"""

from __future__ import annotations

from typing import Any

from initsweep.config import SchemeRow, SweepConfig, TrialConfig

__all__ = ["cell_params", "grid_cells", "row_from_params", "shard_tail", "trial_from_params"]


def grid_cells(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The grid's trials as plain dicts, `{"row": scheme row, "axes": grid values}`, in `trials()` order
    (what each Tune trial's config carries under "cell")."""
    return [{"row": row.model_dump(), "axes": axes} for axes in sweep.combinations() for row in sweep.schemes]


def shard_tail(cells: list[dict[str, Any]], seeds: list[int], slots: int) -> list[dict[str, Any]]:
    """`cells` as Tune runs them on `slots` slots, first come first served: each cell of the last, partial
    round (len(cells) % slots of them) split into as many seed shards as the round's free slots allow, so
    that the last round keeps every slot busy instead of leaving slots idle while a few whole cells train
    (9 cells of 5 seeds on 2 slots: the ninth as shards of 3 and 2 seeds; never more shards than slots, which
    would only start another round). A shard's cell gains `index` (the cell's position, shared by its
    shards), `shard` ([i, n]) and `seeds` (its own)."""
    tail = len(cells) % slots if slots > 1 else 0
    parts = min(len(seeds), slots // tail) if tail else 1
    if parts < 2:
        return cells
    per = [len(seeds) // parts + (i < len(seeds) % parts) for i in range(parts)]  # 5 in 2: 3, 2
    starts = [sum(per[:i]) for i in range(parts)]
    out = cells[: len(cells) - tail]
    for index in range(len(cells) - tail, len(cells)):
        out += [
            cells[index] | {"index": index, "shard": [i, parts], "seeds": seeds[start : start + n]}
            for i, (start, n) in enumerate(zip(starts, per, strict=True))
        ]
    return out


def cell_params(params: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial's config as its whole cell: a shard's own seeds and shard number dropped."""
    cell = params.get("cell")
    if not cell or "shard" not in cell:
        return params
    return params | {"cell": {k: v for k, v in cell.items() if k not in ("index", "shard", "seeds")}}


def trial_from_params(sweep: SweepConfig, params: dict[str, Any]) -> TrialConfig:
    """The trial config of a Tune trial's config: a grid cell (in a tuned sweep, with its stage and tuned
    values), or an Optuna draw."""
    if "cell" not in params and sweep.search is not None:  # an Optuna draw: its settings beside the scheme's
        return sweep.trial(row_from_params(params), {k: params[k] for k in sweep.search.params}, checked=True)
    cell = params.get("cell", {})
    row, axes = row_from_params(params), cell.get("axes")
    trial = sweep.trial(row, axes, params.get("tuned"), params.get("stage"), checked=True)
    return trial.model_copy(update={"seeds": cell["seeds"]}) if "seeds" in cell else trial


def row_from_params(params: dict[str, Any]) -> SchemeRow:
    """The scheme row of a Tune trial's config: a grid cell's row or Optuna's flat `scheme.param` keys."""
    if "cell" in params:
        return SchemeRow.model_validate(params["cell"]["row"])
    scheme = params["scheme"]
    prefix = f"{scheme}."
    chosen = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    return SchemeRow.model_validate({"scheme": scheme, "params": chosen})
