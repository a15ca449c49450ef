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
import math
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from initsweep.catalog import IMPORT, check_target
from initsweep.catalog.datasets import DATASETS, REGISTERED_DATASETS, dataset_target
from initsweep.catalog.models import MODEL_CONFIGS, CNNConfig, MLPConfig, model_config_class
from initsweep.catalog.schemes import (
    AUTO,
    Range,
    SchemeError,
    get_scheme,
    resolve_auto,
    resolve_search,
    validate_params,
)
from initsweep.results import EPOCH_METRICS

__all__ = [
    "ConfigError",
    "DataConfig",
    "InitConfig",
    "LayersConfig",
    "OverrideRule",
    "SchemeRow",
    "SweepConfig",
    "TrainConfig",
    "TrialConfig",
    "load_config",
    "parse_config",
    "resolve_scheme",
]


MAX_SEED = 2**63 - 1
"""The largest replicate or split seed: an int64, as torch's generators and NumPy's SeedSequence take it."""
MAX_SEARCH_SEED = 2**32 - 1
"""The largest search seed: Optuna's samplers seed a NumPy RandomState, which takes 32 bits."""
MAX_GRID_TRIALS = 10_000
"""The most trials a grid may make (rows x combinations); each is validated when the config loads."""
MAX_VALUES = 100_000
"""The most values (mappings, lists and scalars) a raw config may hold, each YAML alias counted where it is
used: a cycle or an alias bomb is refused before validation walks it."""
_INT64 = (-(2**63), 2**63 - 1)
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class ConfigError(ValueError):
    """Bad configuration; the message is one line naming the key path and the problem."""

    def __init__(self, message: str):
        # One line whatever a key or value holds: characters that break lines are shown escaped.
        super().__init__(str(message).translate(_LINE_BREAKS))


class _Shown(reprlib.Repr):
    """Short reprs of config values for messages: long, deep or huge values are cut, never raise."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxstring, self.maxother, self.maxlong = 4, 4, 6, 60, 60, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() refuses ints of over 4300 digits
            return f"<an integer of {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut short."""
    return _Shown().repr(value)


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions: the README's config reference is generated from them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


