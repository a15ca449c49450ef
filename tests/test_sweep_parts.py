"""The sweep's driver and worker pieces on their own: the checkpoint lookup, the progress line, the callbacks
after a restore, the Tune folder's whole-file writes, and the fast front door (no torch or Ray for --help
and config errors)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT
from hypothesis import given
from hypothesis import strategies as st
from ray.tune.experiment import Trial

from initsweep.config import parse_config
from initsweep.results import SeedResult, seeds_to_json
from initsweep.sweep.callbacks import Live, Progress, attach, last_of, progress_line, result_of
from initsweep.sweep.callbacks import cells as cells_of
from initsweep.sweep.space import cell_params, grid_cells, shard_tail, trial_from_params
from initsweep.sweep.storage import PARTIAL, STALE_AFTER_S, remove_stale_partials, whole_filesystem
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


KILLED_WRITER = """
import sys, pyarrow.fs
from initsweep.sweep.storage import whole_filesystem
fs = whole_filesystem() if sys.argv[2] == "whole" else pyarrow.fs.LocalFileSystem()
out = fs.open_output_stream(sys.argv[1])
out.write(b"new state, its first half;")
out.flush()
print("mid-write", flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.parametrize("filesystem", ["local", "whole"])
def test_a_process_killed_mid_write_leaves_the_last_whole_file_only_through_our_filesystem(tmp_path, filesystem):
    """Tune writes its state through `RunConfig.storage_filesystem`: through pyarrow's local filesystem a
    driver killed mid-write left `tuner.pkl` cut short (the resume then failed); through ours it leaves
    the last whole version, and the next write replaces it whole."""
    state = tmp_path / "tuner.pkl"
    state.write_bytes(b"old state")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(state), filesystem],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert writer.stdout.readline() == b"mid-write\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    if filesystem == "local":  # the failure this guards against, reproduced
        assert state.read_bytes() == b"new state, its first half;"
        return
    assert state.read_bytes() == b"old state"
    [left] = tmp_path.glob(f"*{PARTIAL}*")  # the cut-short copy, under a name nothing reads
    with whole_filesystem().open_output_stream(str(state)) as out:
        out.write(b"new state")
        # A resume removes partial files unchanged for a minute (a dead writer's), not fresher ones (a live
        # writer's, like this one's, or one a writer left seconds ago).
        assert remove_stale_partials(tmp_path) == 0 and left.exists()
        old = time.time() - STALE_AFTER_S - 1
        os.utime(left, (old, old))
        assert remove_stale_partials(tmp_path) == 1 and not left.exists()
        assert len(list(tmp_path.glob(f"*{PARTIAL}*"))) == 1  # the live writer's, still being written
    assert state.read_bytes() == b"new state"
    assert [p.name for p in tmp_path.iterdir()] == [state.name]


FULL_DISK_WRITER = """
import resource, signal, sys
from initsweep.sweep.storage import whole_filesystem, write_whole
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # (after taking the first 4096 bytes: a raw write
try:                                                     # may write part of what it is given)
    with whole_filesystem().open_output_stream(sys.argv[1]) as out:  # Tune's way
        out.write(b"new state " * 1000)
except OSError as err:
    print(type(err).__name__)
try:
    write_whole(sys.argv[1], b"new state " * 1000)  # ours
except OSError as err:
    print(type(err).__name__)
"""


