"""Typed sweep and trial configs, validated in one place: YAML (plus `--set` overrides) in, one clear
error out.

A sweep config is the shared settings (`data`, `model`, `train`, `init`), the replicate `seeds`, and the
`schemes` rows, optionally crossed with `grid` axes over any shared key (`model.depth: [2, 4, 8]`).
Each row and axis combination becomes one `TrialConfig`: one scheme with its parameters and settings,
trained on every seed. Every error is a `ConfigError` whose message is one line: the dotted key path,
then the problem.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from initsweep.catalog.datasets import DATASETS
from initsweep.catalog.models import MODEL_CONFIGS, CNNConfig, MLPConfig
from initsweep.catalog.schemes import AUTO, Range, SchemeError, resolve_auto, resolve_search, validate_params
from initsweep.results import EPOCH_METRICS

__all__ = [
    "ConfigError",
    "DataConfig",
    "InitConfig",
    "SchemeRow",
    "SweepConfig",
    "TrainConfig",
    "TrialConfig",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """Bad configuration; the message is one line naming the key path and the problem."""


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions: the README's config reference is generated from them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DataConfig(_Strict):
    dataset: str = "fashion_mnist"
    """A name from the dataset registry (`initsweep.catalog.datasets.DATASETS`)."""
    limit: int | None = Field(default=None, gt=0)
    """Use a class-balanced subset of this many train-set images (before the split); None: all."""
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of the (limited) train set held out for validation: 0.2 gives the founding 48k/12k."""
    normalize: bool = False
    """Standardize pixels with the train split's mean and std (the founding experiment did not)."""
    split_seed: int = 0
    """Chooses the train/validation split; shared by all trials of a sweep, never a replicate seed."""

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r} (valid: {', '.join(DATASETS)})")
        return name

    @model_validator(mode="after")
    def _limit_fits(self) -> DataConfig:
        size = DATASETS[self.dataset].train_size
        if self.limit is not None and self.limit > size:
            raise ValueError(f"limit: {self.limit} is more than the {size} images of {self.dataset}")
        n = self.limit or size
        if round(n * self.val_fraction) < 1 or n - round(n * self.val_fraction) < 1:
            raise ValueError(f"limit: {n} images leave an empty train or validation split")
        return self


class TrainConfig(_Strict):
    optimizer: Literal["adam", "sgd"] = "adam"
    """Adam or SGD, both fused (one pass over the weights per step)."""
    lr: float = Field(default=1e-3, gt=0.0, allow_inf_nan=False)
    """Learning rate, > 0."""
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """SGD momentum (ignored by Adam)."""
    batch_size: int = Field(default=100, gt=0)
    """Images per optimizer step."""
    epochs: int = Field(default=2, gt=0)
    """Passes over the train split; validation after each."""
    log_every: int = Field(default=10, gt=0)
    """Record the training loss every this many steps, for loss curves."""
    val_train_mode: bool = False
    """Also measure validation accuracy with dropout on, as the founding notebook did."""


class InitConfig(_Strict):
    bias: Literal["zeros", "constant", "default"] = "zeros"
    """Bias init for every scheme but `pytorch_default`: zeros (the seed), a constant, or the layer's own."""
    bias_value: float = 0.0
    """The bias when `bias` is `constant`."""

    @model_validator(mode="after")
    def _value_needs_constant(self) -> InitConfig:
        if self.bias_value != 0.0 and self.bias != "constant":
            raise ValueError(f"bias_value: only used with bias: constant, not {self.bias}")
        return self


class SchemeRow(_Strict):
    """One init scheme and its parameters. In YAML a flat mapping: `{scheme: uniform, low: -0.5, high: 0.5}`."""

    scheme: str
    """A name from the scheme registry."""
    params: dict[str, int | float | str] = {}
    """Every parameter of the scheme, defaults filled in."""
    label: str | None = None
    """Name for tables and run names; default: the scheme and its parameters."""

    @model_validator(mode="before")
    @classmethod
    def _flat_to_params(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            raw = {"scheme": raw}
        if not isinstance(raw, dict) or "params" in raw:
            return raw
        if "scheme" not in raw:
            raise ValueError("scheme: missing (each row needs a scheme name)")
        given = {k: v for k, v in raw.items() if k not in ("scheme", "label")}
        row = {"scheme": raw["scheme"], "params": given}
        return row | ({"label": raw["label"]} if "label" in raw else {})

    @model_validator(mode="after")
    def _params_fit_scheme(self) -> SchemeRow:
        object.__setattr__(self, "params", validate_params(self.scheme, self.params))
        return self

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.scheme}({shown})" if shown else self.scheme