class DataConfig(_Strict):
    dataset: str = "fashion_mnist"
    """A name from the dataset registry (`initsweep.catalog.datasets.DATASETS`), `import` (your loader,
    `target`), or a name given to `initsweep.register_dataset` or an `initsweep.datasets` entry point."""
    target: str | None = None
    """Your loader as `package.module:load`, `load(**kwargs) -> (x_train, y_train, x_test, y_test)`."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for your loader."""
    limit: int | None = Field(default=None, gt=0)
    """Use a class-balanced subset of this many train-set images (before the split); None: all."""
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of the (limited) train set held out for validation: 0.2 gives the founding 48k/12k."""
    normalize: bool = False
    """Standardize pixels with the train split's mean and std (the founding experiment did not)."""
    split_seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Chooses the train/validation split; shared by all trials of a sweep, never a replicate seed."""

    @model_validator(mode="before")
    @classmethod
    def _registered_target(cls, raw: Any) -> Any:
        """A registered or entry-point dataset carries its loader's import path (a Ray worker re-reads it);
        a target alone is an import."""
        if isinstance(raw, dict) and "target" in raw and "dataset" not in raw:
            raw = raw | {"dataset": IMPORT}
        if isinstance(raw, dict) and isinstance(raw.get("dataset"), str) and "target" not in raw:
            name = raw["dataset"]
            target = None if name in DATASETS or name == IMPORT else dataset_target(name)
            if target is not None:
                raw = raw | {"target": target}
        return raw

    @field_validator("target")
    @classmethod
    def _import_path(cls, target: str | None) -> str | None:
        return None if target is None else check_target(target)

    @property
    def builtin(self) -> bool:
        """A dataset whose sizes the registry knows (the others' are known once loaded)."""
        return self.dataset in DATASETS

    @model_validator(mode="after")
    def _limit_fits(self) -> DataConfig:
        name = self.dataset
        if not (name in DATASETS or name == IMPORT or name in REGISTERED_DATASETS or self.target):
            valid = ", ".join([*DATASETS, *REGISTERED_DATASETS])
            raise ValueError(f"dataset: unknown dataset {name!r} (valid: {valid}), or import with a target")
        if self.dataset == IMPORT and self.target is None:
            raise ValueError("target: missing (dataset: import needs target: package.module:load)")
        if not self.builtin:
            return self  # checked by the engine once loaded (`split_problem` with the loaded sizes)
        for key in ("target", "kwargs"):
            if key in self.model_fields_set and getattr(self, key):
                raise ValueError(f"{key}: only for your own datasets (dataset: import), not {self.dataset}")
        size = DATASETS[self.dataset].train_size
        if self.limit is not None and self.limit > size:
            raise ValueError(f"limit: {self.limit} is more than the {size} images of {self.dataset}")
        problem = self.split_problem()
        if problem:
            raise ValueError(problem.removeprefix("data."))
        return self

    def split_sizes(
        self, val_fraction: float | None = None, limit: int | None = None, *, train_size: int | None = None
    ) -> tuple[int, int]:
        """(train, validation) images, as the engine splits them; the arguments override this config's
        (`train_size`: a loaded dataset's, for datasets the registry does not know)."""
        n = limit or self.limit or train_size or DATASETS[self.dataset].train_size
        n_val = round(n * (self.val_fraction if val_fraction is None else val_fraction))
        return n - n_val, n_val

    def split_problem(
        self, batch_size: int | None = None, *, train_size: int | None = None, num_classes: int | None = None
    ) -> str | None:
        """Why the split cannot train (`data.KEY: problem`, or `train.batch_size: ...`), else None: each
        split needs an image of every class, and the train split one full batch of `batch_size`. A dataset
        the registry does not know is checked once loaded, with its `train_size` and `num_classes`."""
        if train_size is None and not self.builtin:
            return None
        if train_size is None:
            train_size, num_classes = DATASETS[self.dataset].train_size, DATASETS[self.dataset].num_classes
        default_fraction = DataConfig.model_fields["val_fraction"].default

        def sizes_of(val_fraction: float | None = None, limit: int | None = None) -> tuple[int, int]:
            return self.split_sizes(val_fraction, limit, train_size=train_size)

        def fits(sizes: tuple[int, int]) -> bool:
            return min(sizes) >= num_classes and (batch_size is None or sizes[0] >= batch_size)

        n_train, n_val = sizes = sizes_of()
        if fits(sizes):
            return None
        few_images = min(sizes) < num_classes
        if self.val_fraction != default_fraction and fits(sizes_of(default_fraction)):
            key = "data.val_fraction"  # the default fraction would do
        elif not few_images and sizes_of(limit=train_size)[0] < batch_size:
            key = "train.batch_size"  # not even the whole train set makes one batch
        else:
            key = "data.val_fraction" if self.limit is None else "data.limit"
        where = f"{n_train + n_val} images leave {n_train} train"
        if few_images:
            return (
                f"{key}: {where} and {n_val} validation images (val_fraction {self.val_fraction:g}); each split "
                f"needs at least one image of each of the {num_classes} classes"
            )
        return f"{key}: {where} images (val_fraction {self.val_fraction:g}), fewer than one batch of {batch_size}"


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


LAYER_TYPES = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Embedding",
)
"""The `torch.nn` layer types a scheme may initialize (`init.layers.types`)."""
DEFAULT_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
LayerType = Literal[LAYER_TYPES]


