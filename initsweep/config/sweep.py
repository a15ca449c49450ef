"""The sweep config and its trial configs: the shared sections, the `schemes` rows crossed with the grid's
axes (or a search, or a tuned comparison), each combination one `TrialConfig`."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from initsweep.catalog import IMPORT
from initsweep.catalog.datasets import DATASETS
from initsweep.catalog.models import CNNConfig, MLPConfig, ViTConfig
from initsweep.catalog.parametrizations import PARAMETRIZATIONS
from initsweep.catalog.schemes import AUTO, SCHEMES, SchemeError
from initsweep.catalog.tasks import LANGUAGE_MODEL, TASKS
from initsweep.config.base import _Strict, check_seeds
from initsweep.config.coordcheck import CoordCheckConfig
from initsweep.config.data import DATA_CHECKED, DataConfig
from initsweep.config.errors import ConfigError, _one_line, shown
from initsweep.config.init import InitConfig, SchemeRow, resolve_scheme
from initsweep.config.model import ModelConfig
from initsweep.config.paths import set_path
from initsweep.config.report import ObjectiveConfig, ReportConfig
from initsweep.config.resources import ResourcesConfig, SchedulerConfig
from initsweep.config.search import ROW_KEY, SearchConfig, TuneRange, TuningConfig, range_ends
from initsweep.config.train import TrainConfig

DEFAULT_TEXT = "fortunes"
"""The dataset of `task: language_model` when `data` names none: the embedded corpus (Debian's `fortunes`)."""
MAX_GRID_TRIALS = 10_000
"""The most trials a grid may make (rows x combinations); each is validated when the config loads."""


class _Shared(_Strict):
    """Settings shared by every trial of a sweep."""

    seeds: list[int] = Field(min_length=1)
    """Replicate seeds: each trial trains once per seed; never tuned."""
    task: Literal[tuple(TASKS)] = "classification"
    """What the model learns (`initsweep.catalog.tasks`): classification (images to classes) or
    language_model (next-token prediction on text); it sets the loss, the metrics and the objective."""
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
        problem = self.data.task_problem(self.task) or self.data.split_problem(self.train.batch_size)
        if problem:
            raise ValueError(problem)
        task = TASKS[self.task]
        if self.train.val_train_mode and not any(m.endswith("_train_mode") for m in task.epoch_metrics):
            raise ValueError(f"train.val_train_mode: task {self.task} measures nothing with dropout on")
        if isinstance(self.model, CNNConfig) and self.data.builtin and not self.data.text:
            _, height, width = DATASETS[self.data.dataset].input_shape
            fit, h, w = 0, height, width
            while min(h, w) >= 2:  # each block's 2x2 max-pool halves the image (rounding down)
                fit, h, w = fit + 1, h // 2, w // 2
            if len(self.model.channels) > fit:
                raise ValueError(
                    f"model.channels: {len(self.model.channels)} conv blocks (each halving the image) shrink "
                    f"the {height}x{width} images of {self.data.dataset} to nothing; at most {fit} fit"
                )
        if isinstance(self.model, ViTConfig) and self.data.builtin and not self.data.text:
            problem = self.model.patch_problem(DATASETS[self.data.dataset].input_shape)
            if problem:
                raise ValueError(problem)
        return self

    @model_validator(mode="before")
    @classmethod
    def _text_for_a_language_model(cls, raw: Any) -> Any:
        """A language model's data defaults to the embedded text corpus, as a classifier's to FashionMNIST."""
        if isinstance(raw, dict) and raw.get("task") == LANGUAGE_MODEL.name:
            data = raw.get("data", {})
            if isinstance(data, dict) and not {"dataset", "target", "path"} & set(data):
                raw = raw | {"data": {"dataset": DEFAULT_TEXT, **data}}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _model_name_defaults_to_mlp(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "name" not in raw["model"]:
            name = IMPORT if "target" in raw["model"] else "mlp"  # a target alone is an import
            raw = raw | {"model": {"name": name, **raw["model"]}}
        return raw


GRID_SECTIONS = ("model", "train", "init")
"""The settings a grid axis may vary (seeds are replicates, never an axis; the data loads once per sweep,
and every trial trains on it, so a data setting is one sweep's, not an axis)."""
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
    """The tuned settings this trial runs with (dotted key -> value; `row.PARAM` in the row's params),
    already applied above."""
    confirmed: dict[str, Any] = {}
    """A stage-2 trial's `tune.confirm` settings (dotted key -> value), already applied above: what it was
    judged at beside what it was chosen at."""

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

    @model_validator(mode="after")
    def _scheme_composes_with_parametrization(self) -> TrialConfig:
        parametrization = PARAMETRIZATIONS[getattr(self.model, "parametrization", "sp")]
        schemes = [("row.scheme", self.row.scheme)]
        schemes += [(f"init.overrides.{i}.scheme", r.scheme) for i, r in enumerate(self.init.overrides)]
        for key, scheme in schemes:
            why = parametrization.refuses.get(scheme)
            if why is not None:
                raise ValueError(
                    f"{key}: {scheme} cannot train under model.parametrization {parametrization.name}: {why}"
                )
        return self

    @property
    def name(self) -> str:
        """The row's name, the grid values, the tuned ones and stage 2's confirm settings: `kaiming_normal(...)
        depth=16 lr=0.001 width=1024`, with ` [tune]` for a tuning candidate."""
        settings = self.axes | self.tuned | self.confirmed
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
    any key under model, train or init; every combination runs every row."""
    tune: TuningConfig | None = None
    """A fair comparison: choose each row's `params` on the tuning seeds, then judge every row at its own
    chosen values on `seeds` (the report uses those only)."""
    search: SearchConfig | None = None
    """Or an Optuna search: `n_trials` configs drawn from these schemes' parameter ranges."""
    objective: ObjectiveConfig = ObjectiveConfig()
    resources: ResourcesConfig = ResourcesConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    report: ReportConfig = ReportConfig()
    coord_check: CoordCheckConfig | None = None
    """`sweeps/coord_check.py`'s widths, parametrizations and steps (a sweep run ignores it)."""

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
        object.__setattr__(self, "objective", self.objective.for_task(self.task))
        if self.objective.metric == "val_accuracy_train_mode" and not self.train.val_train_mode:
            raise ValueError("objective.metric: val_accuracy_train_mode needs train.val_train_mode: true")
        ref = self.report.reference
        if ref is not None and ref.metric not in TASKS[self.task].final_metrics:
            raise ValueError(f"report.reference.metric: {ref.metric} is not measured by task {self.task}")
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
        axis = next((k for k in self.tune.confirm if k in self.grid), None)
        if axis is not None:
            raise ValueError(f"tune.confirm.{axis}: also a grid axis; stage 2 would judge every grid value at one")
        self._check_row_params()
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
                    if self.tune.confirm:  # stage 2 at any candidate the row may choose
                        self._check_confirm(row, axes, tuned)

    def _check_row_params(self) -> None:
        """A `row.PARAM` key names a parameter of every row's scheme; a range only for a numeric one."""
        for key, spec in self.tune.params.items():
            if not key.startswith(ROW_KEY):
                continue
            name = key.removeprefix(ROW_KEY)
            for i, row in enumerate(self.schemes):
                params = SCHEMES[row.scheme].params
                if name not in params:
                    raise ValueError(
                        f"tune.params.{key}: schemes.{i} ({row.name}) is {row.scheme}, which has no parameter "
                        f"{name} (its parameters: {', '.join(params) or 'none'})"
                    )
                if isinstance(spec, TuneRange) and (params[name].choices or params[name].integer):
                    kind = "a choice of names" if params[name].choices else "a whole number"
                    raise ValueError(f"tune.params.{key}: {row.scheme}'s {name} is {kind}; list its values instead")

    def _check_confirm(self, row: SchemeRow, axes: dict[str, Any], tuned: dict[str, Any]) -> None:
        """The row's stage-2 trial at `tuned` with `tune.confirm` on top is a valid trial, and a confirmed
        width is the width it trains at (an mlp's `width` without `depth` would change nothing)."""
        confirm = self.tune.confirm
        try:
            judged = self.trial(row, axes, tuned, "eval")
        except ConfigError as err:  # a path into something that is not a mapping
            raise ValueError(f"tune.confirm.{err}") from None
        except ValidationError as err:
            problem = _one_line(err)
            if any(problem.startswith((f"{k}:", f"{k}.")) for k in confirm):
                raise ValueError(f"tune.confirm.{problem}") from None
            raise ValueError(f"tune.confirm: {shown(confirm)} fails in stage 2: {problem}") from None
        width = confirm.get("model.width")
        if width is not None and getattr(judged.model, "model_width", width) != width:
            raise ValueError(
                "tune.confirm.model.width: sets no layer's width here (an mlp's width needs model.depth; with "
                "model.hidden, confirm model.hidden)"
            )

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
            if key.split(".")[0] == "data":
                raise ValueError(f"grid.{key}: the data loads once per sweep; run one sweep per data setting")
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
        *,
        checked: bool = False,
    ) -> TrialConfig:
        """The trial config of one row under one combination of grid values; with a `tune` section, at
        the `tuned` values, on the tuning seeds (`stage` "tune") or the evaluation seeds ("eval", with
        `tune.confirm` on top: stage 1 never sees it). A tuned `row.PARAM` goes into the row's params under
        the row's own name, so that a row's candidates and its judged trial group as one row.
        `checked`: the driver has validated this trial's data already (a Ray worker, which gets the
        tensors and need not have the text file, does not read it again)."""
        # Only what the config set: derived fields (an mlp's hidden from its depth) are derived again.
        shared = self.model_dump(include=set(_Shared.model_fields), exclude_unset=True)
        confirmed = dict(self.tune.confirm) if stage == "eval" and self.tune is not None else {}
        for key, value in ((axes or {}) | confirmed).items():  # a confirmed key is never an axis
            section, _, derived = DERIVED.get(key, "").partition(".")
            shared.get(section, {}).pop(derived, None)
            set_path(shared, key, value)
        own = {k.removeprefix(ROW_KEY): v for k, v in (tuned or {}).items() if k.startswith(ROW_KEY)}
        for key, value in (tuned or {}).items():
            if not key.startswith(ROW_KEY):
                set_path(shared, key, value)
        if stage == "tune":
            shared["seeds"] = list(self.tune.seeds)
        raw_row = row.model_dump() | ({"params": row.params | own, "label": row.name} if own else {})
        extra = {"row": raw_row, "axes": axes or {}, "stage": stage, "tuned": tuned or {}, "confirmed": confirmed}
        return TrialConfig.model_validate(shared | extra, context={DATA_CHECKED: True} if checked else None)

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
