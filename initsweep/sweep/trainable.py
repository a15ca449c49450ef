"""The worker side of a sweep: the Ray Tune trainable, a thin adapter around `run_trial`.

It only translates: the dataset as the object store holds it -> `Data` (`SharedData`), Tune config ->
`TrialConfig`, each epoch's seed results -> one `tune.report` (means and stds over seeds, the objective,
and the seeds' full history as JSON, so the driver can record a trial from its last result alone) with a
checkpoint of the whole training state. It imports the engine, the config and the result types, nothing of
MLflow, SciPy or matplotlib (import-linter checks), so worker processes stay small.

A seam for whoever needs to act inside a trial (the reliability tests inject faults through it):
`INITSWEEP_TRIAL_HOOK=module:function` in the workers' environment names a function called as
`hook(TrialEvent)` when an attempt starts and after each epoch's checkpoint; it may raise.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from initsweep.config import SweepConfig, TrialConfig
from initsweep.engine.data import Data, Split
from initsweep.engine.train import run_trial
from initsweep.results import SeedResult, epoch_report
from initsweep.sweep.space import trial_from_params

__all__ = [
    "CHECKPOINT_FILE",
    "HOOK_ENV",
    "SharedData",
    "StoredData",
    "TrialEvent",
    "latest_state",
    "train_trial",
]

CHECKPOINT_FILE = "training-state.pt"
HOOK_ENV = "INITSWEEP_TRIAL_HOOK"


@dataclass(frozen=True)
class TrialEvent:
    """What a trial hook is told: which trial, which point of the attempt."""

    trial: TrialConfig
    epoch: int | None
    """None when the attempt starts; else the epoch whose checkpoint was just reported."""
    resumed: bool
    """Whether this attempt started from a checkpoint (a retry or a resumed sweep)."""


@dataclass(frozen=True)
class SharedData:
    """A sweep's data as NumPy arrays, the form Ray's object store shares: stored once per node, each worker
    maps it read-only (zero-copy) instead of unpickling a private copy of torch tensors (219 MB for
    FashionMNIST, per worker). Training only reads the data (it indexes and slices it)."""

    arrays: tuple[np.ndarray, ...]
    """x and y of train, validation and test, in that order."""
    num_classes: int

    @classmethod
    def of(cls, data: Data) -> SharedData:
        return cls(tuple(np.ascontiguousarray(t.detach().cpu().numpy()) for t in data.tensors()), data.num_classes)

    def as_data(self) -> Data:
        """Tensors over the arrays' memory: no copy."""
        with warnings.catch_warnings():  # the object store's arrays are read-only, and nothing writes to them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x, y, vx, vy, tx, ty = (torch.from_numpy(a) for a in self.arrays)
        return Data(Split(x, y), Split(vx, vy), Split(tx, ty), self.num_classes)


@dataclass(frozen=True)
class StoredData:
    """`SharedData` in the object store, as a trial is handed it: a reference of a few bytes, resolved
    in the worker (each worker of a node maps the node's one copy)."""

    ref: ray.ObjectRef

    @classmethod
    def put(cls, data: Data) -> StoredData:
        """`data` into the object store, once (after `ray.init`)."""
        return cls(ray.put(SharedData.of(data)))

    def as_data(self) -> Data:
        return ray.get(self.ref).as_data()


def _hook():
    spec = os.environ.get(HOOK_ENV)
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def train_trial(config: dict[str, Any], *, sweep: SweepConfig, data: StoredData, exp_dir: str) -> None:
    """One trial config on all the sweep's seeds, one report per epoch.

    Every report carries a checkpoint of the whole training state, so a retried trial (a lost node, an
    error) or a resumed sweep goes on after the last epoch it reported instead of starting over.
    """
    started = time.perf_counter()
    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_trial)))
    trial = trial_from_params(sweep, config)
    device = "cuda" if sweep.resources.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
    node_id = ray.get_runtime_context().get_node_id()
    resume = latest_state(Path(exp_dir) / Path(tune.get_context().get_trial_dir()).name)
    restored_epoch = resume["epoch"] if resume else 0
    hook = _hook()
    if hook:
        hook(TrialEvent(trial, None, resume is not None))

    notes: list[str] = []  # e.g. "this model does not vmap: its seeds train one at a time"

    def report(epoch: int, seeds: list[SeedResult], snapshot) -> None:
        metrics = epoch_report(sweep.objective.metric, epoch, seeds) | {
            "node_id": node_id,
            "device": device,
            "restored_epoch": restored_epoch,  # epochs this attempt did not train (from a checkpoint)
            "note": "; ".join(notes),  # the driver prints it on the trial's progress line
            "busy_s": time.perf_counter() - started,  # this attempt's time in its slot, for `SlotUse`
        }
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        if hook:
            hook(TrialEvent(trial, epoch, resume is not None))

    if resume is not None and restored_epoch >= trial.train.epochs:  # finished, but the driver missed it
        seeds = [SeedResult.from_dict(d) for run in resume["runs"] for d in run["results"]]
        report(restored_epoch, seeds, lambda: resume)
        return
    run_trial(trial, data.as_data(), device=device, on_epoch=report, resume=resume, on_note=notes.append)


def latest_state(trial_folder: Path) -> dict | None:
    """The newest training state among a trial's checkpoints on storage, or None.

    Read from the folder rather than from `tune.get_checkpoint()`: Tune's record of a trial's latest
    checkpoint is saved by the driver a moment after the worker wrote it, so a killed driver can hand a
    resumed trial an older one, and the epochs after it would train twice.
    """
    newest = None
    for path in trial_folder.glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        try:
            state = torch.load(path, weights_only=True)
        except Exception:  # a checkpoint cut short by a killed process: use an older one
            continue
        if newest is None or state["epoch"] > newest["epoch"]:
            newest = state
    return newest