class LayersConfig(_Strict):
    """Which layers the trial's scheme initializes: by type, then by name (`fnmatch` globs on the
    module's qualified name, as `model.named_modules()` gives it: `layer1.0.conv2`)."""

    types: list[LayerType] = Field(default=list(DEFAULT_LAYER_TYPES), min_length=1)
    """The layer types the scheme initializes (names of `torch.nn` classes)."""
    include: list[Annotated[str, Field(min_length=1)]] = []
    """Only layers whose name matches one of these globs; empty: every layer of those types."""
    exclude: list[Annotated[str, Field(min_length=1)]] = []
    """Leave out layers whose name matches one of these globs (they keep their own default init)."""

    @property
    def default(self) -> bool:
        return tuple(self.types) == DEFAULT_LAYER_TYPES and not self.include and not self.exclude

    def summary(self) -> str:
        """`Linear,Conv2d include=layer* exclude=fc` (what MLflow and the dry run show)."""
        text = ",".join(self.types)
        text += f" include={','.join(self.include)}" if self.include else ""
        return text + (f" exclude={','.join(self.exclude)}" if self.exclude else "")


class OverrideRule(_Strict):
    """A scheme for the layers whose name matches `match`. In YAML a flat mapping:
    `{match: "*.bn2", scheme: constant, value: 0}`."""

    match: str = Field(min_length=1)
    """An `fnmatch` glob on the module's qualified name (`*.bn2`, `fc`); it must match a layer with weights."""
    scheme: str
    """A per-layer scheme from the registry (not lsuv); pytorch_default keeps the layer's own init."""
    params: dict[str, int | float | str] = {}
    """The scheme's parameters, given flat beside `scheme` (`value: 0`); defaults filled in."""

    @model_validator(mode="before")
    @classmethod
    def _flat_to_params(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "params" in raw:
            return raw
        for key in ("match", "scheme"):
            if key not in raw:
                raise ValueError(f"{key}: missing (a rule is {{match: GLOB, scheme: NAME, PARAM: VALUE}})")
        given = {k: v for k, v in raw.items() if k not in ("match", "scheme")}
        for key, value in given.items():  # checked here, so that the message names the parameter
            if not isinstance(key, str):
                raise SchemeError("not a parameter name (a string)", shown(key))
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise SchemeError(f"{shown(value)} is not a number or a name", key)
        return {"match": raw["match"], "scheme": raw["scheme"], "params": given}

    @model_validator(mode="after")
    def _params_fit_scheme(self) -> OverrideRule:
        if get_scheme(self.scheme).whole_model and self.scheme != "pytorch_default":
            raise SchemeError(f"{self.scheme} works on the whole model; a rule takes a per-layer scheme", "scheme")
        object.__setattr__(self, "params", validate_params(self.scheme, self.params))
        return self

    def summary(self) -> str:
        params = ",".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.match}={self.scheme}({params})" if params else f"{self.match}={self.scheme}"


class InitConfig(_Strict):
    bias: Literal["zeros", "constant", "normal", "default"] = "zeros"
    """Bias init for every scheme but `pytorch_default`: zeros (the seed), a constant, N(0, bias_std^2)
    (mean-field theory's sigma_b), or the layer's own."""
    bias_value: float = 0.0
    """The bias when `bias` is `constant`."""
    bias_std: float = Field(default=0.0, ge=0.0)
    """The biases' standard deviation sigma_b when `bias` is `normal` (drawn per layer from the init seed)."""
    layers: LayersConfig = LayersConfig()
    """Which layers the scheme initializes; default: every Linear and Conv1d/2d/3d."""
    overrides: list[OverrideRule] = []
    """Rules `{match: GLOB, scheme: NAME, PARAM: VALUE}` for named layers (norm layers too); the last match wins."""

    @model_validator(mode="after")
    def _value_needs_constant(self) -> InitConfig:
        if self.bias_value != 0.0 and self.bias != "constant":
            raise ValueError(f"bias_value: only used with bias: constant, not {self.bias}")
        if self.bias_std != 0.0 and self.bias != "normal":
            raise ValueError(f"bias_std: only used with bias: normal, not {self.bias}")
        return self

    @property
    def bias_variance(self) -> float | None:
        """sigma_b^2, the biases' mean square (what mean-field theory needs); None for the layers' own,
        whose variance, 1 / (3 fan_in), differs from layer to layer."""
        return {"zeros": 0.0, "constant": self.bias_value**2, "normal": self.bias_std**2}.get(self.bias)


