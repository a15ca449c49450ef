"""The weight rules behind the scheme registry (`initsweep.catalog.schemes`), and `apply_scheme`.

A rule draws the weights of the selected layers (`init.layers`: by default every `Linear` and `Conv`
layer) from an explicit `torch.Generator`, so the same init seed always gives the same network;
`init.overrides` give named layers (normalization layers too) a scheme of their own.

Fans follow torch's `nn.init._calculate_fan_in_and_fan_out`, the convention `xavier_*` and `kaiming_*`
use: a weight's dim 1 times the kernel size is its fan-in, dim 0 times the kernel size its fan-out. For
Linear and Conv that is in_features (in_channels/groups x kernel) and out_features; a ConvTranspose
weight is (in, out/groups, kernel...), so its fan-in is out_channels/groups x kernel (the fan-in of the
convolution it transposes); an Embedding weight (num_embeddings, dim) has fan-in dim, fan-out
num_embeddings (as a Linear from dim to num_embeddings).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from initsweep.catalog.schemes import SchemeError
from initsweep.config import ConfigError, InitConfig, OverrideRule, resolve_scheme

__all__ = [
    "INIT_LAYERS",
    "LAYER_CLASSES",
    "RULES",
    "InitPlan",
    "apply_scheme",
    "fan_in",
    "init_layers",
    "plan_init",
]

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layer types a scheme initializes by default (`init.layers.types`)."""
LAYER_CLASSES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear,
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "ConvTranspose1d": nn.ConvTranspose1d,
    "ConvTranspose2d": nn.ConvTranspose2d,
    "ConvTranspose3d": nn.ConvTranspose3d,
    "Embedding": nn.Embedding,
}
"""`init.layers.types` names -> the `torch.nn` classes (subclasses match too)."""

WeightRule = Callable[..., None]
"""`rule(weight, generator, **params)` fills `weight` in place."""


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output unit, torch's convention: in_features for Linear, in_channels/groups * kernel size
    for Conv, out_channels/groups * kernel size for ConvTranspose, embedding_dim for Embedding."""
    return weight[0].numel()


def _uniform_fan_in(w: torch.Tensor, g: torch.Generator, c: float) -> None:
    y = c / math.sqrt(fan_in(w))
    nn.init.uniform_(w, -y, y, generator=g)


def _normal_fan_in(w: torch.Tensor, g: torch.Generator, c: float) -> None:
    nn.init.normal_(w, 0.0, c / math.sqrt(fan_in(w)), generator=g)


def _sparse(w: torch.Tensor, g: torch.Generator, sparsity: float, std: float) -> None:
    """As `nn.init.sparse_`, whose zero positions ignore its generator (torch 2.14 draws them from the
    global RNG); a conv weight is viewed as (out, in * kernel)."""
    w2 = w.view(w.shape[0], -1)
    w2.normal_(0.0, std, generator=g)
    rows_per_column = torch.rand(w2.shape, generator=g, device=w.device).argsort(dim=0)
    w2.scatter_(0, rows_per_column[: math.ceil(sparsity * w2.shape[0])], 0.0)


RULES: dict[str, WeightRule] = {
    "constant": lambda w, g, value: nn.init.constant_(w, value),
    "uniform": lambda w, g, low, high: nn.init.uniform_(w, low, high, generator=g),
    "uniform_symmetric": lambda w, g, y: nn.init.uniform_(w, -y, y, generator=g),
    "normal": lambda w, g, mean, std: nn.init.normal_(w, mean, std, generator=g),
    "uniform_fan_in": _uniform_fan_in,
    "normal_fan_in": _normal_fan_in,
    "xavier_uniform": lambda w, g, gain: nn.init.xavier_uniform_(w, gain, generator=g),
    "xavier_normal": lambda w, g, gain: nn.init.xavier_normal_(w, gain, generator=g),
    "kaiming_uniform": lambda w, g, a, mode, nonlinearity: nn.init.kaiming_uniform_(
        w, a, mode, nonlinearity, generator=g
    ),
    "kaiming_normal": lambda w, g, a, mode, nonlinearity: nn.init.kaiming_normal_(
        w, a, mode, nonlinearity, generator=g
    ),
    "orthogonal": lambda w, g, gain: nn.init.orthogonal_(w, gain, generator=g),
    "trunc_normal": lambda w, g, std, bound: nn.init.trunc_normal_(w, 0.0, std, -bound * std, bound * std, generator=g),
    "sparse": _sparse,
    "critical": lambda w, g, weight_variance: _normal_fan_in(w, g, math.sqrt(weight_variance)),
}
"""Scheme name -> its weight rule; the whole-model schemes (lsuv, pytorch_default) have none."""


def _weight(module: nn.Module) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def _named(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module that has a weight tensor, by qualified name, in definition order."""
    return [(name, m) for name, m in model.named_modules() if name and _weight(m) is not None] or (
        [("", model)] if _weight(model) is not None else []
    )


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return shown or "none"


