"""A small real depth study end to end: grid axes through Ray Tune, MLflow and the report, and the same
numbers from `--no-ray` (2 depths x 2 activations x 2 schemes, 2 seeds, 2,000 images, 1 epoch)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, mlflow_runs, run_cli
from mlflow import MlflowClient
from test_sweep import assert_complete

SMALL = [
    str(ROOT / "sweeps" / "depth_study.yaml"),
    *("--set", "data.limit=2000", "--set", "train.epochs=1", "--set", "seeds=[0, 1]"),
    *("--set", "grid.model.depth=[2, 6]", "--set", "tune=null"),  # the grid alone (tests/test_tuning.py: stages)
    *("--set", "schemes=[{scheme: uniform_fan_in, c: 1}, {scheme: kaiming_normal, label: he}]"),
]


@pytest.mark.slow
def test_a_small_depth_study_runs_through_ray_and_mlflow_and_matches_no_ray(tmp_path):
    proc = run_cli(*SMALL, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8/8 trials done (0 failed)" in proc.stdout
    assert "he depth=6 activation=tanh" in proc.stdout

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = mlflow_runs(uri, "depth_study")
    assert_complete(runs, n_trials=8, n_seeds=2)
    client = MlflowClient(uri)
    assert runs["sweep"][0].data.params["grid.model.depth"] == "[2, 6]"
    trials = {r.info.run_name: r for r in runs["trial"]}
    expected = {
        f"{row} depth={d} activation={a}"
        for row in ("uniform_fan_in(c=1)", "he")
        for d in (2, 6)
        for a in ("relu", "tanh")
    }
    assert set(trials) == expected
    for name, run in trials.items():
        depth, activation = re.search(r"depth=(\d+) activation=(\w+)", name).groups()
        params = run.data.params
        assert params["model.depth"] == depth and params["model.activation"] == activation  # each axis a param
        assert params["model.hidden"] == str([256] * int(depth)) and params["model.dropout"] == "0.0"
        if params["scheme"] == "kaiming_normal":
            assert run.data.tags["row"] == "he" and params["nonlinearity"] == activation  # auto, resolved
    seed_run = next(r for r in runs["seed"] if r.info.run_name == "he depth=6 activation=relu seed=1")
    with open(client.download_artifacts(seed_run.info.run_id, "init_diagnostics.json", str(tmp_path))) as f:
        assert len(json.load(f)) == 7  # 6 hidden layers and the classifier

    # The report's heatmap numbers are the trial runs' means, one table per activation.
    report = next((tmp_path / "reports").glob("depth_study-*"))
    md = (report / "report.md").read_text()
    assert "### activation=relu" in md and "### activation=tanh" in md
    for name, run in trials.items():
        row, depth, activation = re.match(r"(.+) depth=(\d+) activation=(\w+)", name).groups()
        panel = md.split(f"### activation={activation}")[1].split("###")[0]
        line = next(li for li in panel.splitlines() if li.startswith(f"| {row} |"))
        column = {"2": 1, "6": 2}[depth]
        assert line.split(" | ")[column].startswith(f"{run.data.metrics['val_accuracy']:.2f} ["), (name, line)
    assert (report / "plots" / "grid_heatmap.png").stat().st_size > 10_000
    assert (report / "plots" / "signal_by_depth.png").stat().st_size > 10_000
    assert {a.path for a in client.list_artifacts(runs["sweep"][0].info.run_id, "report/plots")} >= {
        "report/plots/grid_heatmap.png",
        "report/plots/signal_by_depth.png",
    }

    # --no-ray trains the same trials in this process: the same numbers, to the last digit.
    local = run_cli(*SMALL, "--no-ray", "--report-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]

    def rows(folder):  # without the rank, which orders ties by finishing order
        return sorted(line.split(",", 1)[1] for line in (folder / "results.csv").read_text().splitlines())

    assert rows(tmp_path / "local" / "depth_study-no-ray") == rows(report)
