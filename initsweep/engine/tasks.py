"""The task registry's torch side: name -> `Task` (its loss and its evaluation), beside the facts in
`initsweep.catalog.tasks`. The trainer, packed or not, asks the task for every loss and metric, so a new
task is one entry here and one there, never an `if` in the loop.

Everything is per seed: logits carry a leading seed axis S, `(S, B, classes)` for classification and
`(S, B, context, vocab)` for a language model, with targets `(S, B)` or `(S, B, context)`. One model
alone is S = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from initsweep.catalog.tasks import CLASSIFICATION, DIVERGED_ACCURACY, DIVERGED_LOSS, LANGUAGE_MODEL, TaskInfo

__all__ = ["DIVERGED_ACCURACY", "DIVERGED_LOSS", "TASKS", "Task"]


def _token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every prediction, (S, N) for logits (S, B, ..., C) and targets (S, B, ...)."""
    s, c = logits.shape[0], logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, c), targets.reshape(-1), reduction="none").view(s, -1)


def _correct(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"correct": (logits.argmax(-1) == targets).flatten(1).sum(1).float()}


def _accuracy(sums: dict[str, float], count: int, split: str) -> dict[str, float]:
    return {f"{split}_accuracy": 100.0 * sums["correct"] / count}


def _bits(sums: dict[str, float], count: int, split: str) -> dict[str, float]:
    return {f"{split}_bits_per_token": sums["loss"] / count / math.log(2)}  # nats -> bits


@dataclass(frozen=True)
class Task:
    """A task's loss and evaluation; `info` holds its metric names and their direction."""

    info: TaskInfo
    counts: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
    """Per seed, a chunk's summed statistics (S,) beside its summed loss (classification: correct answers)."""
    score: Callable[[dict[str, float], int, str], dict[str, float]]
    """Whole-split sums and predictions per seed -> the task's score (`{split}_accuracy`, `{split}_bits_per_token`)."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of each seed, (S,): mean cross-entropy per example (per token for an LM)."""
        return _token_losses(logits, targets).mean(1)

    def sums(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per seed, a chunk's summed loss and statistics, each (S,), for `metrics`."""
        return {"loss": _token_losses(logits, targets).sum(1)} | self.counts(logits, targets)

    def predictions(self, targets: torch.Tensor) -> int:
        """Predictions per seed in a chunk of (S, B, ...) targets: examples, or tokens for an LM."""
        return targets[0].numel()

    def metrics(self, sums: dict[str, float], count: int, split: str) -> dict[str, float]:
        """`sums` over a whole split (`count` predictions per seed) -> `{split}_loss` and the score."""
        return {f"{split}_loss": sums["loss"] / count} | self.score(sums, count, split)

    def penalty(self, metric: str) -> float:
        """A diverged seed's value of `metric`: the worst finite value, by the metric's direction."""
        return DIVERGED_ACCURACY if self.info.mode(metric) == "max" else DIVERGED_LOSS


TASKS: dict[str, Task] = {
    CLASSIFICATION.name: Task(CLASSIFICATION, _correct, _accuracy),
    LANGUAGE_MODEL.name: Task(LANGUAGE_MODEL, lambda logits, targets: {}, _bits),
}
"""Every task by name, as `initsweep.catalog.tasks.TASKS` lists their facts."""