@dataclass(frozen=True)
class InitPlan:
    """Which layers a trial's init touches: `layers` get the trial's scheme, `overrides` a rule's."""

    layers: list[tuple[str, nn.Module]]
    """(qualified name, module) the scheme initializes, in definition order (rules' layers apart)."""
    overrides: dict[str, tuple[int, OverrideRule]]
    """qualified name -> (rule index, rule): the last rule in `init.overrides` that matches it."""
    named: list[tuple[str, nn.Module]]
    """Every module with a weight, in definition order."""

    @property
    def touched(self) -> list[tuple[str, nn.Module]]:
        """The layers the scheme or a rule initializes, in definition order."""
        chosen = {name for name, _ in self.layers} | set(self.overrides)
        return [(name, m) for name, m in self.named if name in chosen]

    def describe(self) -> list[str]:
        """One line per touched layer: `layer1.0.bn2 BatchNorm2d(16): init.overrides.0 *.bn2=constant(value=0)`."""
        lines = []
        for name, m in self.touched:
            shape = ", ".join(str(n) for n in m.weight.shape)
            rule = self.overrides.get(name)
            what = "the scheme" if rule is None else f"init.overrides.{rule[0]} {rule[1].summary()}"
            lines.append(f"{name or '(model)'} {type(m).__name__} weight ({shape}): {what}")
        return lines

    def summary(self) -> str:
        """`12 layers: 10 by the scheme (conv1, layer1.0.conv1, ...), 2 by init.overrides (layer1.0.bn2, ...)`."""
        text = f"{len(self.touched)} layers: {len(self.layers)} by the scheme ({_some([n for n, _ in self.layers])})"
        return text + (
            f", {len(self.overrides)} by init.overrides ({_some(list(self.overrides))})" if self.overrides else ""
        )


def plan_init(model: nn.Module, init: InitConfig | None = None) -> InitPlan:
    """The layers `init.layers` selects and the rules `init.overrides` give named layers. A glob that
    matches no layer, or a selection of nothing, is a `ConfigError` naming the key."""
    init = init or InitConfig()
    named = _named(model)
    names = [name for name, _ in named]
    types = tuple(LAYER_CLASSES[t] for t in init.layers.types)
    typed = [(name, m) for name, m in named if isinstance(m, types)]
    sel = init.layers
    for key, globs in (("include", sel.include), ("exclude", sel.exclude)):
        for i, glob in enumerate(globs):
            if not any(fnmatch.fnmatchcase(name, glob) for name, _ in typed):
                raise ConfigError(
                    f"init.layers.{key}.{i}: {glob!r} matches no {'/'.join(sel.types)} layer "
                    f"(those are: {_some([n for n, _ in typed])})"
                )
    layers = [
        (name, m)
        for name, m in typed
        if (not sel.include or any(fnmatch.fnmatchcase(name, g) for g in sel.include))
        and not any(fnmatch.fnmatchcase(name, g) for g in sel.exclude)
    ]
    overrides: dict[str, tuple[int, OverrideRule]] = {}
    for i, rule in enumerate(init.overrides):
        matched = [name for name in names if fnmatch.fnmatchcase(name, rule.match)]
        if not matched:
            raise ConfigError(
                f"init.overrides.{i}.match: {rule.match!r} matches no layer with weights ({_some(names)})"
            )
        overrides |= {name: (i, rule) for name in matched}  # a later rule wins
    if not layers and not overrides:
        raise ConfigError(
            f"init.layers: selects no layer of the model (its layers with weights: {_some(names)}); "
            "set init.layers.types, or give init.overrides"
        )
    layers = [(name, m) for name, m in layers if name not in overrides]
    return InitPlan(layers, overrides, named)


def init_layers(model: nn.Module, init: InitConfig | None = None) -> list[nn.Module]:
    """The layers whose weights the trial's scheme initializes, in definition order (rules' layers apart)."""
    return [m for _, m in plan_init(model, init).layers]


