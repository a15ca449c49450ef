"""A sweep's memory: the dataset reaches Ray's workers through the object store without a copy per worker,
and training only reads it, so one read-only copy serves every trial."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, TORCH_THREADS

from initsweep.sweep.trainable import SharedData


def test_shared_data_is_the_same_data_over_the_same_memory(small_data):
    shared = SharedData.of(small_data)
    data = shared.as_data()
    assert data.num_classes == small_data.num_classes and data.input_shape == small_data.input_shape
    for before, after, array in zip(small_data.tensors(), data.tensors(), shared.arrays, strict=True):
        assert before.dtype == after.dtype and before.shape == after.shape and torch.equal(before, after)
        assert after.data_ptr() == array.ctypes.data == before.data_ptr()  # no copy either way


def _run(script: str) -> subprocess.CompletedProcess:
    """A fresh interpreter: Ray is kept out of this one (the CLI checks refuse an imported Ray), and a write
    into read-only memory kills only that process. `THREADS` in it: this test process's share of the cores."""
    code = f"THREADS = {TORCH_THREADS}\n" + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_workers_map_the_object_stores_copy_read_only():
    proc = _run(
        """
        import ray, torch
        from initsweep.engine.data import load_data
        from initsweep.sweep.trainable import StoredData

        ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        data = load_data("fashion_mnist", limit=2000)
        sums = [t.double().sum().item() for t in data.tensors()]
        stored = StoredData.put(data)
        del data  # what sweeps/run.py does: the store's copy is the only one

        @ray.remote
        def check(stored):
            got = stored.as_data()
            arrays = ray.get(stored.ref).arrays
            zero_copy = all(t.data_ptr() == a.ctypes.data for t, a in zip(got.tensors(), arrays))
            read_only = not any(a.flags.writeable for a in arrays)
            return zero_copy, read_only, [t.double().sum().item() for t in got.tensors()]

        zero_copy, read_only, got = ray.get(check.remote(stored))
        assert zero_copy and read_only, (zero_copy, read_only)
        assert got == sums
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.slow
def test_training_only_reads_the_data_and_gives_the_same_numbers_on_it():
    """Every model family and path (packed MLP, folded and vmapped CNN, one seed at a time, validation with
    dropout on)
    trains on data in memory mapped read-only, a write would kill the process, and the metrics are the
    ones the same trial gives on ordinary tensors."""
    proc = _run(
        """
        import tempfile
        from pathlib import Path
        import numpy as np, torch
        from initsweep.config import TrialConfig
        from initsweep.engine.data import load_data
        from initsweep.engine.train import run_trial
        from initsweep.sweep.trainable import SharedData

        torch.set_num_threads(THREADS)
        data = load_data("fashion_mnist", limit=1000)
        with tempfile.TemporaryDirectory() as folder:
            mapped = []
            for i, array in enumerate(SharedData.of(data).arrays):
                np.save(Path(folder) / f"{i}.npy", array)
                mapped.append(np.load(Path(folder) / f"{i}.npy", mmap_mode="r"))  # PROT_READ: a write faults
            read_only = SharedData(tuple(mapped), data.num_classes).as_data()
            trials = [
                ({"seeds": [0, 1], "row": "kaiming_normal", "train": {"epochs": 2, "val_train_mode": True}}, {}),
                *(
                    ({"seeds": [0, 1], "row": "xavier_uniform", "model": {"name": "cnn"}, "train": {"epochs": 1}}, kw)
                    for kw in ({}, {"pack": "vmap"})  # folded (a conv net's default), vmapped
                ),
                ({"seeds": [3], "row": "pytorch_default", "train": {"epochs": 1}}, {"pack": False}),
            ]
            for config, kwargs in trials:
                trial = TrialConfig.model_validate(config)
                ours = run_trial(trial, read_only, **kwargs)
                theirs = run_trial(trial, data, **kwargs)
                assert [s.to_dict() | {"seconds": 0} for s in ours.seeds] == [
                    s.to_dict() | {"seconds": 0} for s in theirs.seeds
                ], config
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
