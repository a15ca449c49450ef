"""The model builders: name -> `build(cfg, input_shape, num_classes) -> nn.Module`, and your own models.

Each built-in name's typed config is in `initsweep.catalog.models`. Add a model: a config class there, a
builder here; `tests/test_models.py` runs the same checks over every entry. Your own networks are
`factory(input_shape, num_classes, **kwargs)`, found by import path, registration or entry point;
`check_buildable` builds one, initializes it and runs one batch before any trial starts, so a problem
is one line naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from initsweep.catalog.models import MODEL_CONFIGS, REGISTERED_MODELS, CNNConfig, MLPConfig
from initsweep.catalog.parametrizations import PARAMETRIZATIONS
from initsweep.catalog.schemes import SchemeError
from initsweep.catalog.tasks import TASKS
from initsweep.config import ConfigError, SchemeRow, SweepConfig, TrialConfig
from initsweep.engine.diagnostics import init_diagnostics
from initsweep.engine.parametrizations import WidthPlan, width_plan
from initsweep.engine.schemes import apply_scheme, plan_init
from initsweep.engine.transformers import build_gpt, build_vit
from initsweep.engine.usercode import problem_of, resolve_target

if TYPE_CHECKING:
    from initsweep.engine.data import Data

__all__ = [
    "ACTIVATION_MODULES",
    "BUILDERS",
    "build_model",
    "check_buildable",
    "check_sweep",
    "initialize",
    "plan_widths",
]

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}


def _activation_dropout(activation: str, dropout: float) -> list[nn.Module]:
    return [ACTIVATION_MODULES[activation]()] + ([nn.Dropout(dropout)] if dropout > 0 else [])


def build_mlp(cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), *_activation_dropout(cfg.activation, cfg.dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def build_cnn(cfg: CNNConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for c in cfg.channels:
        layers += [nn.Conv2d(channels, c, 3, padding=1), ACTIVATION_MODULES[cfg.activation](), nn.MaxPool2d(2)]
        channels, height, width = c, height // 2, width // 2
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(channels * height * width, cfg.hidden),
        *_activation_dropout(cfg.activation, cfg.dropout),
        nn.Linear(cfg.hidden, num_classes),
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": build_mlp, "cnn": build_cnn, "gpt": build_gpt, "vit": build_vit}
"""`build(cfg, input_shape, num_classes) -> nn.Module`, weights left for a scheme to set."""


def _model_key(cfg) -> str:
    return "model.target" if getattr(cfg, "target", None) else "model.name"


def _factory(cfg) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Your model's factory and its keyword arguments."""
    registered = REGISTERED_MODELS.get(cfg.name)
    if registered is not None and registered.config_class is not None:
        own = registered.config_class.model_fields
        return registered.function, {k: getattr(cfg, k) for k in own if k != "name"}
    if registered is not None and (cfg.target is None or cfg.target == registered.target):
        return registered.function, dict(cfg.kwargs)
    return resolve_target(cfg.target, "model.target"), dict(cfg.kwargs)


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model a config describes, weights left for a scheme to set. Yours is
    `factory(input_shape, num_classes, **kwargs)`; what it returns must be an `nn.Module`."""
    if cfg.name in BUILDERS and type(cfg) is MODEL_CONFIGS.get(cfg.name):
        return BUILDERS[cfg.name](cfg, input_shape, num_classes)
    factory, kwargs = _factory(cfg)
    model = factory(tuple(input_shape), num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{_model_key(cfg)}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def plan_widths(cfg, model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> WidthPlan:
    """`model`'s parameters' widths under `cfg.parametrization`, against the model built at its base
    width on the meta device (shapes only, nothing allocated)."""
    parametrization = getattr(cfg, "parametrization", "sp")
    if PARAMETRIZATIONS[parametrization].width_free:
        return WidthPlan(parametrization)
    fixed = next((n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)), None)
    if fixed is not None:
        raise ConfigError(
            f"model.parametrization: {parametrization} scales attention logits by 1/head dim, and "
            f"nn.MultiheadAttention {fixed} fixes its own at 1/sqrt(head dim) (use F.scaled_dot_product_attention "
            "with scale=, as initsweep's gpt does)"
        )
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        base = build_model(cfg.base_config(), input_shape, num_classes)
    return width_plan(parametrization, model, base)


def initialize(
    model: nn.Module, trial: TrialConfig, input_shape: tuple[int, ...], num_classes: int, *, seed: int, batch
) -> WidthPlan:
    """Initialize `model` in place: the trial's scheme, drawn as at the base width where the
    parametrization says so, then each weight's width factor; returns the width plan (for the lrs)."""
    plan = plan_widths(trial.model, model, input_shape, num_classes)
    with plan.drawing(model):
        apply_scheme(
            model,
            trial.row.scheme,
            trial.row.params,
            seed=seed,
            batch=batch,
            activation=getattr(trial.model, "activation", None),
            init=trial.init,
        )
    plan.rescale(model)
    return plan


