"""The pure training loop: `run_trial(TrialConfig, Data) -> TrialResult`. No Ray, no MLflow, no Optuna.

A trial trains one scheme on each of its replicate seeds. Each seed derives three independent streams
(init, data order, dropout) from itself alone, so a seed's result does not depend on which other seeds
share the trial, and two schemes trained on the same seed see the same batches (paired comparisons).
Seeds advance epoch by epoch together, so `on_epoch` sees every seed's metrics for an epoch at once.
MLPs train all their seeds as one packed model (`initsweep.engine.packed`); other models train theirs as one
wide model, the seeds side by side in the channel dimension (`initsweep.engine.folded`), or as one vmapped
model (`initsweep.engine.vmapped`, torch.func) where they do not fold, or one after another when vmap
cannot run them and, on the CPU, for conv nets that do not fold (vmap's grouped convolutions are slower
there than the seeds' own).

A trial can stop after any epoch and go on later: `on_epoch` gets a snapshot of the whole training
state (weights, optimizer, every random stream, the results so far), and `run_trial(resume=state)`
continues from it with the metrics an uninterrupted run would have had (checkpoints under Ray Tune).

Divergence is a result, not a crash: a non-finite loss stops that seed, records the step, and its
metrics from then on are the finite penalties `DIVERGED_LOSS` and `DIVERGED_ACCURACY`.

The loop knows no task: the trial's task (`initsweep.engine.tasks`: classification, language model)
gives every loss and metric, packed or not.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from initsweep.config import TrialConfig
from initsweep.engine.data import Data, Split
from initsweep.engine.diagnostics import init_diagnostics
from initsweep.engine.folded import FoldedModel, fold_failure
from initsweep.engine.models import build_model, initialize
from initsweep.engine.packed import PackedMLP, packable
from initsweep.engine.parametrizations import WidthPlan
from initsweep.engine.tasks import DIVERGED_ACCURACY, DIVERGED_LOSS, TASKS, Task
from initsweep.engine.transformers import Attention
from initsweep.engine.vmapped import VmappedModel, vmap_failure
from initsweep.results import SeedResult, TrialResult

__all__ = [
    "DIVERGED_ACCURACY",
    "DIVERGED_LOSS",
    "EVAL_LOGITS",
    "PROBE_SIZE",
    "PackingFallbackWarning",
    "evaluate",
    "run_trial",
    "seed_streams",
]

PROBE_SIZE = 500
"""Train predictions (the split's first images, or tokens of its first windows) that LSUV and the init
diagnostics measure on."""
EVAL_LOGITS = 1 << 22
"""Logits per seed in one evaluation chunk (16 MB): 2000 images of 10 classes, 128 windows of an LM."""

EpochCallback = Callable[[int, list["SeedResult"], Callable[[], dict]], None]
"""`on_epoch(epoch, seeds, snapshot)` after every seed trained epoch `epoch` (1-based): each `SeedResult`
so far, its `epochs[-1]` that epoch's metrics (after the last epoch its `test` metrics are set too), and
`snapshot()`, the training state to pass as `run_trial(resume=...)` (built only when called)."""


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent (init, data order, dropout) seeds derived from one replicate seed."""
    return tuple(int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))


