"""Per-layer statistics at init: how big the weights, the signals and the gradients start out.

Taken before training on one fixed batch, in eval mode (no dropout), so they show why a scheme
fails: all-ones grows the signal by the fan-in at every layer, all-zeros gives zero gradients.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from initsweep.config import InitConfig
from initsweep.engine.roles import weight_of
from initsweep.engine.schemes import first_tensor, plan_init

__all__ = ["init_diagnostics"]


def _keep_first(outputs: dict[str, torch.Tensor], name: str, out: object) -> None:
    tensor = first_tensor(out)
    if tensor is not None and name not in outputs:  # a layer run twice: its first call
        outputs[name] = tensor.detach()


def init_diagnostics(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, init: InitConfig | None = None, scheme: str | None = None
) -> list[dict[str, float | str]]:
    """One row per layer the init touches (`init.layers`, by default every Linear/Conv layer, or the
    modules a role-aware `scheme` draws, and the layers `init.overrides` name): weight mean/std, output
    mean/std on `x`, weight-gradient norm, and the module's role where it has one. A layer the forward
    pass does not run is left out.

    Leaves the model's gradients cleared and its train/eval mode as it was.
    """
    plan = plan_init(model, init, scheme)
    layers = plan.touched
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, name=name: _keep_first(outputs, name, out)) for name, m in layers
    ]
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        logits = model(x)  # (B, classes), or (B, context, vocab) for a language model
        F.cross_entropy(logits.flatten(0, -2), y.flatten()).backward()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows = []
    for name, m in layers:
        if name not in outputs:
            continue
        weight = weight_of(m)
        w, out = weight.detach().float(), outputs[name].float()
        grad = weight.grad
        row: dict[str, float | str] = {
            "layer": f"{name}:{type(m).__name__}",
            "weight_mean": w.mean().item(),
            "weight_std": w.std().item(),
            "act_mean": out.mean().item(),
            "act_std": out.std().item(),
            "grad_norm": grad.norm().item() if grad is not None else 0.0,
        }
        rows.append(row | ({"role": plan.roles[name]} if name in plan.roles else {}))
    model.zero_grad(set_to_none=True)
    return rows