def resolve_scheme(
    name: str, params: dict[str, Any], activation: str | None, init: InitConfig
) -> dict[str, float | int | str]:
    """The scheme's parameters with every "auto" resolved: a gain or nonlinearity for `activation`
    (`resolve_auto`), and `critical`'s weight variance to the edge of chaos for `activation` and the
    biases' variance (imported only then: mean-field theory needs NumPy, which nothing else here does)."""
    full = resolve_auto(name, params, activation)
    theory_keys = [k for k, p in get_scheme(name).params.items() if p.auto_from_theory and full[k] == AUTO]
    for key in theory_keys:
        from initsweep.theory import ACTIVATIONS, critical_weight_variance

        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise SchemeError(f"'auto' needs a model activation mean-field theory knows ({known})", key)
        if init.bias_variance is None:
            raise SchemeError("'auto' needs init.bias zeros, constant or normal (the layers' own differ by layer)", key)
        try:
            full[key] = critical_weight_variance(activation, init.bias_variance)
        except ValueError as err:
            raise SchemeError(f"'auto' has no edge of chaos here: {err}", key) from None
    return full


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
        for key, value in given.items():  # checked here, so that the message names the parameter
            if not isinstance(key, str):
                raise SchemeError("not a parameter name (a string)", shown(key))
            if isinstance(value, float) and not math.isfinite(value):
                raise SchemeError(f"{value!r} is not a finite number", key)
            if not isinstance(value, int | float | str):
                raise SchemeError(f"{shown(value)} is not a number or a name", key)
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


