"""The pure training loop: `run_trial(TrialConfig, Data) -> TrialResult`. No Ray, no MLflow.

A trial trains one scheme on each of its replicate seeds. Each seed derives three independent streams
(init, data order, dropout) from itself alone, so a seed's result does not depend on which other seeds
share the trial, and two schemes trained on the same seed see the same batches (paired comparisons).
Seeds advance epoch by epoch together, so `on_epoch` sees every seed's metrics for an epoch at once.

Divergence is a result, not a crash: a non-finite loss stops that seed, records the step, and its
metrics from then on are the finite penalties `DIVERGED_LOSS` and `DIVERGED_ACCURACY`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from initsweep.config import TrialConfig
from initsweep.data import Data, Split
from initsweep.diagnostics import init_diagnostics
from initsweep.models import build_model
from initsweep.schemes import apply_scheme

__all__ = [
    "DIVERGED_ACCURACY",
    "DIVERGED_LOSS",
    "PROBE_SIZE",
    "SeedResult",
    "TrialResult",
    "evaluate",
    "run_trial",
    "seed_streams",
]

DIVERGED_LOSS = 1e9
"""Every loss metric of a seed from the epoch it diverged on: finite, and worse than any real loss."""
DIVERGED_ACCURACY = 0.0
"""Every accuracy (%) of a seed from the epoch it diverged on."""
PROBE_SIZE = 500
"""Train images (the split's first) that LSUV and the init diagnostics measure on."""

EpochCallback = Callable[[int, list["SeedResult"]], None]
"""`on_epoch(epoch, seeds)` after every seed trained epoch `epoch` (1-based): each `SeedResult` so far,
its `epochs[-1]` that epoch's metrics; after the last epoch `test_accuracy` is set too."""


@dataclass
class SeedResult:
    seed: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: train_loss (epoch mean), last_batch_loss, val_loss, val_accuracy (%, eval mode),
    and val_accuracy_train_mode (%, dropout on) when asked for."""
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) every `train.log_every` steps, for loss curves."""
    test_accuracy: float | None = None
    """Measured after the last epoch (`DIVERGED_ACCURACY` for a diverged seed); None if stopped early."""
    diverged_step: int | None = None
    diagnostics: list[dict[str, float | str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SeedResult:
        return cls(**(d | {"step_losses": [tuple(x) for x in d["step_losses"]]}))

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics, plus test_accuracy once measured."""
        test = {} if self.test_accuracy is None else {"test_accuracy": self.test_accuracy}
        return self.epochs[-1] | test


@dataclass
class TrialResult:
    config: TrialConfig
    seeds: list[SeedResult]
    seconds: float


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent (init, data order, dropout) seeds derived from one replicate seed."""
    return tuple(int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, train_mode: bool = False, chunk: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) on `split`; `train_mode` keeps dropout on."""
    was_training = model.training
    model.train(train_mode)
    loss_sum, correct = 0.0, 0
    for i in range(0, len(split), chunk):
        logits = model(split.x[i : i + chunk])
        y = split.y[i : i + chunk]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return loss_sum / len(split), 100.0 * correct / len(split)


class _SeedRun:
    """One replicate's model, optimizer and random streams, trained an epoch at a time."""

    def __init__(self, trial: TrialConfig, data: Data, seed: int, device: torch.device):
        init_seed, order_seed, dropout_seed = seed_streams(seed)
        probe = data.train.x[:PROBE_SIZE].cpu(), data.train.y[:PROBE_SIZE].cpu()
        model = build_model(trial.model, data.input_shape, data.num_classes)
        # Init on the CPU: the same seed gives the same weights on any device.
        apply_scheme(
            model,
            trial.scheme.scheme,
            trial.scheme.params,
            seed=init_seed,
            bias=trial.init.bias,
            bias_value=trial.init.bias_value,
            batch=probe[0],
        )
        self.result = SeedResult(seed, diagnostics=init_diagnostics(model, *probe))
        self.model = model.to(device)
        self.trial, self.device, self.step = trial, device, 0
        t = trial.train
        if t.optimizer == "adam":
            self.optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
        else:
            self.optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum)
        self.order = torch.Generator().manual_seed(order_seed)
        with torch.random.fork_rng(devices=self._cuda()):
            torch.manual_seed(dropout_seed)
            self.rng_state = self._get_rng()

    def _cuda(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def _get_rng(self) -> list[torch.Tensor]:
        return [torch.get_rng_state()] + [torch.cuda.get_rng_state(d) for d in self._cuda()]

    def _set_rng(self, states: list[torch.Tensor]) -> None:
        torch.set_rng_state(states[0])
        for d, s in zip(self._cuda(), states[1:], strict=True):
            torch.cuda.set_rng_state(s, d)

    def train_epoch(self, data: Data) -> None:
        """Train one epoch, then evaluate; after divergence, only record the penalty."""
        r = self.result
        if r.diverged:
            return self._record_penalty()
        t = self.trial.train
        with torch.random.fork_rng(devices=self._cuda()):
            self._set_rng(self.rng_state)  # this seed's own dropout stream
            metrics = self._train_and_evaluate(data, t.batch_size, t.log_every, t.val_train_mode)
            self.rng_state = self._get_rng()
        if metrics is None or not all(math.isfinite(v) for v in metrics.values()):
            r.diverged_step = r.diverged_step or self.step
            self._record_penalty()
        else:
            r.epochs.append(metrics)

    def _train_and_evaluate(
        self, data: Data, batch_size: int, log_every: int, val_train_mode: bool
    ) -> dict[str, float] | None:
        model, optimizer, train = self.model, self.optimizer, data.train
        model.train()
        perm = torch.randperm(len(train), generator=self.order).to(self.device)
        total, count = 0.0, 0
        for start in range(0, len(train), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            self.step += 1
            value = loss.item()
            if not math.isfinite(value):
                self.result.diverged_step = self.step
                return None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + value, count + 1
            if self.step % log_every == 0:
                self.result.step_losses.append((self.step, value))
        val_loss, val_accuracy = evaluate(model, data.val)
        metrics = {
            "train_loss": total / count,
            "last_batch_loss": value,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        if val_train_mode:
            metrics["val_accuracy_train_mode"] = evaluate(model, data.val, train_mode=True)[1]
        return metrics

    def _record_penalty(self) -> None:
        metrics = {
            "train_loss": DIVERGED_LOSS,
            "last_batch_loss": DIVERGED_LOSS,
            "val_loss": DIVERGED_LOSS,
            "val_accuracy": DIVERGED_ACCURACY,
        }
        if self.trial.train.val_train_mode:
            metrics["val_accuracy_train_mode"] = DIVERGED_ACCURACY
        self.result.epochs.append(metrics)

    def finish(self, data: Data) -> None:
        self.result.test_accuracy = DIVERGED_ACCURACY
        if not self.result.diverged:
            test_loss, test_accuracy = evaluate(self.model, data.test)
            if math.isfinite(test_loss):
                self.result.test_accuracy = test_accuracy


def run_trial(
    trial: TrialConfig,
    data: Data,
    *,
    device: torch.device | str = "cpu",
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Train `trial`'s scheme on each of its seeds; per-epoch metrics for every seed.

    The same config and seeds give the same metrics on the CPU.
    """
    start = time.perf_counter()
    device = torch.device(device)
    data = data.to(device)
    runs = [_SeedRun(trial, data, seed, device) for seed in trial.seeds]
    for epoch in range(1, trial.train.epochs + 1):
        for run in runs:
            seed_start = time.perf_counter()
            run.train_epoch(data)
            if epoch == trial.train.epochs:
                run.finish(data)
            run.result.seconds += time.perf_counter() - seed_start
        if on_epoch is not None:
            on_epoch(epoch, [run.result for run in runs])
    return TrialResult(trial, [run.result for run in runs], time.perf_counter() - start)
