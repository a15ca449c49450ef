"""The weight rules behind the scheme registry (`initsweep.catalog.schemes`), and `apply_scheme`.

A rule draws the weights of every `Linear` and `Conv` layer from an explicit `torch.Generator`, so the
same init seed always gives the same network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from initsweep.catalog.schemes import BIAS_MODES, SchemeError, resolve_auto

__all__ = ["INIT_LAYERS", "RULES", "apply_scheme", "fan_in", "init_layers"]

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

WeightRule = Callable[..., None]
"""`rule(weight, generator, **params)` fills `weight` in place."""


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output unit: in_features for Linear, in_channels * kernel size for Conv."""
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
}
"""Scheme name -> its weight rule; the whole-model schemes (lsuv, pytorch_default) have none."""


def init_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights a scheme initializes, in forward-definition order."""
    return [m for m in model.modules() if isinstance(m, INIT_LAYERS)]


@torch.no_grad()
def apply_scheme(
    model: nn.Module,
    name: str,
    params: Mapping[str, object] | None = None,
    *,
    seed: int,
    bias: str = "zeros",
    bias_value: float = 0.0,
    batch: torch.Tensor | None = None,
    activation: str | None = None,
) -> nn.Module:
    """Initialize `model` in place with scheme `name` from `seed`; returns the model.

    Every layer is first reset with its own `reset_parameters()` under `seed` (that is the whole of
    `pytorch_default`); then the scheme overwrites each weight, and `bias` sets the biases:
    `zeros` (the seed's choice), `constant` (`bias_value`) or `default` (the layer's own).
    `lsuv` needs `batch`, a batch of inputs to measure each layer's output variance on. A gain or
    nonlinearity given as "auto" matches `activation`, the model's nonlinearity.
    """
    full = resolve_auto(name, params or {}, activation)
    if bias not in BIAS_MODES:
        raise SchemeError(f"{bias!r} is not one of {', '.join(BIAS_MODES)}", "bias")
    layers = init_layers(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in layers:
            layer.reset_parameters()
    if name == "pytorch_default":
        return model

    generator = torch.Generator(device=layers[0].weight.device if layers else "cpu").manual_seed(seed)
    rule = RULES.get(name)
    for layer in layers:
        if rule is None:  # lsuv starts from an orthogonal init
            nn.init.orthogonal_(layer.weight, generator=generator)
        else:
            rule(layer.weight, generator, **full)
        if layer.bias is not None and bias != "default":
            layer.bias.fill_(bias_value if bias == "constant" else 0.0)
    if name == "lsuv":
        if batch is None:
            raise SchemeError("lsuv needs a batch of inputs to measure output variance on")
        _lsuv_rescale(model, layers, batch, tol=float(full["tol"]), max_iter=int(full["max_iter"]))
    return model


def _lsuv_rescale(model: nn.Module, layers: list[nn.Module], batch: torch.Tensor, tol: float, max_iter: int) -> None:
    """Scale each layer's weight, first to last, until its output variance on `batch` is 1 +- tol."""
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    for layer in layers:
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            for _ in range(max_iter):
                captured.clear()
                model(batch)
                var = captured[0].var().item()
                if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                    break
                layer.weight.div_(math.sqrt(var))
        finally:
            hook.remove()
    model.train(was_training)
