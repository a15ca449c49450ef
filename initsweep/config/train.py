"""The `train` section: the optimizer and the loop's settings (a `tune` section or a search may set any)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from initsweep.config.base import _Strict


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
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """The lr over training, as a factor on every param group's own lr (muP's groups keep their ratios):
    constant, or cosine decay to 0 at the last step (after the warm-up)."""
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warm-up from lr / warmup_steps to lr before the schedule (0: none)."""
    val_train_mode: bool = False
    """Also measure validation accuracy with dropout on, as the founding notebook did."""
