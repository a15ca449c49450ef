"""The parametrization registry: how a model's init scale, learning rates and multipliers move with its
width (no torch here; the rules are in `initsweep.engine.parametrizations`).

`sp`, the standard parametrization, is what every layer does by itself: the scheme draws each weight at
its own shape and every parameter trains at `train.lr`. `mup` is the Maximal Update Parametrization
(Yang et al. 2022, "Tensor Programs V", Table 3): relative to a base width (`model.base_width`, where
mup equals sp exactly), hidden weights keep 1/fan_in variance, the readout's variance falls as 1/fan_in^2,
Adam's lr of hidden and readout weights falls as 1/fan_in, and attention logits are q.k/d_head.

How a scheme composes with it: the scheme sets the distribution at the base width, the parametrization how
its scale moves with width. Each weight is drawn by the scheme as the scheme draws it at the base width
(every fan the scheme reads is the base model's), then multiplied by mup's width factor: sqrt(base/width)
for a hidden weight, base/width for a readout weight, 1 for input weights, embeddings and biases. A scheme
whose scale is not set by fans and constants cannot be moved that way and is refused (`refuses`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEPTH_SCALINGS", "PARAMETRIZATIONS", "Parametrization", "attention_scale", "branch_scale"]


@dataclass(frozen=True)
class Parametrization:
    name: str
    about: str
    width_free: bool
    """True when the parametrization moves nothing with width (sp): no base width is needed."""
    refuses: Mapping[str, str] = field(default_factory=dict)
    """Scheme -> why it cannot compose with this parametrization."""


PARAMETRIZATIONS: dict[str, Parametrization] = {
    p.name: p
    for p in [
        Parametrization(
            "sp",
            "the standard parametrization: every weight as the scheme draws it at its own shape, every "
            "parameter at train.lr, attention logits q.k/sqrt(d_head)",
            width_free=True,
        ),
        Parametrization(
            "mup",
            "muP (Tensor Programs V, Table 3), relative to model.base_width: hidden weights' scale "
            "sqrt(base/width), the readout's base/width, Adam lr of both x base/width (SGD: input weights "
            "and biases x width/base, the readout x base/width), attention logits q.k/d_head",
            width_free=False,
            refuses={
                "orthogonal": "its scale comes from the weight's shape (each row a unit vector), not from "
                "fans muP can move to the base width",
                "lsuv": "it rescales each layer until its output variance on a batch is 1, which undoes "
                "muP's width scaling",
            },
        ),
    ]
}
"""Parametrization name -> what it is; `model.parametrization` picks one."""

DEPTH_SCALINGS = ("none", "depth_mup")
"""`model.residual_scaling`: none, or Depth-muP's 1/sqrt(depth) on every residual branch."""


def attention_scale(parametrization: str, head_dim: int, base_head_dim: int) -> float | None:
    """The attention logits' scale: None (SDPA's 1/sqrt(d_head)) under sp; under mup 1/d_head, written
    sqrt(base d_head)/d_head so that it equals sp's at the base width."""
    if PARAMETRIZATIONS[parametrization].width_free:
        return None
    return math.sqrt(base_head_dim) / head_dim


def branch_scale(residual_scaling: str, depth: int) -> float:
    """Each residual branch's multiplier: 1, or Depth-muP's 1/sqrt(depth) (Yang et al. 2023, "Tensor
    Programs VI"; Bordelon et al. 2023)."""
    return 1.0 / math.sqrt(depth) if residual_scaling == "depth_mup" else 1.0
