"""Parametrizations as rules over each parameter's width dimensions: the init's scale and each
parameter's learning rate, as `model.parametrization` (`initsweep.catalog.parametrizations`) names them.

A parameter's width dimensions are found as the `mup` package's `set_base_shapes` finds them: the same
model is built at its base width (on the meta device: shapes only) and each parameter's shape compared
with its base shape, dimension by dimension. Torch's convention names a weight's dimensions: dim 0 out,
dim 1 in (a bias or a norm's weight is out only); an `nn.Embedding`'s weight maps its rows (the vocabulary,
in) to its width (out). A parameter is then, in Tensor Programs V's words:

- *hidden* (both fans grow with width): muP init x sqrt(base/width) over the base draw, Adam lr x base/width;
- *output* (fan-in grows, fan-out does not: the readout): init x base/width, Adam lr x base/width;
- *input* (only fan-out grows: input weights, embeddings, biases, norms): the base draw, lr unscaled;
- *fixed* (no width dimension, or the model at its base width): as sp.

SGD's lrs are Table 3's: x width/base for input weights and biases, x base/width for the readout, x
fan-out/fan-in mults for hidden weights (1 when square). The base draw is the scheme's at the base width:
while it draws, torch's fan computation (every scheme's, and every layer's own `reset_parameters`) sees
the base model's fans. Nothing of this lives in the forward pass or on the tensors (the tied readout's
multiplier and the attention scale are model attributes set from the config when it is built), so a
checkpoint needs no shape information, `torch.compile` sees plain modules, and an lr schedule scales each
group's lr as it scales one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from initsweep.catalog.parametrizations import PARAMETRIZATIONS
from initsweep.config import ConfigError

__all__ = ["RULES", "ParamWidth", "WidthPlan", "WidthRules", "base_fans", "width_plan"]


@dataclass(frozen=True)
class ParamWidth:
    """One parameter's width multipliers (its size over its base size) in the network's sense."""

    fan_in: float
    """In-dimension mult: 1 unless the inputs it reads grow with width."""
    fan_out: float
    """Out-dimension mult: 1 unless the units it writes grow with width."""
    torch_fans: tuple[float, float] = (1.0, 1.0)
    """(in, out) mults in torch's fan convention (an Embedding's in is its width), for `base_fans`."""

    @property
    def kind(self) -> str:
        grows_in, grows_out = self.fan_in != 1.0, self.fan_out != 1.0
        return {(True, True): "hidden", (True, False): "output", (False, True): "input"}.get(
            (grows_in, grows_out), "fixed"
        )


@dataclass(frozen=True)
class WidthRules:
    """One parametrization: each parameter's init factor (over the scheme's base draw) and lr factor."""

    init_scale: Callable[[ParamWidth], float]
    lr_scale: Mapping[str, Callable[[ParamWidth], float]]
    """Optimizer (`train.optimizer`) -> the factor on `train.lr`."""
    base_fans: bool
    """Schemes draw with the base model's fans (the scale the scheme sets at the base width)."""


def _mup_init(p: ParamWidth) -> float:
    return p.fan_in**-0.5 * (p.fan_in**-0.5 if p.fan_out == 1.0 else 1.0)


RULES: dict[str, WidthRules] = {
    "sp": WidthRules(lambda p: 1.0, {"adam": lambda p: 1.0, "sgd": lambda p: 1.0}, base_fans=False),
    "mup": WidthRules(
        _mup_init,
        {"adam": lambda p: 1.0 / p.fan_in, "sgd": lambda p: p.fan_out / p.fan_in},
        base_fans=True,
    ),
}
"""Parametrization name -> its rules (the names and their facts are `PARAMETRIZATIONS`)."""
assert set(RULES) == set(PARAMETRIZATIONS)