ModelConfig = Annotated[MLPConfig | CNNConfig, Field(discriminator="name")]


class _Shared(_Strict):
    """Settings shared by every trial of a sweep."""

    seeds: list[int] = Field(min_length=1)
    """Replicate seeds: each trial trains once per seed; never tuned."""
    data: DataConfig = DataConfig()
    model: ModelConfig = MLPConfig()
    train: TrainConfig = TrainConfig()
    init: InitConfig = InitConfig()

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise ValueError(f"seed {dup[0]} appears twice; seeds are distinct replicates")
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        return seeds

    @model_validator(mode="before")
    @classmethod
    def _model_name_defaults_to_mlp(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "name" not in raw["model"]:
            raw = raw | {"model": {"name": "mlp", **raw["model"]}}
        return raw


class ObjectiveConfig(_Strict):
    """What "best" means: the mean over seeds of one epoch metric, for ranking, search and early stopping."""

    metric: Literal[EPOCH_METRICS] = "val_accuracy"
    """The epoch metric whose mean over seeds ranks trials, drives the search and ASHA."""
    mode: Literal["max", "min"] | None = None
    """Default: max for accuracies, min for losses."""

    @model_validator(mode="after")
    def _mode_from_metric(self) -> ObjectiveConfig:
        if self.mode is None:
            object.__setattr__(self, "mode", "max" if "accuracy" in self.metric else "min")
        return self


class ResourcesConfig(_Strict):
    cpus_per_trial: float = Field(default=1.0, gt=0.0)
    """CPUs a trial holds; it trains with that many torch threads (at least one)."""
    gpus_per_trial: float = Field(default=0.0, ge=0.0)
    """GPUs a trial holds (fractions share a GPU); a trial holding one trains on CUDA."""
    max_concurrent: int | None = Field(default=None, gt=0)
    """Trials running at once; default: as many as the cluster's resources allow."""
    reuse_actors: bool = True
    """Run the next trial in a finished trial's process (under 1 s to start instead of ~12 s)."""
    max_failures: int = Field(default=2, ge=-1)
    """Retries of a failed trial (an error, a lost node), each from its last epoch's checkpoint; -1: no limit."""


class SchedulerConfig(_Strict):
    kind: Literal["fifo", "asha"] = "fifo"
    """fifo runs every trial to the end; asha stops poor trials early (by the objective, per epoch)."""
    grace_period: int = Field(default=1, gt=0)
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: float = Field(default=2.0, gt=1.0)
    """ASHA keeps the best 1/factor of the trials at each rung."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, raw: Any) -> Any:
        return {"kind": raw} if isinstance(raw, str) else raw


class SearchConfig(_Strict):
    """An Optuna search over schemes and their parameters, instead of a grid of `schemes` rows."""

    schemes: dict[str, dict[str, Any] | None] = Field(min_length=1)
    """Scheme -> {param: [low, high] | [choices] | null (registry range) | value (fixed)}; an empty
    mapping searches every parameter that has a registry range."""
    n_trials: int = Field(gt=0)
    """How many configs Optuna draws (each trained on every seed)."""
    sampler: Literal["tpe", "random", "qmc"] = "tpe"
    """TPE (multivariate, grouped by scheme), random, or quasi-random (QMC)."""
    seed: int = 0
    """The sampler's seed (which configs are tried); not a replicate seed."""
    storage: str | None = None
    """Optuna storage URL; default: a journal file in the sweep's Tune folder."""
    batch_size: int | None = Field(default=None, gt=0)
    """Configs drawn at a time, each batch once the last one has finished, so a seeded search draws the
    same configs whatever the timing; default: as many as run at once."""

    @model_validator(mode="after")
    def _spaces_resolve(self) -> SearchConfig:
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


class ReferenceConfig(_Strict):
    """Published numbers to set beside ours, each marked inside or outside our interval."""

    metric: Literal["val_accuracy", "val_accuracy_train_mode", "test_accuracy"] = "val_accuracy_train_mode"
    """Which of our metrics they measured (the founding table: validation with dropout on)."""
    source: str = ""
    """Where the numbers come from, for the report."""
    values: dict[str, dict[str, float]] = Field(min_length=1)
    """Row name (its label) -> {run name: value}."""


class ReportConfig(_Strict):
    baseline: str | None = None
    """Row (name or label) the others are compared with, paired by seed; default: the pytorch_default row."""
    level: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Confidence level of the intervals."""
    reference: ReferenceConfig | None = None
    """Published numbers to set beside ours, each marked inside or outside our interval."""


GRID_SECTIONS = ("data", "model", "train", "init")
"""The settings a grid axis may vary (seeds are replicates, never an axis)."""
DERIVED = {"model.depth": "model.hidden", "model.width": "model.hidden"}
"""Axis -> the setting it derives: an mlp's hidden sizes follow a depth or width axis."""


class TrialConfig(_Shared):
    """Everything one trial needs: a pure function of this gives its metrics.

    A gain or nonlinearity the row gave as "auto" is resolved here for the model's activation, so the
    trial's params (and MLflow) show the number that ran; its name keeps the row's "auto"."""

    row: SchemeRow
    """The config row this trial runs: a scheme and its parameters."""
    axes: dict[str, Any] = {}
    """The grid values this trial was made with (dotted key -> value), already applied above."""

    @model_validator(mode="after")
    def _resolve_auto(self) -> TrialConfig:
        row = self.row
        if AUTO in row.params.values():
            resolved = resolve_auto(row.scheme, row.params, self.model.activation)
            object.__setattr__(self, "row", SchemeRow(scheme=row.scheme, params=resolved, label=row.name))
        return self

    @property
    def name(self) -> str:
        """The row's name and the grid values: `kaiming_normal(...) depth=16 activation=relu`."""
        return " ".join([self.row.name, *(f"{axis_label(k, self.axes)}={v}" for k, v in self.axes.items())])


def axis_label(key: str, axes: dict[str, Any]) -> str:
    """An axis key's last part (`depth` for `model.depth`), unless two axes share it."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in axes) == 1 else key


class SweepConfig(_Shared):
    name: str = Field(min_length=1)
    """The sweep's name (the MLflow experiment)."""
    schemes: list[SchemeRow] | None = Field(default=None, min_length=1)
    """The grid: rows `{scheme: NAME, PARAM: VALUE, ..., label: NAME}` (label optional), each one trial
    config trained on all seeds."""
    grid: dict[str, list[Any]] = {}
    """Axes crossed with the `schemes` rows: `{model.depth: [2, 4, 8], model.activation: [relu, tanh]}`;
    any key under data, model, train or init; every combination runs every row."""
    search: SearchConfig | None = None
    """Or an Optuna search: `n_trials` configs drawn from these schemes' parameter ranges."""
    objective: ObjectiveConfig = ObjectiveConfig()
    resources: ResourcesConfig = ResourcesConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _grid_or_search(self) -> SweepConfig:
        if (self.schemes is None) == (self.search is None):
            raise ValueError("schemes: give either `schemes` (a grid) or `search` (an Optuna search), not both")
        if self.schemes is not None:
            names = [row.name for row in self.schemes]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"schemes: two rows are named {dup[0]!r}; give one a label")
            if self.report.baseline is not None and self.report.baseline not in names:
                raise ValueError(f"report.baseline: no row named {self.report.baseline!r}")
            unknown = sorted(set(self.report.reference.values) - set(names)) if self.report.reference else []
            if unknown:
                raise ValueError(f"report.reference.values: no row named {unknown[0]!r}")
        if self.objective.metric == "val_accuracy_train_mode" and not self.train.val_train_mode:
            raise ValueError("objective.metric: val_accuracy_train_mode needs train.val_train_mode: true")
        if self.scheduler.kind == "asha" and self.scheduler.grace_period > self.train.epochs:
            raise ValueError(f"scheduler.grace_period: more than train.epochs ({self.train.epochs})")
        self._check_grid()
        return self

    def _check_grid(self) -> None:
        """Every axis names a shared setting and every combination makes valid trials."""
        if not self.grid:
            return
        if self.schemes is None:
            raise ValueError("grid: crosses `schemes` rows; a search sweep cannot have grid axes")
        for key, values in self.grid.items():
            if key.split(".")[0] not in GRID_SECTIONS or "." not in key:
                raise ValueError(f"grid.{key}: not a setting under {', '.join(GRID_SECTIONS)} (e.g. model.depth)")
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
            dup = [v for i, v in enumerate(values) if v in values[:i]]
            if dup:
                raise ValueError(f"grid.{key}: {dup[0]!r} appears twice")
        for axes in self.combinations():
            for row in self.schemes:
                try:
                    self.trial(row, axes)
                except ConfigError as err:  # a path into something that is not a mapping
                    raise ValueError(f"grid.{err}") from None
                except ValidationError as err:
                    problem = _one_line(err)
                    key = next((k for k in axes if problem.startswith(f"{k}:")), None)
                    if key is None:  # a problem of the combination, not of one value
                        raise ValueError(f"grid: {axes} fails: {problem}") from None
                    raise ValueError(f"grid.{problem}") from None

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid's axes (one empty one without axes), first axis slowest."""
        return [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]

    @property
    def n_trials(self) -> int:
        if self.schemes is None:
            return self.search.n_trials
        return len(self.schemes) * len(self.combinations())

    def trial(self, row: SchemeRow, axes: dict[str, Any] | None = None) -> TrialConfig:
        """The trial config of one row under one combination of grid values."""
        # Only what the config set: derived fields (an mlp's hidden from its depth) are derived again.
        shared = self.model_dump(include=set(_Shared.model_fields), exclude_unset=True)
        for key, value in (axes or {}).items():
            section, _, derived = DERIVED.get(key, "").partition(".")
            shared.get(section, {}).pop(derived, None)
            set_path(shared, key, value)
        return TrialConfig.model_validate(shared | {"row": row.model_dump(), "axes": axes or {}})

    def trials(self) -> list[TrialConfig]:
        """The grid's trial configs, each row under each combination (a search draws its own)."""
        if self.schemes is None:
            raise ConfigError("search sweeps draw their trials from Optuna; there is no fixed grid")
        return [self.trial(row, axes) for axes in self.combinations() for row in self.schemes]