CHECK_BATCH = 64
"""Train images `check_buildable` runs through the model (a full batch would be slower, not surer)."""


def check_buildable(trial: TrialConfig, data: Data) -> list[str]:
    """Build the trial's model, select and initialize its layers, run one batch forward and backward:
    every problem a `ConfigError` (one line naming the key) before any trial starts. Returns the layers
    the init touches, one line each (`InitPlan.describe`)."""
    key = _model_key(trial.model)
    x, y = data.train.x[:CHECK_BATCH].cpu(), data.train.y[:CHECK_BATCH].cpu()
    with torch.random.fork_rng(devices=[]):
        try:
            model = build_model(trial.model, data.input_shape, data.num_classes)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"{key}: building the model raised {problem_of(err)}") from None
        plan = plan_init(model, trial.init, trial.row.scheme)
        try:
            initialize(model, trial, data.input_shape, data.num_classes, seed=0, batch=x)
        except ConfigError:
            raise
        except SchemeError as err:
            raise ConfigError(f"init.overrides: {err}") from None
        except Exception as err:
            raise ConfigError(f"{key}: initializing with {trial.row.scheme} raised {problem_of(err)}") from None
        model.eval()
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as err:
            raise ConfigError(
                f"{key}: one batch of shape {tuple(x.shape)} fails in forward: {problem_of(err)}"
            ) from None
        want = (*y.shape, data.num_classes)  # (batch, classes), an LM's (batch, context, vocab)
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if got != want:
            output = TASKS[trial.task].output
            raise ConfigError(
                f"{key}: the output on a batch of shape {tuple(x.shape)} is {got}; expected {want} {output} "
                f"for task {trial.task}"
            )
        try:
            init_diagnostics(model, x, y, trial.init, trial.row.scheme)
        except Exception as err:
            raise ConfigError(f"{key}: the backward pass of one batch fails: {problem_of(err)}") from None
    return plan.describe()


def sweep_checks(sweep: SweepConfig) -> list[TrialConfig]:
    """One trial per distinct scheme, model, init and data setting of the sweep (a search's: each scheme's):
    a scheme may refuse a model (one drawing by role needs a transformer's roles)."""
    if sweep.schemes is not None:
        trials = sweep.trials()
    else:
        trials = [sweep.trial(SchemeRow(scheme=name)) for name in sweep.search.schemes]
    distinct: dict[str, TrialConfig] = {}
    for t in trials:
        distinct.setdefault(t.row.scheme + t.model_dump_json(include={"model", "init", "data"}), t)
    return list(distinct.values())


def check_sweep(sweep: SweepConfig, data: Data) -> list[str]:
    """`check_buildable` for each distinct model and init of the sweep, and the split of a dataset the
    registry does not know (sizes only known once loaded); returns the first trial's layer lines."""
    problem = sweep.data.split_problem(
        sweep.train.batch_size,
        train_size=len(data.train) + len(data.val),
        num_classes=data.num_classes,
        task=sweep.task,
    )
    if problem and not sweep.data.builtin:
        raise ConfigError(problem)
    layers = [check_buildable(trial, data) for trial in sweep_checks(sweep)]
    return layers[0] if layers else []