def test_a_write_that_fails_leaves_the_last_whole_file_and_no_partial_copy(tmp_path):
    state = tmp_path / "experiment_state-1.json"
    state.write_bytes(b"old state")
    writer = subprocess.run(
        [sys.executable, "-c", FULL_DISK_WRITER, str(state)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert writer.stdout.split() == ["OSError", "OSError"], writer.stderr[-2000:]
    assert state.read_bytes() == b"old state"
    assert [p.name for p in tmp_path.iterdir()] == [state.name]


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


def test_the_last_round_is_split_into_seed_shards_that_fill_every_slot():
    cells = [{"row": {"scheme": f"s{i}"}, "axes": {}} for i in range(9)]
    seeds = [10, 11, 12, 13, 14]
    split = shard_tail(cells, seeds, slots=2)
    assert split[:8] == cells[:8]  # the full rounds are untouched
    assert [(c["index"], c["shard"], c["seeds"]) for c in split[8:]] == [
        (8, [0, 2], [10, 11, 12]),
        (8, [1, 2], [13, 14]),
    ]
    assert all(c["row"] == cells[8]["row"] for c in split[8:])
    assert shard_tail(cells[:8], seeds, 2) == cells[:8]  # no partial round
    assert shard_tail(cells, [0], 2) == cells  # one seed: nothing to split
    assert shard_tail(cells, seeds, 1) == cells
    # the last round never holds more shards than slots: 3 cells on 7 slots in 2 shards each, on 5 not at all
    assert [len(c["seeds"]) for c in shard_tail(cells[:3], seeds, 7)] == [3, 2, 3, 2, 3, 2]
    assert shard_tail(cells[:3], seeds, 5) == cells[:3]
    assert [len(c["seeds"]) for c in shard_tail(cells[:1], seeds, 16)] == [1] * 5  # at most a seed a shard


@given(st.integers(1, 12), st.integers(1, 7), st.integers(1, 16))
def test_shards_partition_each_cells_seeds_in_order(n_cells, n_seeds, slots):
    cells = [{"row": {"scheme": f"s{i}"}, "axes": {}} for i in range(n_cells)]
    seeds = list(range(100, 100 + n_seeds))
    split = shard_tail(cells, seeds, slots)
    for index, cell in enumerate(cells):
        parts = [c for c in split if c.get("index") == index] or [c for c in split if c is cell]
        assert [s for c in parts for s in c.get("seeds", seeds)] == seeds
        assert all(cell_params({"cell": c}) == {"cell": cell} for c in parts)
    # the split never leaves fewer trials in the last round than there were cells in it, nor more than slots
    tail = n_cells % slots if slots > 1 else 0
    assert len(split) >= n_cells and len(split) - (n_cells - tail) <= max(tail, slots)


def test_a_split_cells_shards_are_printed_and_recorded_as_one_trial_of_all_its_seeds():
    schemes = ["orthogonal", "xavier_normal", "pytorch_default"]
    sweep = parse_config({"name": "p", "seeds": [0, 1, 2], "schemes": schemes, "train": {"epochs": 1}})
    cells = shard_tail(grid_cells(sweep), sweep.seeds, slots=2)
    assert [c.get("seeds") for c in cells] == [None, None, [0, 1], [2]]
    assert trial_from_params(sweep, {"cell": cells[3]}).seeds == [2]  # what the shard's worker trains
    trials = [Trial("train_trial", config={"cell": c}, trial_id=f"t{i}", stub=True) for i, c in enumerate(cells)]
    for t, c in zip(trials, cells, strict=True):
        seeds = [
            SeedResult(s, epochs=[{"val_accuracy": 80.0 + s, "val_loss": 0.5}], test={"test_accuracy": 70.0 + s})
            for s in c.get("seeds", sweep.seeds)
        ]
        note = "slow" if c.get("shard") == [1, 2] else ""
        t.update_last_result({"seed_results": seeds_to_json(seeds), "epoch": 1, "objective": 0.0, "note": note})
    assert [[t.trial_id for t in g] for g in cells_of(trials)] == [["t0"], ["t1"], ["t2", "t3"]]

    lines: list[str] = []
    attach("split", Live(sweep, None, lambda line, **_: lines.append(line)))
    progress = Progress("split")
    progress.setup()
    for t in trials[:3]:
        progress.on_trial_complete(0, trials, t)
        t.status = Trial.TERMINATED
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3"]  # the first shard prints nothing
    progress.on_trial_complete(0, trials, trials[3])
    assert lines[-1].startswith("[3/3] pytorch_default: val_accuracy 81 ± 1 [slow]  (trial t2)")  # over all 3 seeds

    merged = result_of(sweep, trials[2:])
    assert merged.config == sweep.trials()[2] and merged.trial_id == "t2"
    assert [s.seed for s in merged.seeds] == [0, 1, 2]
    assert merged.mean("test_accuracy") == 71.0
    assert last_of(sweep, trials[2:])["val_accuracy_std"] == 1.0
