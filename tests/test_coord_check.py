"""The coord check (`sweeps/coord_check.py`): a real run on FashionMNIST through the CLI, whose CSV holds
every measurement and whose readout stays flat in width under muP and grows under sp; the transformer's
module groups by role; bad input as one line and exit code 2."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from initsweep.cli import main as initsweep_main
from initsweep.config import parse_config
from initsweep.engine.coordcheck import coord_check
from initsweep.engine.data import load_configured

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "sweeps" / "coord_check.py"
WIDTHS, STEPS, SEEDS = (64, 256, 1024), 3, (0, 1)
SMALL_RUN = [
    str(ROOT / "sweeps" / "coord_check.yaml"),
    "--set=data.limit=2000",
    f"--set=coord_check.widths={list(WIDTHS)}",
    f"--set=coord_check.steps={STEPS}",
    f"--set=seeds={list(SEEDS)}",
]
SP_GROWTH_MIN = 4.0
"""sp's readout l1 at the last step, width 1024 over width 64, is above this: measured 10x-14x on seed pairs
(0, 1), (3, 4), (5, 6) at these settings (Adam lr 1e-2; the readout's Adam update adds ~lr per weight,
summed over width inputs)."""
MUP_DRIFT_MAX = 2.0
"""muP's same ratio stays within this factor either way: measured 0.78x-1.2x on the same seeds."""


def coord_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python sweeps/coord_check.py ARGS` as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("coord")
    return coord_cli(*SMALL_RUN, "--out", str(out / "figs"), cwd=out), out / "figs"


def readout_last_step(rows: list[dict], parametrization: str) -> dict[int, float]:
    """Width -> the readout's l1 at the last step, mean over seeds."""
    picked = [r for r in rows if r["parametrization"] == parametrization and r["module"].startswith("readout/")]
    picked = [r for r in picked if int(r["step"]) == STEPS]
    return {w: sum(float(r["l1"]) for r in picked if int(r["width"]) == w) / len(SEEDS) for w in WIDTHS}


def test_the_cli_writes_every_measurement_and_the_figure(run):
    result, out = run
    assert result.returncode == 0, result.stderr
    with (out / "coord_check.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["parametrization", "width", "step", "module", "seed", "l1"]
    modules = ["input/1", "hidden/3", "readout/5"]  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    want = {
        (p, str(w), str(t), m, str(s))
        for p, w, t, m, s in itertools.product(["sp", "mup"], WIDTHS, range(1, STEPS + 1), modules, SEEDS)
    }
    got = [(r["parametrization"], r["width"], r["step"], r["module"], r["seed"]) for r in rows]
    assert sorted(got) == sorted(want)  # each exactly once
    assert all(float(r["l1"]) > 0 for r in rows)
    png = (out / "coord_check.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert "sp: readout l1 at step 3" in result.stdout


def test_mup_keeps_the_readout_flat_in_width_and_sp_does_not(run):
    _, out = run
    with (out / "coord_check.csv").open() as f:
        rows = list(csv.DictReader(f))
    mup, sp = readout_last_step(rows, "mup"), readout_last_step(rows, "sp")
    assert 1 / MUP_DRIFT_MAX < mup[WIDTHS[-1]] / mup[WIDTHS[0]] < MUP_DRIFT_MAX, mup
    assert sp[WIDTHS[-1]] / sp[WIDTHS[0]] > SP_GROWTH_MIN, sp
    assert sp[WIDTHS[0]] == pytest.approx(mup[WIDTHS[0]])  # the base width: muP is sp there


def test_a_tied_gpt_groups_its_modules_by_role_and_measures_its_logits_as_the_readout():
    sweep = parse_config(
        {
            "name": "coord-gpt",
            "task": "language_model",
            "seeds": [0],
            "data": {"limit": 20_000, "context": 16},
            "model": {"name": "gpt", "width": 32, "depth": 1, "heads": 2, "base_width": 32, "tie_embeddings": True},
            "train": {"batch_size": 8},
            "schemes": [{"scheme": "gpt2"}],
            "coord_check": {"widths": [32, 64], "steps": 2},
        }
    )
    rows = coord_check(sweep, load_configured(sweep.data, sweep.task))
    modules = {r["module"] for r in rows}
    assert {m.split("/")[0] for m in modules} == {"embedding", "attention", "mlp", "readout"}
    assert "readout/logits" in modules and not any("ln" in m or "norm" in m for m in modules)
    assert len(rows) == 2 * 2 * 2 * len(modules)  # parametrizations x widths x steps x modules (one seed)


def _script_main():
    spec = importlib.util.spec_from_file_location("initsweep_coord_check_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


GPT = str(ROOT / "sweeps" / "lm.yaml")


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ([str(ROOT / "sweeps" / "smoke.yaml")], "coord_check: missing"),
        ([GPT, "--set=coord_check={widths: [30, 64]}", "--set=model.base_width=32"], "coord_check.widths: 30 fails"),
        (["--set=coord_check.parametrizations=[sp, spp]"], "coord_check.parametrizations.1:"),
        (["--set=coord_check.widths=[64, 64]"], "coord_check.widths:"),
        ([GPT, "--set=coord_check={widths: [32, 64]}"], "coord_check.parametrizations: mup fails: model.base_width"),
        ([str(ROOT / "sweeps" / "smoke.yaml"), "--set=coord_check.widths=[8, 16]"], "coord_check.widths:"),
    ],
    ids=["no-section", "width-not-heads", "unknown-parametrization", "repeated-width", "no-base-width", "no-depth"],
)
def test_bad_input_is_one_line_and_exit_2(args, key, capsys, tmp_path):
    assert _script_main()([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {key}") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_initsweep_has_the_coord_check_command(capsys, tmp_path):
    assert initsweep_main(["coord-check", str(ROOT / "sweeps" / "smoke.yaml"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: coord_check: missing")
