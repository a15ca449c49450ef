"""The benchmark's own instruments (its timings are measured by running it, never asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from torch.utils.flop_counter import FlopCounterMode

from initsweep.catalog.models import MLPConfig
from initsweep.engine.models import build_model

sys.path.insert(0, str(ROOT / "bench"))
from bench import PeakRSS, flops_per_model


def test_flops_per_model_matches_torchs_flop_counter():
    model = build_model(MLPConfig(), (1, 28, 28), 10)
    x, y = torch.rand(100, 1, 28, 28), torch.randint(0, 10, (100,))
    with FlopCounterMode(display=False) as train_step:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    with FlopCounterMode(display=False) as eval_step, torch.no_grad():
        model(x)
    per_train, per_eval = train_step.get_total_flops() / 100, eval_step.get_total_flops() / 100
    expected = 2 * (48_000 * per_train + 12_000 * per_eval) + 10_000 * per_eval
    assert flops_per_model(2) == pytest.approx(expected, rel=0.01)  # biases and activations aside


def test_peak_memory_counts_child_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(300 * 2**20); time.sleep(2)"])
    with PeakRSS(child.pid, interval=0.05) as peak:
        child.wait()
    assert 300 * 2**20 <= peak.peak <= 400 * 2**20


def test_the_peers_train_the_seed_tables_models():
    """(J)'s hand-wired peers train what the default sweep trains: its rows, its seeds, its epochs; and each
    peer init draws the seed table's distribution (the fan-in rows' bound 1/sqrt(784) on the first layer)."""
    from peers import EPOCHS, INITS, SEEDS, seed_table_mlp

    from initsweep.config import load_config

    sweep = load_config(ROOT / "sweeps" / "seed_table.yaml")
    assert list(INITS) == [row.name for row in sweep.schemes]
    assert list(SEEDS) == sweep.seeds and sweep.train.epochs == EPOCHS
    first = seed_table_mlp("uniform [-y, y), y=1/sqrt(n)", 0)[1]
    assert first.weight.abs().max() <= 1 / 784**0.5 and torch.all(first.bias == 0)
    assert torch.all(seed_table_mlp("all ones", 0)[4].weight == 1)


def test_the_packed_steps_flop_bound_matches_torchs_flop_counter():
    """(K)'s bound: a packed train step's FLOPs, the images' own gradient left out as the engine leaves it."""
    from peers import seed_table_mlp
    from step import step_flops

    from initsweep.engine.packed import PackedMLP

    model = PackedMLP([seed_table_mlp("PyTorch default", s) for s in range(3)])
    x, y = torch.rand(3, 100, 784), torch.randint(0, 10, (3, 100))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    assert step_flops(3) == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_the_overhead_rows_read_the_sweeps_marks_and_final_line(tmp_path):
    from overhead import final_line, phases, read_marks, tiny_overrides

    from initsweep.config import load_config

    marks = tmp_path / "t.jsonl"
    marks.write_text(
        '{"phase": "ray_started", "t": 105.0}\n{"phase": "record_trial", "t": 107.0, "s": 0.25}\n'
        '{"phase": "fit_returned", "t": 110.5}\n{"phase": "record_trial", "t": 108.0, "s": 0.5}\n'
    )
    assert phases(read_marks(marks), started=100.0, ended=111.0) == [
        ("ray_started", 5.0),
        ("fit_returned", 5.5),
        ("  record_trial (2 calls within)", 0.75),
        ("exit", 0.5),
    ]
    assert read_marks(tmp_path / "none.jsonl") == []
    line = "3/3 trials done (0 failed) in 12.5 s; slots busy 87% of the 9.1 s the trials ran (2 slots); Tune state: x"
    assert final_line(line) == {"failed": 0, "seconds": 12.5, "busy": 0.87, "fit_s": 9.1, "slots": 2}
    with pytest.raises(RuntimeError, match="no final line"):
        final_line("error: something")
    tiny = load_config(ROOT / "sweeps" / "smoke.yaml", tiny_overrides(200))
    assert tiny.n_trials == 200 and tiny.seeds == [0] and len({t.train.lr for t in tiny.trials()}) == 200
