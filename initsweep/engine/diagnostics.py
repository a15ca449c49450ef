"""Per-layer statistics at init: how big the weights, the signals and the gradients start out.

Taken before training on one fixed batch, in eval mode (no dropout), so they show why a scheme
fails: all-ones grows the signal by the fan-in at every layer, all-zeros gives zero gradients.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from initsweep.engine.schemes import INIT_LAYERS

__all__ = ["init_diagnostics"]


def init_diagnostics(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict[str, float | str]]:
    """One row per Linear/Conv layer: weight mean/std, output mean/std on `x`, weight-gradient norm.

    Leaves the model's gradients cleared and its train/eval mode as it was.
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, INIT_LAYERS)]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach()))
        for name, m in layers
    ]
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows = []
    for name, m in layers:
        w, out = m.weight.detach(), outputs[name].float()
        grad = m.weight.grad
        rows.append(
            {
                "layer": f"{name}:{type(m).__name__}",
                "weight_mean": w.mean().item(),
                "weight_std": w.std().item(),
                "act_mean": out.mean().item(),
                "act_std": out.std().item(),
                "grad_norm": grad.norm().item() if grad is not None else 0.0,
            }
        )
    model.zero_grad(set_to_none=True)
    return rows