@dataclass(frozen=True)
class WidthPlan:
    """A model's parameters' widths under one parametrization: what `apply` and `param_groups` use."""

    parametrization: str
    widths: dict[str, ParamWidth] = field(default_factory=dict)
    """Qualified parameter name -> its width mults (empty under sp: nothing moves)."""

    @property
    def rules(self) -> WidthRules:
        return RULES[self.parametrization]

    def _width(self, name: str) -> ParamWidth:
        return self.widths.get(name, ParamWidth(1.0, 1.0))

    @contextlib.contextmanager
    def drawing(self, model: nn.Module) -> Iterator[None]:
        """While a scheme draws `model`: torch's fans are the base model's, when the rules ask for it."""
        if not self.rules.base_fans or not self.widths:
            yield
            return
        by_name = dict(model.named_parameters())
        with base_fans({by_name[n]: w.torch_fans for n, w in self.widths.items() if n in by_name}):
            yield

    @torch.no_grad()
    def rescale(self, model: nn.Module) -> None:
        """Multiply each drawn parameter by its init factor (after the scheme drew it)."""
        for name, p in model.named_parameters():
            scale = self.rules.init_scale(self._width(name))
            if scale != 1.0:
                p.mul_(scale)

    def lr_scale(self, name: str, optimizer: str) -> float:
        return self.rules.lr_scale[optimizer](self._width(name))

    def param_groups(self, named: Iterable[tuple[str, torch.Tensor]], lr: float, optimizer: str) -> list[dict]:
        """Optimizer param groups, one per (kind, lr): `{"params", "lr", "name"}`; `named` pairs each
        tensor (a packed stack too) with the per-seed parameter it holds."""
        groups: dict[tuple[str, float], list[torch.Tensor]] = {}
        for name, tensor in named:
            key = (self._width(name).kind, lr * self.lr_scale(name, optimizer))
            groups.setdefault(key, []).append(tensor)
        labels = _labels(list(groups))
        return [{"params": ps, "lr": key[1], "name": labels[key]} for key, ps in groups.items()]

    def lr_groups(self, names: Iterable[str], lr: float, optimizer: str) -> dict[str, float]:
        """Group label -> its lr (what MLflow logs as `lr.<label>`)."""
        return {g["name"]: g["lr"] for g in self.param_groups(((n, torch.empty(0)) for n in names), lr, optimizer)}


def _labels(keys: list[tuple[str, float]]) -> dict[tuple[str, float], str]:
    """`hidden`, or `hidden@0.0005` where one kind holds several lrs; `all` for a single group."""
    if len(keys) == 1:
        return {keys[0]: "all"}
    kinds = [k for k, _ in keys]
    return {(k, lr): k if kinds.count(k) == 1 else f"{k}@{lr:g}" for k, lr in keys}


def _mults(shape: torch.Size, base: torch.Size) -> list[float]:
    return [s / b for s, b in zip(shape, base, strict=True)]


def width_plan(parametrization: str, model: nn.Module, base: nn.Module | None) -> WidthPlan:
    """Each parameter of `model` against the same parameter of `base` (the model at its base width;
    None under a width-free parametrization). A parameter the base lacks, or of another rank, is a
    `ConfigError` naming it."""
    if base is None or PARAMETRIZATIONS[parametrization].width_free:
        return WidthPlan(parametrization)
    base_shapes = {n: p.shape for n, p in base.named_parameters()}
    widths: dict[str, ParamWidth] = {}
    for module_name, module in model.named_modules():
        for own, p in module.named_parameters(recurse=False):
            name = f"{module_name}.{own}" if module_name else own
            if name in widths:  # a parameter two modules share
                continue
            if name not in base_shapes or len(base_shapes[name]) != p.dim():
                raise ConfigError(
                    f"model.base_width: parameter {name} of shape {tuple(p.shape)} has no counterpart in the "
                    "model at its base width (the two must differ in sizes only)"
                )
            mults = _mults(p.shape, base_shapes[name])
            out, inp = mults[0], (mults[1] if p.dim() >= 2 else 1.0)
            if isinstance(module, nn.Embedding):  # rows (tokens) in, width out
                widths[name] = ParamWidth(out, inp, torch_fans=(inp, out))
            else:
                widths[name] = ParamWidth(inp, out, torch_fans=(inp, out))
    return WidthPlan(parametrization, widths)


@contextlib.contextmanager
def base_fans(mults: Mapping[torch.Tensor, tuple[float, float]]) -> Iterator[None]:
    """Within: `torch.nn.init._calculate_fan_in_and_fan_out` of a tensor in `mults` (or a view of one,
    as a fused qkv's thirds are) divides its fans by the tensor's (in, out) mults, so that every init
    function draws at the base model's scale. The one place torch's fans are patched, and only here."""
    by_storage = {t.untyped_storage().data_ptr(): m for t, m in mults.items()}
    original = nn.init._calculate_fan_in_and_fan_out

    def fans(tensor: torch.Tensor) -> tuple[int, int]:
        fan_in, fan_out = original(tensor)
        m = by_storage.get(tensor.untyped_storage().data_ptr()) if tensor.device.type != "meta" else None
        if m is None:
            return fan_in, fan_out
        return max(1, round(fan_in / m[0])), max(1, round(fan_out / m[1]))

    nn.init._calculate_fan_in_and_fan_out = fans
    try:
        yield
    finally:
        nn.init._calculate_fan_in_and_fan_out = original
