"""The task registry's facts: name -> `TaskInfo` (its metrics and which way is better; no torch here).

A task is what a trial's model is trained to do: the loss, the metrics it is judged by and their
direction. The config validates objectives and report columns against these names; the torch side of
each task (its loss and its evaluation) is `initsweep.engine.tasks.TASKS`, under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLASSIFICATION", "DIVERGED_ACCURACY", "DIVERGED_LOSS", "LANGUAGE_MODEL", "TASKS", "TaskInfo"]

DIVERGED_LOSS = 1e9
"""Every loss metric of a seed from the epoch it diverged on: finite, and worse than any real loss."""
DIVERGED_ACCURACY = 0.0
"""Every accuracy (%) of a seed from the epoch it diverged on."""


@dataclass(frozen=True)
class TaskInfo:
    name: str
    epoch_metrics: tuple[str, ...]
    """Measured for every seed after every epoch (the `_train_mode` ones only when asked for)."""
    test_metrics: tuple[str, ...]
    """Measured once, on the test split, after the last epoch."""
    objective: str
    """The default objective: the epoch metric whose mean over seeds ranks trials."""
    higher_is_better: tuple[str, ...]
    """The metrics for which more is better (accuracies); every other metric is a loss: less is better."""
    intervals: tuple[str, ...]
    """The validation metrics the result table gives with their intervals, first to last."""
    about: str
    """What its report's metrics mean, in a sentence (Markdown)."""
    output: str
    """The model's output for a batch, as the engine checks it: `(batch, classes)` or `(batch, context, vocab)`."""

    def mode(self, metric: str) -> str:
        """`max` or `min`: which way `metric` improves."""
        return "max" if metric in self.higher_is_better else "min"

    @property
    def final_metrics(self) -> tuple[str, ...]:
        """A seed's last-epoch metrics and its test metrics: the report's columns."""
        return tuple(dict.fromkeys(self.epoch_metrics + self.test_metrics))


CLASSIFICATION = TaskInfo(
    "classification",
    epoch_metrics=("val_accuracy", "val_loss", "train_loss", "last_batch_loss", "val_accuracy_train_mode"),
    test_metrics=("test_accuracy",),
    objective="val_accuracy",
    higher_is_better=("val_accuracy", "val_accuracy_train_mode", "test_accuracy"),
    intervals=("val_accuracy", "val_accuracy_train_mode"),
    about="`val acc` is measured in eval mode (the sound number); `dropout-on` with dropout still active, as the "
    "founding notebook did.",
    output="(batch, classes)",
)
LANGUAGE_MODEL = TaskInfo(
    "language_model",
    epoch_metrics=("val_loss", "val_bits_per_token", "train_loss", "last_batch_loss"),
    test_metrics=("test_loss",),
    objective="val_loss",
    higher_is_better=(),
    intervals=("val_loss", "val_bits_per_token"),
    about="`val loss` is the mean cross-entropy per next-token prediction on the validation block in nats (eval "
    "mode), `val bits/token` the same in bits (divided by ln 2), `test loss` the same on the test block.",
    output="(batch, context, vocab)",
)
TASKS: dict[str, TaskInfo] = {t.name: t for t in (CLASSIFICATION, LANGUAGE_MODEL)}
"""Every task, by the name `task:` takes in a sweep config."""
