"""The sweep's driver and worker pieces on their own: the checkpoint lookup, the progress line, the callbacks
after a restore, and the fast front door (no torch or Ray for --help and config errors)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import torch
from conftest import ROOT

from initsweep.config import parse_config
from initsweep.sweep.callbacks import Live, Progress, attach, progress_line
from initsweep.sweep.trainable import CHECKPOINT_FILE, latest_state

SMOKE = parse_config({"name": "p", "seeds": [0, 1], "schemes": ["orthogonal"], "train": {"epochs": 3}})


def test_the_newest_whole_checkpoint_is_the_one_resumed(tmp_path):
    assert latest_state(tmp_path) is None
    for epoch in (1, 2):
        (tmp_path / f"checkpoint_00000{epoch}").mkdir()
        torch.save({"epoch": epoch}, tmp_path / f"checkpoint_00000{epoch}" / CHECKPOINT_FILE)
    assert latest_state(tmp_path)["epoch"] == 2
    (tmp_path / "checkpoint_000003").mkdir()
    whole = (tmp_path / "checkpoint_000002" / CHECKPOINT_FILE).read_bytes()
    (tmp_path / "checkpoint_000003" / CHECKPOINT_FILE).write_bytes(whole[: len(whole) // 2])  # cut short
    assert latest_state(tmp_path)["epoch"] == 2


def test_the_progress_line_says_what_finished_and_how_far_the_sweep_is():
    last = {"objective": 85.123, "val_accuracy_std": 0.41, "epoch": 3, "diverged": 0, "restored_epoch": 0}
    line = progress_line(
        SMOKE, 1, "orthogonal", "abc_00000", last, failed=False, best_text="best -", elapsed=75, eta=3725
    )
    assert line == "[1/1] orthogonal: val_accuracy 85.12 ± 0.41  (trial abc_00000) | best - | 1:15 elapsed, ETA 1:02:05"
    early = last | {"epoch": 1, "diverged": 1}
    assert "(1 diverged), stopped early after epoch 1" in progress_line(
        SMOKE, 1, "o", "t", early, failed=False, best_text="", elapsed=0, eta=0
    )
    resumed = last | {"restored_epoch": 3}
    assert "(finished before the restart: nothing trained)" in progress_line(
        SMOKE, 1, "o", "t", resumed, failed=False, best_text="", elapsed=0, eta=0
    )
    noted = last | {"note": "model does not vmap: its seeds train one at a time"}
    assert "85.12 ± 0.41 [model does not vmap: its seeds train one at a time]  (trial t)" in progress_line(
        SMOKE, 1, "o", "t", noted, failed=False, best_text="", elapsed=0, eta=0
    )
    assert ": FAILED  (trial t)" in progress_line(SMOKE, 1, "o", "t", None, failed=True, best_text="", elapsed=0, eta=0)


def test_a_restored_callback_acts_through_the_resuming_runs_objects():
    """What `Tuner.restore` does to our callbacks: unpickles the first run's; they must use this run's."""
    printed: list[str] = []
    attach("sweep-x", Live(SMOKE, tracker=None, printer=lambda *a, **k: printed.append(a[0])))
    restored = pickle.loads(pickle.dumps(Progress("sweep-x")))
    assert restored.live.printer is not print and restored.done_at_start is None
    attach("sweep-x", Live(SMOKE, tracker=None, printer=print))  # a later run resumes it
    assert restored.live.printer is print


def _imported(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "sweeps" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    return proc, modules


def test_help_and_config_errors_load_neither_torch_nor_ray():
    proc, modules = _imported("--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout
    assert not {"torch", "ray", "mlflow", "optuna"} & modules
    proc, modules = _imported(str(ROOT / "sweeps" / "smoke.yaml"), "--set", "train.lr=-1", "--dry-run")
    assert proc.returncode == 2 and "train.lr: input should be greater than 0" in proc.stderr
    assert not {"torch", "ray", "mlflow", "optuna"} & modules
    proc, modules = _imported(str(ROOT / "sweeps" / "smoke.yaml"), "--dry-run")
    assert proc.returncode == 0 and not {"torch", "ray"} & modules


def test_loading_a_config_imports_numpy_only_to_resolve_critical_auto():
    """The import-linter contract lets config reach mean-field theory (NumPy) lazily; this checks that it
    stays lazy: the founding sweep loads without NumPy, a `critical` row at "auto" loads it."""
    code = (
        "import sys; from initsweep.config import load_config; "
        "s = load_config(sys.argv[1], sys.argv[2:]); s.trials(); print('numpy' in sys.modules)"
    )
    seed_table, smoke = str(ROOT / "sweeps" / "seed_table.yaml"), str(ROOT / "sweeps" / "smoke.yaml")
    run = lambda *a: subprocess.run([sys.executable, "-c", code, *a], capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run(seed_table).stdout.strip() == "False"
    critical = run(smoke, "schemes=[critical]", "model.activation=tanh")
    assert critical.stdout.strip() == "True", critical.stderr