def _one_line(err: ValidationError) -> str:
    """The first validation error as `key.path: problem (got value)`."""
    e = err.errors(include_url=False)[0]
    loc = [str(p) for p in e["loc"]]
    if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODEL_CONFIGS:
        del loc[1]  # the union's tag
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, SchemeError):
        loc += [cause.key] if cause.key else []
        problem = cause.problem
    elif e["type"] == "extra_forbidden":
        problem = "unknown key"
    elif e["type"] in ("value_error", "assertion_error"):
        problem = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if ": " in problem and " " not in problem.split(": ", 1)[0]:
            key, problem = problem.split(": ", 1)
            loc.append(key)
    else:
        problem = f"{e['msg'][0].lower()}{e['msg'][1:]} (got {e['input']!r})"
    return f"{'.'.join(loc) or 'config'}: {problem}"


def parse_config(raw: Any) -> SweepConfig:
    try:
        if not isinstance(raw, dict):
            raise ConfigError(f"config: expected a mapping of keys, got {type(raw).__name__}")
        return SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set a.b.c=VALUE` (VALUE read as YAML) to the raw config in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=1")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{key}: cannot read {text!r} as a value") from None
    set_path(raw, key, value)


def set_path(raw: dict, key: str, value: Any) -> None:
    """Set the dotted `key` (list items by index: `schemes.0.c`) of a raw config in place; under
    `grid` the rest of the key is one axis name (`grid.model.depth`)."""
    parts = key.split(".")
    if parts[0] == "grid" and len(parts) > 2:
        parts = ["grid", ".".join(parts[1:])]
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: no such list item (has {len(node)})")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:i])}: is not a mapping, cannot set {key}")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def load_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read a YAML sweep config, apply `--set` overrides, validate; `ConfigError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    return parse_config(raw)