def _fill(weight: torch.Tensor, rule: WeightRule | None, generator: torch.Generator, params, where: str) -> None:
    try:
        if rule is None:  # lsuv starts from an orthogonal init
            nn.init.orthogonal_(weight, generator=generator)
        else:
            rule(weight, generator, **params)
    except (ValueError, RuntimeError) as err:  # e.g. a fan of a 1-d weight
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{where}: cannot initialize a weight of shape {tuple(weight.shape)} ({problem})") from None


@torch.no_grad()
def apply_scheme(
    model: nn.Module,
    name: str,
    params: Mapping[str, object] | None = None,
    *,
    seed: int,
    batch: torch.Tensor | None = None,
    activation: str | None = None,
    init: InitConfig | None = None,
) -> nn.Module:
    """Initialize `model` in place with scheme `name` from `seed`; returns the model.

    Every module is first reset with its own `reset_parameters()` under `seed` (that is the whole of
    `pytorch_default`; normalization layers start at weight 1, bias 0); then the scheme overwrites the
    weight of each layer `init.layers` selects, and `init.bias` sets their biases: `zeros` (the seed's
    choice), `constant` (`init.bias_value`), `normal` (N(0, init.bias_std^2), from a stream of the seed
    apart from the weights') or `default` (the layer's own). A layer an `init.overrides` rule names takes that rule's
    scheme instead (with the same bias; `pytorch_default` keeps its own init). `lsuv` needs `batch`, a
    batch of inputs to measure each layer's output variance on. "auto" (the row's or a rule's) resolves
    for `activation`, the model's nonlinearity (`initsweep.config.resolve_scheme`).
    """
    init = init or InitConfig()
    full = resolve_scheme(name, params or {}, activation, init)
    plan = plan_init(model, init)
    rules = {
        i: (RULES.get(rule.scheme), resolve_scheme(rule.scheme, rule.params, activation, init))
        for i, rule in enumerate(init.overrides)
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    chosen = dict(plan.layers)
    if name == "pytorch_default":
        chosen = {}
    weights = [m.weight for _, m in plan.touched]
    device = weights[0].device if weights else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    # Biases draw from a stream of their own, so a bias mode never changes the weights a seed gets.
    bias_seed = int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1)[0])
    bias_generator = torch.Generator(device=device).manual_seed(bias_seed)
    rule = RULES.get(name)
    for qualified, module in plan.touched:  # definition order: the same draws whatever the rules
        if qualified in plan.overrides:
            index, override = plan.overrides[qualified]
            if override.scheme == "pytorch_default":
                continue
            where = f"init.overrides.{index} ({override.scheme} on {qualified or 'the model'})"
            _fill(module.weight, rules[index][0], generator, rules[index][1], where)
        elif qualified in chosen:
            _fill(module.weight, rule, generator, full, f"scheme {name} on {qualified or 'the model'}")
        else:
            continue
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()  # the padding row stays zero, as torch's init keeps it
        layer_bias = getattr(module, "bias", None)
        if not isinstance(layer_bias, torch.Tensor) or init.bias == "default":
            continue
        if init.bias == "normal":
            layer_bias.normal_(0.0, init.bias_std, generator=bias_generator)
        else:
            layer_bias.fill_(init.bias_value if init.bias == "constant" else 0.0)
    if name == "lsuv":
        if batch is None:
            raise SchemeError("lsuv needs a batch of inputs to measure output variance on")
        layers = [m for _, m in plan.layers]
        _lsuv_rescale(model, layers, batch, tol=float(full["tol"]), max_iter=int(full["max_iter"]))
    return model


def _lsuv_rescale(model: nn.Module, layers: list[nn.Module], batch: torch.Tensor, tol: float, max_iter: int) -> None:
    """Scale each layer's weight, first to last, until its output variance on `batch` is 1 +- tol."""
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    for layer in layers:
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(first_tensor(out)))
        try:
            for _ in range(max_iter):
                captured.clear()
                model(batch)
                if not captured or captured[0] is None:  # a layer this forward pass does not run
                    break
                var = captured[0].float().var().item()
                if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                    break
                layer.weight.div_(math.sqrt(var))
        finally:
            hook.remove()
    model.train(was_training)


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output as a tensor: itself, or the first tensor of a tuple or list (an RNN's, say)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None
