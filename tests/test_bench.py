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


def test_the_floors_bare_adam_is_torchs_fused_adam_bit_for_bit():
    """(K)'s and (J)'s floor times torch's fused Adam kernel without the Optimizer's Python: the same step."""
    from step import BareAdam

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(3, 7, 5)), torch.nn.Parameter(torch.randn(3, 1, 5))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    bare, adam = BareAdam(ours), torch.optim.Adam(theirs, lr=1e-3, fused=True)
    for _ in range(4):
        for p, q in zip(ours, theirs, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        bare.step()
        adam.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))
    assert not any(torch.equal(p, q) for p, q in zip(ours, start, strict=True))  # and both took steps


def test_the_sweep_floor_is_models_times_steps_at_the_better_arrangement():
    """(J)'s lower bound: the floor per model-step, the better of 5 seeds on each of 2 cores and 8 on both."""
    from step import sweep_floor

    threads = torch.get_num_threads()
    f = sweep_floor(models=45, steps=960, cores=2, steps_timed=2, repeats=1)
    per_model_step = min(f["floor_ms_1_thread_5_seeds"] / 10, f["floor_ms_all_threads_8_seeds"] / 8)
    assert f["per_model_step_ms"] == pytest.approx(per_model_step)
    assert f["bound_s"] == pytest.approx(45 * 960 * per_model_step / 1e3)
    assert torch.get_num_threads() == threads  # as it found them


def test_a_ratio_target_is_out_of_reach_only_where_the_floor_is_longer_than_it_allows():
    from peers import target_lines

    run = {"peer_preloaded_s": 400.0, "peer_dataloader_s": 1000.0, "floor": {"bound_s": 99.0}}
    room = "not out of reach: the floor leaves 1.0 s for validation, start and end"
    assert target_lines(run) == [
        f"  4x the preloaded peer is 100.0 s; {room}",
        f"  10x the DataLoader peer is 100.0 s; {room}",
    ]
    run["floor"]["bound_s"] = 100.5
    assert all(line.endswith("out of reach on this machine: the floor alone is longer") for line in target_lines(run))
