"""Theory beside measurement, end to end: the edge-of-chaos grid and the phase-diagram search at test size
through Ray Tune and a SQLite MLflow store (theory.* params per trial, the report's theory section, 6 xi_c
over the heatmap, the phase diagram), and the pieces that join theory to a trial config."""

from __future__ import annotations

import math

import matplotlib.image
import pytest
from conftest import ROOT, mlflow_runs, run_cli
from test_sweep import assert_complete

from initsweep.config import load_config, parse_config
from initsweep.prediction import predict
from initsweep.report.meanfield import depth_marks
from initsweep.report.plots import _depth_position
from initsweep.theory import critical_weight_variance, mean_field

EDGE_SMALL = [
    str(ROOT / "sweeps" / "edge_of_chaos.yaml"),
    *("--set", "data.limit=1500", "--set", "train.epochs=1", "--set", "seeds=[0, 1]"),
    *("--set", "grid.model.depth=[2, 6]", "--set", "model.width=32"),
    *(
        "--set",
        "schemes=[{scheme: critical, weight_variance: 1.0, label: sw2=1}, {scheme: critical, label: edge},"
        " {scheme: critical, weight_variance: 4.0, label: sw2=4}]",
    ),
]


def _image_drawn(png) -> bool:
    image = matplotlib.image.imread(png)
    return image.shape[0] > 200 and image[..., :3].std() > 0.05


@pytest.mark.slow
def test_edge_of_chaos_grid_logs_theory_per_trial_and_reports_it(tmp_path):
    proc = run_cli(*EDGE_SMALL, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6/6 trials done (0 failed)" in proc.stdout
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "edge_of_chaos")
    assert_complete(runs, n_trials=6, n_seeds=2)
    phases = {}
    for run in runs["trial"]:
        params, metrics = run.data.params, run.data.metrics
        assert params["init.bias"] == "normal" and float(params["init.bias_std"]) == pytest.approx(math.sqrt(0.05))
        assert float(params["theory.bias_variance"]) == pytest.approx(0.05, rel=1e-5)
        assert params["theory.layer"] == "hidden layer 2 (32 -> 32)"
        assert float(params["theory.chi1"]) == pytest.approx(metrics["theory.chi1"], rel=1e-5)
        phases[run.data.tags["row"]] = (params["theory.phase"], float(params["weight_variance"]))
    assert phases["sw2=1"] == ("ordered", 1.0) and phases["sw2=4"] == ("chaotic", 4.0)
    assert phases["edge"][0] == "critical" and phases["edge"][1] == pytest.approx(1.76, abs=0.01)  # "auto"

    report = next((tmp_path / "reports").glob("edge_of_chaos-*"))
    md = (report / "report.md").read_text()
    theory = md.split("## Theory beside measurement")[1]
    six_xi = 6 * mean_field("tanh", 1.0, 0.05).xi_c
    assert "sw2=1 (σ_w² 1, σ_b² 0.05, χ1 0.759, ordered):" in theory and f"6 ξc = {six_xi:.0f}." in theory
    assert "edge (σ_w² 1.76, σ_b² 0.05, χ1 1.000, critical):" in theory and "6 ξc = ∞." in theory
    for png in ("grid_heatmap.png", "phase_diagram.png"):
        assert _image_drawn(report / "plots" / png), png

    # The report rebuilt from MLflow alone says the same.
    rebuilt = run_cli_report(tmp_path)
    assert rebuilt.split("## Theory beside measurement")[1] == theory


def run_cli_report(tmp_path) -> str:
    import subprocess
    import sys

    out = tmp_path / "rebuilt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "report.py"), "--experiment", "edge_of_chaos",
         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(out.rglob("report.md")).read_text()