def _model_section(raw: Any) -> Any:
    """A `model` section validated by the config class its `name` picks, looked up when it is validated
    (built-ins, `import`, registered models, entry points); errors name the key inside the section."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"input should be a mapping with a model name (got {shown(raw)})")
    config_class, raw = model_config_class(raw.get("name", "mlp"), raw)
    try:
        return config_class.model_validate(raw)
    except ValidationError as err:
        problem = _one_line(err)
        if problem.startswith("config: "):  # the whole section's problem, not one key's
            problem = problem.removeprefix("config: ")
        raise ValueError(problem) from None


ModelConfig = Annotated[Any, BeforeValidator(_model_section)]
"""A model section: `MLPConfig`, `CNNConfig`, `UserModelConfig` or a registered config class."""


def check_seeds(seeds: list[int]) -> list[int]:
    """Replicate seeds: distinct, and in the range every random stream accepts."""
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ValueError(f"seed {shown(dup[0])} appears twice; seeds are distinct replicates")
    bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad is not None:
        raise ValueError(f"seeds must be >= 0 and <= {MAX_SEED} (2**63 - 1) (got {shown(bad)})")
    return seeds


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
        return check_seeds(seeds)

    @model_validator(mode="after")
    def _fits_the_data(self) -> _Shared:
        """The data splits hold a batch, and the model's conv blocks fit the dataset's images."""
        problem = self.data.split_problem(self.train.batch_size)
        if problem:
            raise ValueError(problem)
        if isinstance(self.model, CNNConfig) and self.data.builtin:
            _, height, width = DATASETS[self.data.dataset].input_shape
            fit, h, w = 0, height, width
            while min(h, w) >= 2:  # each block's 2x2 max-pool halves the image (rounding down)
                fit, h, w = fit + 1, h // 2, w // 2
            if len(self.model.channels) > fit:
                raise ValueError(
                    f"model.channels: {len(self.model.channels)} conv blocks (each halving the image) shrink "
                    f"the {height}x{width} images of {self.data.dataset} to nothing; at most {fit} fit"
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _model_name_defaults_to_mlp(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "name" not in raw["model"]:
            name = IMPORT if "target" in raw["model"] else "mlp"  # a target alone is an import
            raw = raw | {"model": {"name": name, **raw["model"]}}
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
    memory_gb_per_trial: float | None = Field(default=None, gt=0.0)
    """Memory a trial reserves, in GiB (Ray's `memory` resource: placement only, not a limit); default: none."""
    custom: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    """Custom Ray resources a trial holds, e.g. {"accelerator_type:H100": 1} (a node declares its own)."""
    stall_warning_s: float = Field(default=60.0, gt=0.0)
    """Seconds with trials pending and none running or started before one line says what they wait for."""


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


def range_ends(settings: dict[str, list[Any] | TuneRange]) -> list[dict[str, Any]]:
    """The settings at the low ends of their ranges (first values of lists), then at the high ends: they
    stand for what Optuna may draw when a config is checked."""
    return [
        {k: (v.low if isinstance(v, TuneRange) else v[0]) for k, v in settings.items()},
        {k: (v.high if isinstance(v, TuneRange) else v[-1]) for k, v in settings.items()},
    ]


def check_settings(settings: dict[str, Any]) -> None:
    """Keys a tune section or a search may set, each with a list of distinct values or a `TuneRange`."""
    for key, values in settings.items():
        section, _, field = key.partition(".")
        if not ((section == "train" and field in TrainConfig.model_fields) or key in TUNABLE):
            raise ValueError(f"params.{key}: not a tunable setting (a key under train, or {', '.join(TUNABLE)})")
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


class TuningConfig(_Strict):
    """A fair comparison: each row's nuisance settings (a learning rate, say) chosen on tuning seeds, then
    the row judged at its chosen settings on the evaluation `seeds`, which never chose anything."""

    params: dict[str, list[Any] | TuneRange] = Field(min_length=1)
    """Key -> the values to try (a list: every combination of the lists is tried), or `{low, high, log}`
    for Optuna to draw from (`n_trials` draws per row); any key under `train`, `model.dropout`,
    `init.bias_value` or `init.bias_std`."""
    seeds: list[int] = Field(min_length=1)
    """Tuning seeds: each candidate trains on these, and the best mean objective over them is chosen;
    must not overlap the evaluation `seeds`."""
    n_trials: int | None = Field(default=None, gt=0)
    """Candidates Optuna draws per row when a parameter is a range (none with lists only)."""
    seed: int = Field(default=0, ge=0, le=MAX_SEARCH_SEED)
    """The Optuna sampler's seed for ranges (which values are tried); not a replicate seed."""

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        return check_seeds(seeds)

    @model_validator(mode="after")
    def _keys_and_values(self) -> TuningConfig:
        check_settings(self.params)
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
    """The grid values (or a search's drawn `params`) this trial was made with (dotted key -> value),
    already applied above."""
    stage: Literal["tune", "eval"] | None = None
    """In a sweep with a `tune` section: a candidate on the tuning seeds, or the row at its chosen values
    on the evaluation seeds."""
    tuned: dict[str, Any] = {}
    """The tuned settings this trial runs with (dotted key -> value), already applied above."""

    @model_validator(mode="after")
    def _resolve_auto(self) -> TrialConfig:
        row = self.row
        if AUTO in row.params.values():
            try:
                resolved = resolve_scheme(row.scheme, row.params, self.model.activation, self.init)
            except SchemeError as err:
                raise SchemeError(err.problem, f"row.{err.key}") from None
            object.__setattr__(self, "row", SchemeRow(scheme=row.scheme, params=resolved, label=row.name))
        return self

    @property
    def name(self) -> str:
        """The row's name, the grid values and the tuned ones: `kaiming_normal(...) depth=16 lr=0.001`, with
        ` [tune]` for a tuning candidate."""
        settings = self.axes | self.tuned
        texts = {k: f"{v:g}" if isinstance(v, float) else v for k, v in settings.items()}  # 6 digits, as params
        words = [self.row.name, *(f"{axis_label(k, settings)}={v}" for k, v in texts.items())]
        return " ".join(words + (["[tune]"] if self.stage == "tune" else []))


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
    tune: TuningConfig | None = None
    """A fair comparison: choose each row's `params` on the tuning seeds, then judge every row at its own
    chosen values on `seeds` (the report uses those only)."""
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
        self._check_tune()
        self._check_search()
        return self

    def _check_search(self) -> None:
        """Every setting a search draws makes valid trials at the ends of its range."""
        if self.search is None or not self.search.params:
            return
        row = SchemeRow(scheme=next(iter(self.search.schemes)))
        for drawn in range_ends(self.search.params):
            try:
                self.trial(row, drawn)
            except ValidationError as err:
                raise ValueError(f"search.params.{_one_line(err)}") from None

    def _check_tune(self) -> None:
        """Tuning seeds apart from evaluation seeds; every candidate makes a valid trial of every row."""
        if self.tune is None:
            return
        if self.schemes is None:
            raise ValueError("tune: chooses settings per `schemes` row; a search sweep searches instead")
        shared = sorted(set(self.tune.seeds) & set(self.seeds))
        if shared:
            raise ValueError(
                f"tune.seeds: seed {shared[0]} is also an evaluation seed; the seeds that choose a setting "
                "must not judge it"
            )
        axis = next((k for k in self.tune.params if k in self.grid), None)
        if axis is not None:
            raise ValueError(f"tune.params.{axis}: also a grid axis; a setting is either compared or tuned")
        candidates = self.tune.candidates()
        if candidates is None:  # a range: its ends stand for the values Optuna may draw
            candidates = range_ends(self.tune.params)
        for axes in self.combinations():
            for row in self.schemes:
                for tuned in candidates:
                    try:
                        self.trial(row, axes, tuned, "tune")
                    except ValidationError as err:
                        raise ValueError(f"tune.params.{_one_line(err)}") from None

    def _check_grid(self) -> None:
        """Every axis names a shared setting and every combination makes valid trials."""
        if not self.grid:
            for i, row in enumerate(self.schemes or []):  # a row's "auto" resolves for the shared settings
                try:
                    self.trial(row)
                except ValidationError as err:
                    problem = _one_line(err)
                    if problem.startswith("row."):  # the row's own parameter, under its place in `schemes`
                        raise ValueError(f"schemes.{i}.{problem.removeprefix('row.')}") from None
                    raise ValueError(problem) from None
            return
        if self.schemes is None:
            raise ValueError("grid: crosses `schemes` rows; a search sweep cannot have grid axes")
        for key, values in self.grid.items():
            if key.split(".")[0] not in GRID_SECTIONS or "." not in key:
                raise ValueError(f"grid.{key}: not a setting under {', '.join(GRID_SECTIONS)} (e.g. model.depth)")
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
            bad = next((v for v in values if isinstance(v, float) and not math.isfinite(v)), None)
            if bad is not None:
                raise ValueError(f"grid.{key}: {bad!r} is not a finite number")
            dup = [v for i, v in enumerate(values) if v in values[:i]]
            if dup:
                raise ValueError(f"grid.{key}: {shown(dup[0])} appears twice")
        n_trials = len(self.schemes) * math.prod(len(values) for values in self.grid.values())
        if n_trials > MAX_GRID_TRIALS:
            raise ValueError(
                f"grid: {n_trials} trials (rows x combinations); a grid may make at most {MAX_GRID_TRIALS}"
            )
        for axes in self.combinations():
            for i, row in enumerate(self.schemes):
                try:
                    self.trial(row, axes)
                except ConfigError as err:  # a path into something that is not a mapping
                    raise ValueError(f"grid.{err}") from None
                except ValidationError as err:
                    problem = _one_line(err)
                    if problem.startswith("row."):  # the row's "auto" under these grid values
                        raise ValueError(f"schemes.{i}.{problem.removeprefix('row.')} (at {shown(axes)})") from None
                    key = next((k for k in axes if problem.startswith((f"{k}:", f"{k}."))), None)
                    if key is None:  # a problem of the combination, not of one value
                        raise ValueError(f"grid: {shown(axes)} fails: {problem}") from None
                    raise ValueError(f"grid.{problem}") from None

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid's axes (one empty one without axes), first axis slowest."""
        return [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]

    @property
    def n_trials(self) -> int:
        """Trials the sweep runs: Optuna's draws, or each row under each combination (with a `tune`
        section: its candidates, then the row at its chosen values)."""
        if self.schemes is None:
            return self.search.n_trials
        per_cell = 1 + (self.tune.n_candidates if self.tune else 0)
        return len(self.schemes) * len(self.combinations()) * per_cell

    def trial(
        self,
        row: SchemeRow,
        axes: dict[str, Any] | None = None,
        tuned: dict[str, Any] | None = None,
        stage: str | None = None,
    ) -> TrialConfig:
        """The trial config of one row under one combination of grid values; with a `tune` section, at
        the `tuned` values, on the tuning seeds (`stage` "tune") or the evaluation seeds ("eval")."""
        # Only what the config set: derived fields (an mlp's hidden from its depth) are derived again.
        shared = self.model_dump(include=set(_Shared.model_fields), exclude_unset=True)
        for key, value in (axes or {}).items():
            section, _, derived = DERIVED.get(key, "").partition(".")
            shared.get(section, {}).pop(derived, None)
            set_path(shared, key, value)
        for key, value in (tuned or {}).items():
            set_path(shared, key, value)
        if stage == "tune":
            shared["seeds"] = list(self.tune.seeds)
        extra = {"row": row.model_dump(), "axes": axes or {}, "stage": stage, "tuned": tuned or {}}
        return TrialConfig.model_validate(shared | extra)

    def trials(self) -> list[TrialConfig]:
        """The grid's trial configs, each row under each combination (a search draws its own; a tuned
        sweep's trials depend on what its first stage chooses: `tuning_trials` lists that stage)."""
        if self.schemes is None:
            raise ConfigError("search sweeps draw their trials from Optuna; there is no fixed grid")
        return [self.trial(row, axes) for axes in self.combinations() for row in self.schemes]

    def tuning_trials(self) -> list[TrialConfig]:
        """Stage 1 of a tuned grid: each row under each combination at each listed candidate."""
        candidates = self.tune.candidates() if self.tune else None
        if candidates is None:
            raise ConfigError("tune: Optuna draws the candidates of a range; there is no fixed list")
        return [
            self.trial(row, axes, tuned, "tune")
            for axes in self.combinations()
            for row in self.schemes
            for tuned in candidates
        ]


_UNION_MEMBER = re.compile(r"^(list\[.*\]|function-\w+\[.*\]|TuneRange)$")
"""Where pydantic names the member of a union in an error's location (not a key of the config)."""


def _one_line(err: ValidationError) -> str:
    """The first validation error as `key.path: problem (got value)`."""
    errors = err.errors(include_url=False)
    # A value against a union (values: a list or a {low, high} range): the member its type picked.
    e = next((x for x in errors if x["type"] != "list_type"), errors[0]) if len(errors) > 1 else errors[0]
    loc = [str(p) for p in e["loc"] if not _UNION_MEMBER.match(str(p))]
    if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODEL_CONFIGS:
        del loc[1]  # the union's tag
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, SchemeError):
        loc += [cause.key] if cause.key else []
        problem = cause.problem
    elif e["type"] == "extra_forbidden":
        problem = "unknown key"
    elif e["type"] == "missing":
        problem = "missing (a required key)"
    elif e["type"] in ("value_error", "assertion_error"):
        problem = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if ": " in problem and " " not in problem.split(": ", 1)[0]:
            key, problem = problem.split(": ", 1)
            loc.append(key)
    elif loc[-1:] == ["[key]"]:  # a mapping's key, not its value
        loc.pop()
        problem = f"keys should be strings (got {shown(e['input'])})"
    else:
        problem = f"{e['msg'][0].lower()}{e['msg'][1:]} (got {shown(e['input'])})"
    return f"{'.'.join(loc) or 'config'}: {problem}"


