"""The `objective` and `report` sections: what "best" means, and what the report compares and sets beside
ours (metric names from `initsweep.catalog.metrics`, not the result records)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from initsweep.catalog.metrics import EPOCH_METRICS, FINAL_METRICS
from initsweep.catalog.tasks import TASKS
from initsweep.config.base import _Strict


class ObjectiveConfig(_Strict):
    """What "best" means: the mean over seeds of one epoch metric, for ranking, search and early stopping."""

    metric: Literal[EPOCH_METRICS] | None = None
    """The epoch metric whose mean over seeds ranks trials, drives the search and ASHA; default: the
    task's (val_accuracy for classification, val_loss for a language model)."""
    mode: Literal["max", "min"] | None = None
    """Default: the metric's direction (max for accuracies, min for losses and bits)."""

    def for_task(self, task: str) -> ObjectiveConfig:
        """This objective with its defaults filled in for `task`; `ValueError` for a metric the task
        does not measure."""
        info = TASKS[task]
        metric = self.metric or info.objective
        if metric not in info.epoch_metrics:
            valid = ", ".join(m for m in info.epoch_metrics)
            raise ValueError(f"objective.metric: {metric} is not measured by task {task} (it measures {valid})")
        return ObjectiveConfig(metric=metric, mode=self.mode or info.mode(metric))


class ReferenceConfig(_Strict):
    """Published numbers to set beside ours, each marked inside or outside our interval."""

    metric: Literal[FINAL_METRICS] = "val_accuracy_train_mode"
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