def eval_chunk(split: Split, num_classes: int, most: int = 2000) -> int:
    """Examples per evaluation chunk: at most `most`, and at most `EVAL_LOGITS` logits per seed."""
    per_example = max(1, split.y[0].numel() * num_classes)
    return max(1, min(most, EVAL_LOGITS // per_example))


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, task: Task, num_classes: int, *, name: str = "val", train_mode: bool = False
) -> dict[str, float]:
    """The task's metrics on `split` (`{name}_loss` and its score); `train_mode` keeps dropout on
    (BatchNorm still uses, and leaves alone, its running statistics)."""
    was_training = model.training
    model.eval()
    if train_mode:
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.train()
    sums: dict[str, float] = {}
    chunk = eval_chunk(split, num_classes)
    for i in range(0, len(split), chunk):
        y = split.y[i : i + chunk].unsqueeze(0)
        for k, v in task.sums(model(split.x[i : i + chunk]).unsqueeze(0), y).items():
            sums[k] = sums.get(k, 0.0) + v.item()
    model.train(was_training)
    return task.metrics(sums, task.predictions(split.y.unsqueeze(0)), name)


def _train_mode_metrics(task: Task, metrics: dict[str, float]) -> dict[str, float]:
    """Validation with dropout on: the metrics the task measures that way, renamed `..._train_mode`."""
    return {f"{k}_train_mode": v for k, v in metrics.items() if f"{k}_train_mode" in task.info.epoch_metrics}


def _test_metrics(task: Task, metrics: dict[str, float]) -> dict[str, float]:
    """A seed's test metrics: the task's, or their penalties where the loss is not finite."""
    if not math.isfinite(metrics["test_loss"]):
        return {m: task.penalty(m) for m in task.info.test_metrics}
    return {m: metrics[m] for m in task.info.test_metrics}


def _initialized_model(trial: TrialConfig, data: Data, seed: int) -> tuple[nn.Module, WidthPlan, SeedResult]:
    """The seed's model, initialized on the CPU (the same seed gives the same weights on any device),
    its width plan (each parameter's lr factor) and its result record holding the init diagnostics."""
    n = max(1, PROBE_SIZE // data.train.y[0].numel())  # 500 images, or 500 tokens of an LM's windows
    probe = data.train.x[:n].cpu(), data.train.y[:n].cpu()
    model = _build(trial, data)
    plan = initialize(model, trial, data.input_shape, data.num_classes, seed=seed_streams(seed)[0], batch=probe[0])
    names = [name for name, _ in model.named_parameters()]
    result = SeedResult(
        seed,
        diagnostics=init_diagnostics(model, *probe, trial.init, trial.row.scheme),
        lrs=plan.lr_groups(names, trial.train.lr, trial.train.optimizer),
    )
    return model, plan, result


def _build(trial: TrialConfig, data: Data) -> nn.Module:
    """The trial's model, built without touching the caller's global RNG (layers draw a default init)."""
    with torch.random.fork_rng(devices=[]):
        return build_model(trial.model, data.input_shape, data.num_classes)


def _optimizer(trial: TrialConfig, plan: WidthPlan, named) -> torch.optim.Optimizer:
    """The trial's optimizer over `named` (per-seed parameter name, tensor) pairs, one param group per
    lr the parametrization gives (one under sp)."""
    t = trial.train
    groups = plan.param_groups(named, t.lr, t.optimizer)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, fused=True)  # one pass over the weights, not ~10
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, fused=True)