def _check_values(raw: dict) -> None:
    """Every number in a raw config finite and within 64 bits (what torch, NumPy and MLflow store), and
    no more than `MAX_VALUES` values in all; walked without recursion, so nesting depth does not matter."""
    stack: list[tuple[Any, Any]] = [(None, raw)]  # (path as (parent path, key) links, value)
    count = 0
    while stack:
        path, value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"config: more than {MAX_VALUES} values (each YAML alias counted where it is used)")
        if isinstance(value, dict):
            stack.extend(((path, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(((path, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_dotted(path)}: {value!r} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            raise ConfigError(f"{_dotted(path)}: {shown(value)} is out of range (numbers here fit in 64 bits)")


def _dotted(path: Any) -> str:
    """`a.b.0` from the (parent path, key) links `_check_values` keeps; very deep paths cut short."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(str(key))
    parts.reverse()
    return ".".join(parts if len(parts) <= 12 else [*parts[:12], "..."]) or "config"


def parse_config(raw: Any) -> SweepConfig:
    """Validate a raw config (a mapping, as YAML gives it); `ConfigError` on any problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(raw).__name__}")
    _check_values(raw)
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None
    except RecursionError:  # junk nested thousands deep, which no config key takes
        raise ConfigError("config: values nested too deeply") from None


def _read_yaml(text: str) -> Any:
    """`yaml.safe_load`, with the errors it raises besides `YAMLError` turned into one: an integer of
    over 4300 digits (`ValueError`) and nesting deeper than Python's recursion limit."""
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as err:
        problem = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]
        raise yaml.YAMLError(problem) from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """Where and what: ` at line 3: expected ',' or ']'`."""
    if isinstance(err, yaml.reader.ReaderError):
        return f" at character {err.position}: {err.reason} (#x{err.character:04x})"
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}" if mark else ""
        return f"{where}: {err.problem or err.context}"
    return f": {err}"


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set a.b.c=VALUE` (VALUE read as YAML) to the raw config in place."""
    if not isinstance(assignment, str):
        raise ConfigError(f"--set {shown(assignment)}: expected a KEY=VALUE string")
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=1")
    if "" in key.split("."):
        raise ConfigError(f"--set {assignment}: {key!r} is not a dotted key path (an empty part)")
    try:
        value = _read_yaml(text)
    except yaml.YAMLError:
        raise ConfigError(f"{key}: cannot read {shown(text)} as a value") from None
    set_path(raw, key, value)


def set_path(raw: dict, key: str, value: Any) -> None:
    """Set the dotted `key` (list items by index: `schemes.0.c`) of a raw config in place; under
    `grid` the rest of the key is one axis name (`grid.model.depth`)."""
    parts = key.split(".")
    if parts[0] == "grid" and len(parts) > 2:
        parts = ["grid", ".".join(parts[1:])]
    if "" in parts:
        raise ConfigError(f"{key}: not a dotted key path (an empty part)")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: no such list item (has {len(node)})")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:i]) or 'config'}: is not a mapping, cannot set {key}")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def load_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read a YAML sweep config, apply `--set` overrides, validate; `ConfigError` on any problem."""
    try:
        path = Path(path)
    except TypeError:
        raise ConfigError(f"config: {shown(path)} is not a file path") from None
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason}: byte {err.start})") from None
    try:
        raw = _read_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(err)}") from None
    if raw is None:
        raise ConfigError(f"{path}: empty config file (no keys)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    return parse_config(raw)