@pytest.mark.slow
def test_phase_diagram_search_draws_weight_and_bias_scales_through_optuna(tmp_path):
    small = [
        str(ROOT / "sweeps" / "phase_diagram.yaml"),
        *("--set", "data.limit=1000", "--set", "train.epochs=1", "--set", "model.depth=3"),
        *("--set", "model.width=16", "--set", "search.n_trials=3"),
    ]
    proc = run_cli(*small, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "phase_diagram")
    assert_complete(runs, n_trials=3, n_seeds=2)
    drawn = set()
    for run in runs["trial"]:
        p = run.data.params
        sw2, sigma_b = float(p["weight_variance"]), float(p["init.bias_std"])
        assert 0.5 <= sw2 <= 6.0 and 0.0 <= sigma_b <= 0.7
        assert float(p["theory.weight_variance"]) == pytest.approx(sw2, rel=1e-5)
        assert float(p["theory.bias_variance"]) == pytest.approx(sigma_b**2, rel=1e-4, abs=1e-9)
        assert p["theory.phase"] == mean_field("tanh", sw2, sigma_b**2).phase
        drawn.add((sw2, sigma_b))
    assert len(drawn) == 3
    report = next((tmp_path / "reports").glob("phase_diagram-*"))
    assert _image_drawn(report / "plots" / "phase_diagram.png")
    assert _image_drawn(report / "plots" / "objective_vs_params.png")


def test_predictions_follow_the_scheme_the_bias_and_the_layer():
    sweep = load_config(ROOT / "sweeps" / "depth_study.yaml")
    by_name = {t.name: predict(t) for t in sweep.trials()}
    he_relu = by_name["kaiming_normal(auto) depth=16 activation=relu"].mean_field
    assert he_relu.phase == "critical" and math.isinf(he_relu.xi_c)  # He init is ReLU's critical point
    torch_tanh = by_name["xavier_uniform(gain=auto) depth=16 activation=tanh"].mean_field
    assert torch_tanh.weight_variance == pytest.approx(25 / 9) and torch_tanh.phase == "chaotic"
    default = by_name["pytorch_default depth=4 activation=relu"].mean_field
    assert default.weight_variance == pytest.approx(1 / 3) and default.bias_variance == pytest.approx(1 / (3 * 256))

    founding = {t.row.name: predict(t) for t in load_config(ROOT / "sweeps" / "seed_table.yaml").trials()}
    ones = founding["all ones"]  # a fixed scale: sigma_w^2 = fan_in E[W^2] of the layer it names
    assert ones.layer == "hidden layer 2 (256 -> 128)" and ones.mean_field.weight_variance == 256
    assert founding["all zeros"] is None  # no weights, no fixed point

    base = {"name": "t", "seeds": [0], "schemes": ["lsuv", {"scheme": "kaiming_normal"}]}
    lsuv, _ = parse_config(base).trials()
    assert predict(lsuv) is None  # a data-dependent variance
    assert predict(parse_config(base | {"model": {"name": "cnn"}}).trials()[1]) is None  # MLPs only
    one_layer = parse_config(base | {"model": {"hidden": [64]}}).trials()[1]
    assert predict(one_layer).layer == "hidden layer 1 (784 -> 64)"


def test_six_xi_c_lands_between_the_depth_columns_it_falls_between():
    columns = [10, 20, 40, 80, 160]
    assert _depth_position(20, columns) == pytest.approx(1.0)
    assert _depth_position(math.sqrt(20 * 40), columns) == pytest.approx(1.5)  # a log scale
    assert _depth_position(5, columns) == -0.5 and _depth_position(math.inf, columns) == 4.5
    sweep = load_config(ROOT / "sweeps" / "edge_of_chaos.yaml")
    from initsweep.report.grid import grid_panels
    from initsweep.results import SeedResult, TrialResult

    fake = [
        TrialResult(t, [SeedResult(0, epochs=[{"val_accuracy": 50.0}])]) for t in sweep.trials()
    ]  # marks need configs, not accuracies
    marks = depth_marks(grid_panels(fake, sweep), sweep)
    six_xi = 6 * mean_field("tanh", 1.0, 0.05).xi_c
    assert marks[0]["sw2=1.00"] == pytest.approx(six_xi, rel=1e-6)  # the YAML's sigma_b is 0.2236068
    assert marks[0]["sw2=1.76 (critical)"] > 1e4
    assert critical_weight_variance("tanh", 0.05) == pytest.approx(1.76, abs=0.01)
