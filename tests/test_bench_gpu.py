"""bench/gpu.py, the CUDA benchmark: its one line on a machine without CUDA, and its pure parts (its timings
are measured by running it on a GPU, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from initsweep.config import load_config

sys.path.insert(0, str(ROOT / "bench"))
from gpu import (
    GPUS_PER_TRIAL,
    SWEEP_ROWS,
    gpu_sweep_command,
    no_cuda_line,
    pack_rows,
    pack_table,
    sweep_overrides,
    sweep_problems,
    tracking_uri,
    tune_devices,
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script measures for minutes instead")
def test_without_cuda_it_prints_one_line_and_exits_0(tmp_path):
    out = tmp_path / "gpu_results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == no_cuda_line(torch.__version__, torch.version.cuda) + "\n"  # that line, nothing else
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing measured, nothing written


def test_the_no_cuda_line_names_torch_and_its_cuda_build():
    assert no_cuda_line("2.14.1+cu130", "13.0") == (
        "bench/gpu.py: no CUDA device here (torch 2.14.1+cu130, built for CUDA 13.0); nothing measured"
    )
    assert no_cuda_line("2.5.1+cpu", None) == (
        "bench/gpu.py: no CUDA device here (torch 2.5.1+cpu, a build without CUDA); nothing measured"
    )


def test_the_sweep_is_four_seed_table_trials_sharing_one_gpu(tmp_path):
    """The overrides cut sweeps/seed_table.yaml to 4 of its rows (its baseline among them) on its 5 seeds, 1
    epoch, 0.25 GPU a trial; sweeps/run.py takes the command as built (its dry run, which writes nothing)."""
    overrides = sweep_overrides()
    sweep = load_config(ROOT / "sweeps" / "seed_table.yaml", overrides)
    assert [row.name for row in sweep.schemes] == list(SWEEP_ROWS)
    assert sweep.report.baseline in SWEEP_ROWS
    assert sweep.n_trials == 4 and sweep.seeds == [0, 1, 2, 3, 4] and sweep.train.epochs == 1
    assert sweep.resources.gpus_per_trial == GPUS_PER_TRIAL == 0.25
    table = load_config(ROOT / "sweeps" / "seed_table.yaml")
    assert sweep.model == table.model and sweep.data == table.data and sweep.train.lr == table.train.lr

    cmd = gpu_sweep_command(tmp_path, overrides)
    assert cmd[cmd.index("--tracking-uri") + 1] == tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run([*cmd, "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sweep 'seed_table' (grid): 4 trials x 5 seeds" in proc.stdout
    assert "1 CPU and 0.25 GPU per trial" in proc.stdout
    assert all(label in proc.stdout for label in SWEEP_ROWS)
    assert list(tmp_path.iterdir()) == []


def test_pack_rows_and_table():
    """README's CPU figures (2 epochs): 1 seed in 2.80 s, 16 packed in 25.07 s, the bound 0.706 s a model."""
    rows = pack_rows({16: 25.07, 1: 2.80}, bound_s=0.706)
    assert [r["seeds"] for r in rows] == [1, 16]
    one, sixteen = rows
    assert one["models_per_min"] == pytest.approx(21.4, abs=0.05) and one["x_one_seed"] == 1
    assert sixteen["models_per_min"] == pytest.approx(38.3, abs=0.05)
    assert sixteen["x_one_seed"] == pytest.approx(1.79, abs=0.005)
    assert one["of_flop_bound"] == pytest.approx(0.25, abs=0.005)
    assert sixteen["of_flop_bound"] == pytest.approx(0.45, abs=0.005)

    lines = pack_table(rows)
    assert lines[0].split() == ["seeds", "packed", "seconds", "models/min", "x", "1", "seed", "of", "FLOP", "bound"]
    assert lines[2].split() == ["16", "25.07", "38.3", "1.79", "45.1%"]
    for r, extra in zip(
        rows, ({"peak_gpu_gb": 0.31, "val_accuracy": 82.4}, {"peak_gpu_gb": 1.5, "val_accuracy": 82.1}), strict=True
    ):
        r |= extra
    lines = pack_table(rows)
    assert lines[0].split()[-5:] == ["peak", "GPU", "GB", "val", "acc", "%"][-5:]
    assert lines[1].split() == ["1", "2.80", "21.4", "1.00", "25.2%", "0.31", "82.4"]
    assert len({len(line) for line in lines}) == 1  # the columns line up


def _trial_folder(storage, name, devices, half_line=False):
    """A Tune trial folder as the sweep leaves it: result.json, one line per epoch the trial reported (the keys
    `train_trial` adds to its metrics, and Tune's own)."""
    folder = storage / "seed_table-0123abcd" / name
    folder.mkdir(parents=True)
    rows = [
        {"objective": 80.0 + epoch, "epoch": epoch, "node_id": "ab12", "device": device, "restored_epoch": 0}
        | {"note": "", "trial_id": name[12:23], "training_iteration": epoch, "time_total_s": 2.5 * epoch}
        for epoch, device in enumerate(devices, 1)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "result.json").write_text(text + ('{"objective": 81.0, "epo' if half_line else ""))


def test_tune_devices_and_the_sweeps_checks(tmp_path):
    storage = tmp_path / "ray"
    _trial_folder(storage, "train_trial_5d206_00000_0_cell=a", ["cuda"])
    _trial_folder(storage, "train_trial_5d206_00001_1_cell=b", ["cuda", "cuda"], half_line=True)
    (storage / "seed_table-0123abcd" / "tuner.pkl").write_bytes(b"")
    devices = tune_devices(storage)
    assert devices == {"train_trial_5d206_00000_0_cell=a": ["cuda"], "train_trial_5d206_00001_1_cell=b": ["cuda"] * 2}
    assert sweep_problems(2, 5, [5, 5], 0, devices) == []

    _trial_folder(storage, "train_trial_5d206_00002_2_cell=c", ["cpu"])
    devices = tune_devices(storage)
    assert sweep_problems(3, 5, [5, 5, 3], 1, devices) == [
        "MLflow's trials hold [5, 5, 3] seeds, not 5 each",
        "1 trials failed",
        "not trained on cuda: train_trial_5d206_00002_2_cell=c: ['cpu']",
    ]
    assert sweep_problems(4, 5, [5, 5, 5], 0, devices)[:2] == [
        "MLflow holds 3 finished trials, not 4",
        "Tune's results name 3 trials, not 4",
    ]
    assert tune_devices(tmp_path / "nothing") == {}
