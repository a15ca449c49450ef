"""The `search` and `tune` sections: Optuna's draws over schemes, and a fair comparison's tuned settings;
both choose values of the same tunable keys."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from initsweep.catalog.schemes import Range, SchemeError, resolve_search
from initsweep.config.base import MAX_SEARCH_SEED, _Strict, check_seeds
from initsweep.config.errors import shown
from initsweep.config.train import TrainConfig


class TuneRange(_Strict):
    """Values Optuna chooses from, per row: numbers in [low, high], on a log scale if `log`."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> TuneRange:
        if not self.low < self.high:
            raise ValueError(f"low: {self.low} must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"low: a log-scale range must be above 0 (got {self.low})")
        return self


TUNABLE = ("model.dropout", "init.bias_value", "init.bias_std")
"""Keys outside `train` that a `tune` section may choose per row, or a search draw (any key under `train`)."""
ROW_KEY = "row."
"""`row.PARAM` in a `tune` section: the row's own scheme parameter (a gain, a bound), chosen per row like
any other setting; every row's scheme must have it (a search draws scheme parameters in `schemes` instead)."""
CONFIRMABLE = ("model", "train")
"""The sections `tune.confirm` may set: the data and the seeds are the sweep's, shared by both stages."""


def range_ends(settings: dict[str, list[Any] | TuneRange]) -> list[dict[str, Any]]:
    """The settings at the low ends of their ranges (first values of lists), then at the high ends: they
    stand for what Optuna may draw when a config is checked."""
    return [
        {k: (v.low if isinstance(v, TuneRange) else v[0]) for k, v in settings.items()},
        {k: (v.high if isinstance(v, TuneRange) else v[-1]) for k, v in settings.items()},
    ]


def check_settings(settings: dict[str, Any], *, rows: bool = False) -> None:
    """Keys a tune section or a search may set, each with a list of distinct values or a `TuneRange`;
    `rows`: a tune section, which may also set `row.PARAM` (checked against each row's scheme by the sweep)."""
    for key, values in settings.items():
        section, _, field = key.partition(".")
        row_param = rows and section == "row" and field != "" and "." not in field
        if not (row_param or (section == "train" and field in TrainConfig.model_fields) or key in TUNABLE):
            also = "row.PARAM (the row's scheme parameter), " if rows else ""
            raise ValueError(f"params.{key}: not a tunable setting (a key under train, {also}or {', '.join(TUNABLE)})")
        if isinstance(values, list):
            if not values:
                raise ValueError(f"params.{key}: needs at least one value")
            dup = [v for i, v in enumerate(values) if v in values[:i]]
            if dup:
                raise ValueError(f"params.{key}: {shown(dup[0])} appears twice")


class SearchConfig(_Strict):
    """An Optuna search over schemes and their parameters, instead of a grid of `schemes` rows."""

    schemes: dict[str, dict[str, Any] | None] = Field(min_length=1)
    """Scheme -> {param: [low, high] | [choices] | null (registry range) | value (fixed)}; an empty
    mapping searches every parameter that has a registry range."""
    n_trials: int = Field(gt=0)
    """How many configs Optuna draws (each trained on every seed)."""
    sampler: Literal["tpe", "random", "qmc"] = "tpe"
    """TPE (multivariate, grouped by scheme), random, or quasi-random (QMC)."""
    seed: int = Field(default=0, ge=0, le=MAX_SEARCH_SEED)
    """The sampler's seed (which configs are tried); not a replicate seed."""
    storage: str | None = None
    """Optuna storage URL; default: a journal file in the sweep's Tune folder."""
    batch_size: int | None = Field(default=None, gt=0)
    """Configs drawn at a time, each batch once the last one has finished, so a seeded search draws the
    same configs whatever the timing; default: as many as run at once."""
    params: dict[str, list[Any] | TuneRange] = {}
    """Settings outside the schemes Optuna also draws for each config: key -> `{low, high, log}` or a list
    of choices; any key under `train`, `model.dropout`, `init.bias_value` or `init.bias_std` (with a range
    of `critical`'s `weight_variance`, `init.bias_std` maps the mean-field phase diagram)."""

    @model_validator(mode="after")
    def _spaces_resolve(self) -> SearchConfig:
        check_settings(self.params)
        for name, spec in self.schemes.items():
            try:
                resolve_search(name, spec)
            except SchemeError as err:
                key = name if err.key in (None, "scheme") else err.key
                raise SchemeError(err.problem, f"schemes.{key}") from None
        return self

    def space(self) -> dict[str, dict[str, Range | float | int | str]]:
        """Per scheme, each parameter's `Range` or fixed value."""
        return {name: resolve_search(name, spec) for name, spec in self.schemes.items()}


class TuningConfig(_Strict):
    """A fair comparison: each row's nuisance settings (a learning rate, say) chosen on tuning seeds, then
    the row judged at its chosen settings on the evaluation `seeds`, which never chose anything."""

    params: dict[str, list[Any] | TuneRange] = Field(min_length=1)
    """Key -> the values to try (a list: every combination of the lists is tried), or `{low, high, log}`
    for Optuna to draw from (`n_trials` draws per row); any key under `train`, `model.dropout`,
    `init.bias_value`, `init.bias_std`, or `row.PARAM`: the row's own scheme parameter (`row.gain`), which
    every row's scheme must have; the row keeps its name, so its candidates group as one row."""
    seeds: list[int] = Field(min_length=1)
    """Tuning seeds: each candidate trains on these, and the best mean objective over them is chosen;
    must not overlap the evaluation `seeds`."""
    n_trials: int | None = Field(default=None, gt=0)
    """Candidates Optuna draws per row when a parameter is a range (none with lists only)."""
    seed: int = Field(default=0, ge=0, le=MAX_SEARCH_SEED)
    """The Optuna sampler's seed for ranges (which values are tried); not a replicate seed."""
    confirm: dict[str, Any] = {}
    """Settings stage 2 alone applies on top of each row's chosen values (`{model.width: 1024}`: choose at
    the base width, judge wider, which muP says should hold): any key under model or train that is not
    tuned and not a grid axis; the tuning seeds never see them."""

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return check_seeds(seeds)

    @model_validator(mode="after")
    def _keys_and_values(self) -> TuningConfig:
        check_settings(self.params, rows=True)
        for key in self.confirm:
            section, _, field = key.partition(".")
            if section not in CONFIRMABLE or not field:
                raise ValueError(
                    f"confirm.{key}: not a setting under {' or '.join(CONFIRMABLE)} (the data and the seeds are "
                    "the sweep's, the same in both stages)"
                )
            if key in self.params:
                raise ValueError(f"confirm.{key}: also tuned; a setting is either chosen in stage 1 or set for stage 2")
        ranges = [k for k, v in self.params.items() if isinstance(v, TuneRange)]
        if ranges and self.n_trials is None:
            raise ValueError(f"n_trials: needed to draw params.{ranges[0]} (a range) for each row")
        if not ranges and self.n_trials is not None:
            raise ValueError("n_trials: only used with a range {low, high}; lists try every value")
        return self

    @property
    def n_candidates(self) -> int:
        """Stage-1 trials per row: every combination of the lists, or `n_trials` Optuna draws."""
        if self.n_trials is not None:
            return self.n_trials
        return math.prod(len(v) for v in self.params.values())

    def candidates(self) -> list[dict[str, Any]] | None:
        """Every combination of the listed values, first key slowest; None when Optuna draws them."""
        if self.n_trials is not None:
            return None
        return [dict(zip(self.params, values, strict=True)) for values in itertools.product(*self.params.values())]