def _schedule(
    trial: TrialConfig, optimizer: torch.optim.Optimizer, train_size: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """`train.lr_schedule` with its warm-up, stepped once per optimizer step: a factor on each param
    group's own lr, so a parametrization's per-group ratios hold at every step."""
    t = trial.train
    total = t.epochs * math.ceil(train_size / t.batch_size)

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.lr_schedule == "cosine":  # over the steps after the warm-up, to 0 at the last
            done = min(1.0, (step - t.warmup_steps) / max(1, total - t.warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _penalty(task: Task, val_train_mode: bool) -> dict[str, float]:
    """A diverged seed's epoch metrics: every metric of the task at its worst finite value."""
    return {m: task.penalty(m) for m in task.info.epoch_metrics if val_train_mode or not m.endswith("_train_mode")}


class _SeedRun:
    """One replicate's model, optimizer and random streams, trained an epoch at a time (unpackable
    models); dropout draws from the global RNG, saved and restored around each of its epochs."""

    def __init__(self, trial: TrialConfig, data: Data, seed: int, device: torch.device):
        _, order_seed, dropout_seed = seed_streams(seed)
        model, plan, self.result = _initialized_model(trial, data, seed)
        self.model = model.to(device)
        self.trial, self.device, self.step = trial, device, 0
        self.task, self.num_classes = TASKS[trial.task], data.num_classes
        self.optimizer = _optimizer(trial, plan, model.named_parameters())
        self.scheduler = _schedule(trial, self.optimizer, len(data.train))
        self.order = torch.Generator().manual_seed(order_seed)
        self.results = [self.result]  # as a packed run's, for run_trial
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
            x, y = train.rows(perm[start : start + batch_size])
            loss = self.task.loss(model(x).unsqueeze(0), y.unsqueeze(0))[0]
            self.step += 1
            value = loss.item()
            if not math.isfinite(value):
                self.result.diverged_step = self.step
                return None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.scheduler.step()
            total, count = total + value, count + 1
            if self.step % log_every == 0:
                self.result.step_losses.append((self.step, value))
        metrics = {"train_loss": total / count, "last_batch_loss": value}
        metrics |= evaluate(model, data.val, self.task, self.num_classes)
        if val_train_mode:
            on = evaluate(model, data.val, self.task, self.num_classes, train_mode=True)
            metrics |= _train_mode_metrics(self.task, on)
        return metrics

    def _record_penalty(self) -> None:
        self.result.epochs.append(_penalty(self.task, self.trial.train.val_train_mode))

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order": self.order.get_state(),
            "dropout": self.rng_state,
            "step": self.step,
            "results": [self.result.to_dict()],
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # snapshots from before schedules: constant, nothing to restore
            self.scheduler.load_state_dict(state["scheduler"])
        self.order.set_state(state["order"])
        self.rng_state, self.step = list(state["dropout"]), state["step"]
        self.result = SeedResult.from_dict(state["results"][0])
        self.results = [self.result]

    def finish(self, data: Data) -> None:
        if self.result.diverged:
            self.result.test = {m: self.task.penalty(m) for m in self.task.info.test_metrics}
        else:
            metrics = evaluate(self.model, data.test, self.task, self.num_classes, name="test")
            self.result.test = _test_metrics(self.task, metrics)


class _PackedRun:
    """All of a trial's seeds as one packed model: the same per-seed streams as `_SeedRun`, one forward.

    `PackedMLP` (the hand-written MLP) or `VmappedModel` (any model, through `torch.func.vmap`). The
    vmapped model's other randomness than `nn.Dropout` (if any) draws from the global RNG, seeded from a
    per-trial stream that is saved and restored around each epoch, as `_SeedRun` does per seed."""

    def __init__(
        self,
        trial: TrialConfig,
        seeds: list[int],
        device: torch.device,
        model: PackedMLP | VmappedModel,
        data: Data,
        plan: WidthPlan,
    ):
        self.model = model
        self.task, self.num_classes = TASKS[trial.task], data.num_classes
        self.n_seeds = len(seeds)
        self.optimizer = _optimizer(trial, plan, model.named_sources())
        self.scheduler = _schedule(trial, self.optimizer, len(data.train))
        streams = [seed_streams(seed) for seed in seeds]
        self.orders = [torch.Generator().manual_seed(order) for _, order, _ in streams]
        self.dropouts = [torch.Generator(device).manual_seed(dropout) for _, _, dropout in streams]
        self.trial, self.device, self.step = trial, device, 0
        self.vmapped = isinstance(model, VmappedModel)
        self.rng_state: list[torch.Tensor] = []
        if self.vmapped:  # the trial's global-RNG stream, from all its seeds' dropout streams
            trial_seed = int(np.random.SeedSequence([d for _, _, d in streams]).generate_state(1)[0])
            with torch.random.fork_rng(devices=self._cuda()):
                torch.manual_seed(trial_seed)
                self.rng_state = _get_rng(self._cuda())

    def _cuda(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    @contextlib.contextmanager
    def _trial_rng(self, keep: bool):
        """The trial's own global-RNG stream (vmapped models only); `keep` saves where it got to."""
        if not self.vmapped:
            yield
            return
        with torch.random.fork_rng(devices=self._cuda()):
            _set_rng(self._cuda(), self.rng_state)
            yield
            if keep:
                self.rng_state = _get_rng(self._cuda())

    def _forward(self, x: torch.Tensor, generators, *, train: bool, shared: bool = False) -> torch.Tensor:
        """Logits (S, B, ...): x is (S, B, ...) per-seed batches, or (B, ...) for every seed when `shared`;
        dropout on when `generators` is given."""
        if not self.vmapped:
            if shared:
                x = x.unsqueeze(0).expand(self.n_seeds, *x.shape)
            return self.model(x, generators)
        if train:
            self.model.train()
        else:
            self.model.eval(train_mode=generators is not None)
        return self.model(x, generators, shared=shared)

    def train_epoch(self, data: Data) -> None:
        with self._trial_rng(keep=True):
            self._train_epoch(data)

    def _train_epoch(self, data: Data) -> None:
        t, train, results = self.trial.train, data.train, self.results
        alive = [not r.diverged for r in results]
        epoch_metrics: list[dict[str, float] | None] = [None] * len(results)
        if any(alive):
            perms = torch.stack([torch.randperm(len(train), generator=g) for g in self.orders]).to(self.device)
            totals, count, last = [0.0] * len(results), 0, [math.nan] * len(results)
            for start in range(0, len(train), t.batch_size):
                x, y = train.rows(perms[:, start : start + t.batch_size])
                losses = self.task.loss(self._forward(x, self.dropouts, train=True), y)
                self.step += 1
                values = losses.tolist()
                for s, v in enumerate(values):
                    if alive[s] and not math.isfinite(v):
                        alive[s], results[s].diverged_step = False, self.step
                if not any(alive):
                    break
                self.optimizer.zero_grad(set_to_none=True)
                (losses if all(alive) else losses[torch.tensor(alive, device=self.device)]).sum().backward()
                self.optimizer.step()
                self.scheduler.step()
                count += 1
                for s, v in enumerate(values):
                    if alive[s]:
                        totals[s] += v
                        last[s] = v
                        if self.step % t.log_every == 0:
                            results[s].step_losses.append((self.step, v))
            for s in (s for s in range(len(results)) if alive[s]):
                epoch_metrics[s] = {"train_loss": totals[s] / count, "last_batch_loss": last[s]}
            self._evaluate(data.val, epoch_metrics, t.val_train_mode)
        for s, r in enumerate(results):
            m = epoch_metrics[s]
            if m is None or not all(math.isfinite(v) for v in m.values()):
                r.diverged_step = r.diverged_step or self.step
                r.epochs.append(_penalty(self.task, t.val_train_mode))
            else:
                r.epochs.append(m)

    @torch.no_grad()
    def _packed_eval(self, split: Split, modes: tuple = (None,), name: str = "val") -> list[list[dict[str, float]]]:
        """Per dropout mode in `modes` (None: off; the seeds' generators: on), per seed: the task's metrics on
        `split`, all modes from one pass over it."""
        chunk = eval_chunk(split, self.num_classes, getattr(self.model, "eval_batch", 2000))
        sums: list[dict[str, torch.Tensor]] = [{} for _ in modes]
        for i in range(0, len(split), chunk):
            x, y = split.x[i : i + chunk], split.y[i : i + chunk]
            ys = y.unsqueeze(0).expand(self.n_seeds, *y.shape)
            for logits, mode in zip(self._eval_logits(x, modes), sums, strict=True):
                for k, v in self.task.sums(logits, ys).items():
                    mode[k] = mode.get(k, 0.0) + v.double().cpu()
        count = self.task.predictions(split.y.unsqueeze(0))
        return [
            [self.task.metrics({k: v[s].item() for k, v in mode.items()}, count, name) for s in range(self.n_seeds)]
            for mode in sums
        ]

    def _eval_logits(self, x: torch.Tensor, modes: tuple) -> tuple[torch.Tensor, ...]:
        """Logits of a chunk every seed sees, once per dropout mode. A `PackedMLP`'s dropout off and on share
        the layers before its first dropout (the first layer's product): one pass runs them once."""
        if isinstance(self.model, PackedMLP) and len(modes) == 2 and modes[0] is None:
            return self.model.logits_dropout_off_and_on(x.unsqueeze(0).expand(self.n_seeds, *x.shape), modes[1])
        return tuple(self._forward(x, generators, train=False, shared=True) for generators in modes)

    def _evaluate(self, split: Split, metrics: list[dict[str, float] | None], train_mode: bool) -> None:
        values, *extra = self._packed_eval(split, (None, self.dropouts) if train_mode else (None,))
        for s, m in enumerate(metrics):
            if m is not None:
                m |= values[s]
                if extra:
                    m |= _train_mode_metrics(self.task, extra[0][s])

    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "orders": [g.get_state() for g in self.orders],
            "dropouts": [g.get_state() for g in self.dropouts],
            "step": self.step,
            "results": [r.to_dict() for r in self.results],
        }
        if self.vmapped:
            state["rng"] = list(self.rng_state)
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.vmapped != ("rng" in state):
            raise ValueError("resume: a snapshot of another kind of packed run (hand-written MLP or vmapped)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # snapshots from before schedules: constant, nothing to restore
            self.scheduler.load_state_dict(state["scheduler"])
        for g, saved in zip(self.orders + self.dropouts, state["orders"] + state["dropouts"], strict=True):
            g.set_state(saved)
        self.step = state["step"]
        self.results = [SeedResult.from_dict(d) for d in state["results"]]
        if self.vmapped:
            self.rng_state = list(state["rng"])

    def finish(self, data: Data) -> None:
        with self._trial_rng(keep=False):
            (values,) = self._packed_eval(data.test, name="test")
        for s, r in enumerate(self.results):
            penalties = {m: self.task.penalty(m) for m in self.task.info.test_metrics}
            r.test = penalties if r.diverged else _test_metrics(self.task, values[s])


def _get_rng(cuda: list[torch.device]) -> list[torch.Tensor]:
    return [torch.get_rng_state()] + [torch.cuda.get_rng_state(d) for d in cuda]


def _set_rng(cuda: list[torch.device], states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    for d, s in zip(cuda, states[1:], strict=True):
        torch.cuda.set_rng_state(s, d)


PROBE_BATCH = 4
"""Train images of the forwards and backwards that decide, at set-up, whether and how a model packs."""

Pack = bool | Literal["vmap"] | None
"""`run_trial`'s `pack`: None the fastest way, True pack even where it is slower, "vmap" pack with vmap
(MLPs too), False one seed at a time."""


def _note(message: str, on_note) -> None:
    if on_note is not None:
        on_note(message)


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def _has_attention(model: nn.Module) -> bool:
    return any(isinstance(m, Attention | nn.MultiheadAttention) for m in model.modules())


def _runs(trial: TrialConfig, data: Data, device: torch.device, pack: Pack, on_note) -> list:
    """The trial's runs: one packed run of all its seeds, or (`pack=False`, or no packing that pays) one
    `_SeedRun` per seed. MLPs pack as the hand-written `PackedMLP`; conv nets as a `FoldedModel` (the seeds
    side by side in the channel dimension) when it gives each seed its own model's output, other models
    (and conv nets that do not fold, except on the CPU) as a `VmappedModel`. On the CPU a conv net that
    does not fold, and a transformer, train one seed at a time: vmapped they ran slower (bench (G), (I)).
    A model vmap cannot run trains one seed at a time. Each decision depends on the model and the device
    alone, so the same config and seeds give the same metrics."""

    def one_at_a_time(why: str | None = None) -> list:
        if why is not None:
            name = getattr(trial.model, "target", None) or trial.model.name  # your model: its import path
            note = f"initsweep: {name} {why}; training its seeds one at a time"
            warnings.warn(note, PackingFallbackWarning, stacklevel=4)
            _note(note, on_note)
        return [_SeedRun(trial, data, seed, device) for seed in trial.seeds]

    if pack is False:
        return one_at_a_time()
    built = [_initialized_model(trial, data, seed) for seed in trial.seeds]
    models = [model for model, _, _ in built]
    probe_x, probe_y = data.train.x[:PROBE_BATCH], data.train.y[:PROBE_BATCH]
    model: PackedMLP | VmappedModel
    if packable(models[0]) and pack != "vmap":
        model = PackedMLP(models).to(device)
    elif pack is None and device.type == "cpu" and _has_attention(models[0]):
        return one_at_a_time("has attention, and vmapped it trains slower on the CPU (bench (I))")
    else:
        model = VmappedModel(models, device)
        reason = vmap_failure(model, probe_x, probe_y, TASKS[trial.task])  # also refuses data-dependent control flow
        if reason is not None:
            return one_at_a_time(f"does not vmap ({reason[:200]})")
        if pack != "vmap" and _has_conv(models[0]):  # an MLP runs faster vmapped than folded (0.82x vs 0.75x)
            try:
                folded = FoldedModel(models, device)
                reason = fold_failure(folded, probe_x)
            except ValueError as e:
                reason = str(e)
            if reason is None:
                model = folded
            elif pack is None and device.type == "cpu":
                why = f"does not fold ({reason[:200]}), and vmapped its convolutions run slower on the CPU"
                return one_at_a_time(why)
    run = _PackedRun(trial, trial.seeds, device, model, data, built[0][1])
    run.results = [result for _, _, result in built]
    return [run]


class PackingFallbackWarning(UserWarning):
    """A model whose seeds cannot train packed, or not faster: they train one at a time (same results)."""


def run_trial(
    trial: TrialConfig,
    data: Data,
    *,
    device: torch.device | str = "cpu",
    on_epoch: EpochCallback | None = None,
    pack: Pack = None,
    resume: dict | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TrialResult:
    """Train `trial`'s scheme on each of its seeds; per-epoch metrics for every seed.

    The seeds train packed into one model: MLPs as the hand-written `PackedMLP`, other models folded into
    one wide model (`initsweep.engine.folded`) or vmapped (`initsweep.engine.vmapped`); see `_runs`.
    `pack=True` packs even a conv net that does not fold, or a transformer, on the CPU (slower there),
    `pack="vmap"` packs with vmap, `pack=False` trains every model's seeds one after another (for
    comparison). A model that does not pack trains its seeds one at a time, and says so in one line, as a
    `PackingFallbackWarning` and to `on_note` when given (for a caller to print). The same config and
    seeds give the same metrics on the CPU. `resume` is a snapshot from `on_epoch`: training
    goes on after its epoch (a snapshot of the last epoch trains nothing).
    """
    start = time.perf_counter()
    device = torch.device(device)
    data = data.to(device)
    runs = _runs(trial, data, device, pack, on_note)
    done = 0
    if resume is not None:
        if len(resume["runs"]) != len(runs):
            raise ValueError(f"resume: a snapshot of {len(resume['runs'])} runs, this trial has {len(runs)}")
        for run, state in zip(runs, resume["runs"], strict=True):
            run.load_state_dict(state)
        done = resume["epoch"]

    def snapshot(epoch: int) -> dict:  # a copy: training goes on with the live tensors
        return copy.deepcopy({"epoch": epoch, "runs": [run.state_dict() for run in runs]})

    for epoch in range(done + 1, trial.train.epochs + 1):
        for run in runs:
            run_start = time.perf_counter()
            run.train_epoch(data)
            if epoch == trial.train.epochs:
                run.finish(data)
            for r in run.results:  # a packed run's time is shared by its seeds
                r.seconds += (time.perf_counter() - run_start) / len(run.results)
        if on_epoch is not None:
            on_epoch(epoch, [r for run in runs for r in run.results], lambda epoch=epoch: snapshot(epoch))
    return TrialResult(trial, [r for run in runs for r in run.results], time.perf_counter() - start)
