"""The `objective` and `report` sections: what "best" means, and what the report compares and sets beside
ours (metric names from `initsweep.catalog.metrics`, not the result records)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from initsweep.catalog.metrics import EPOCH_METRICS
from initsweep.config.base import _Strict


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
