"""`python sweeps/run.py` end to end, as a user runs it (real subprocess, real data)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from origin import FILE_ENV

ROOT = Path(__file__).parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "run.py"), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_smoke_sweep_prints_the_result_table(tmp_path):
    proc = run("sweeps/smoke.yaml", "--no-ray", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sweep 'smoke': 3 trials x 2 seeds" in out
    for name in ("constant(value=0)", "uniform_fan_in(c=1)", "pytorch_default"):
        assert f"] {name}: val_accuracy" in out  # one progress line per trial
    table = out[out.index("scheme ") :]
    assert table.index("uniform_fan_in") < table.index("constant(value=0)")  # best first
    assert "3 trials, 6 trained models in" in out
    report = tmp_path / "smoke-no-ray"
    assert f"report: {report / 'report.md'}" in out
    pngs = {"val_accuracy.png", "loss_curves.png", "signal_propagation.png", "phase_diagram.png"}  # MLPs: theory
    assert {p.name for p in report.rglob("*.png")} == pngs


def test_overrides_reach_the_trials(tmp_path):
    proc = run(
        "sweeps/smoke.yaml", "--no-ray", "--report-dir", str(tmp_path), "--set", "seeds=[5]", "--set", "schemes.1.c=0.5"
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 trials x 1 seeds" in proc.stdout and "uniform_fan_in(c=0.5)" in proc.stdout


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from conftest import cli_main

    monkeypatch.chdir(tmp_path)
    main = cli_main()
    assert main([str(ROOT / "sweeps" / "seed_table.yaml"), "--dry-run", "--set", "resources.max_concurrent=2"]) == 0
    grid = capsys.readouterr().out
    assert "sweep 'seed_table' (grid): 9 trials x 5 seeds [0, 1, 2, 3, 4] = 45 trained models" in grid
    assert "each: mlp [256, 128] relu, dropout 0.2 on fashion_mnist (48,000 train / 12,000 validation images)" in grid
    assert "1 CPU and 0 GPU per trial, at most 2 at once" in grid
    assert "8  xavier_uniform (ReLU gain)    xavier_uniform   gain=1.41421" in grid  # the resolved gain
    assert "9  kaiming_uniform (ReLU)        kaiming_uniform  a=0, mode=fan_in, nonlinearity=relu" in grid

    assert main([str(ROOT / "sweeps" / "depth_study.yaml"), "--dry-run"]) == 0
    study = capsys.readouterr().out
    assert (
        "sweep 'depth_study' (grid): 120 trials (90 candidates x 2 tuning seeds, then 30 x 3 evaluation seeds) = "
        "270 trained models" in study
    )
    assert "5 scheme rows x 6 grid combinations: model.depth in [4, 16, 32]; model.activation in [relu, tanh]" in study
    assert "stage 1 (tune): each of the 30 rows x combinations tries every combination of train.lr in " in study
    assert "stage 2 (eval): each row at its own chosen values on the evaluation seeds [0, 1, 2]" in study
    assert re.search(
        r"\n28 +kaiming_normal\(auto\) depth=32 activation=tanh +kaiming_normal +a=0, mode=fan_in, nonlinearity=tanh",
        study,
    )
    assert re.search(r"\n29 +orthogonal\(gain=auto\) depth=32 activation=tanh +orthogonal +gain=1.66667\n", study)

    assert main([str(ROOT / "sweeps" / "search_bounds.yaml"), "--dry-run", "--set", "search.n_trials=7"]) == 0
    search = capsys.readouterr().out
    assert "(search): 7 trials x 3 seeds" in search and "Optuna (tpe, seed 0) draws 7 trials from:" in search
    assert "  uniform_fan_in: c in [0.1, 10] (log scale)" in search

    assert (
        main([str(ROOT / "sweeps" / "smoke.yaml"), "--dry-run", "--set", "model.depth=16", "--set", "model.dropout=0"])
        == 0
    )
    assert "each: mlp 16 x 256 relu, dropout 0 on" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no MLflow store, no Tune folder, no report


def test_help_lists_every_flag_with_examples(capsys):
    from conftest import cli_main

    with pytest.raises(SystemExit) as done:
        cli_main()(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    flags = ("--set", "--tracking-uri", "--address", "--storage-path", "--listen", "--fresh", "--no-ray", "--dry-run")
    assert all(flag in text for flag in flags)
    assert "examples:" in text and "initsweep run sweeps/search_bounds.yaml --dry-run" in text


@pytest.mark.slow
def test_the_trials_run_the_checkout_whose_script_started_the_sweep(tmp_path):
    """`python sweeps/run.py` of a second checkout (a clone, a git worktree) trains with that checkout's code,
    though `pip install -e` named another one: Ray's workers would otherwise import the installed one."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "initsweep", clone / "initsweep", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "sweeps").mkdir()
    shutil.copy(ROOT / "sweeps" / "run.py", clone / "sweeps" / "run.py")
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nseeds: [0]\ndata: {dataset: fashion_mnist, limit: 500}\ntrain: {epochs: 1}\n"
        "schemes:\n  - {scheme: pytorch_default}\n"
    )
    origins = tmp_path / "origins.txt"
    hook = {"INITSWEEP_TRIAL_HOOK": "origin:record", FILE_ENV: str(origins), "PYTHONPATH": str(ROOT / "tests")}
    proc = run_cli(
        "tiny.yaml", "--storage-path", "ray", cwd=tmp_path, timeout=300, env=hook, script=clone / "sweeps" / "run.py"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1/1 trials done (0 failed)" in proc.stdout, proc.stdout[-3000:]
    assert set(origins.read_text().split()) == {str(clone / "initsweep" / "__init__.py")}
