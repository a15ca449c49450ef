"""The report from known rows: ranking, baseline comparison, published numbers, search extras, files."""

from __future__ import annotations

import math

import matplotlib.image
import pytest
from scipy import stats

from initsweep.config import parse_config
from initsweep.report import ReportRow, SeedRecord, boundary_warnings, build_report, summarize

DIAG = [
    {"layer": "1:Linear", "act_std": 0.3, "grad_norm": 0.2},
    {"layer": "4:Linear", "act_std": 0.1, "grad_norm": 0.1},
]


def row(name, scheme, accs, params=None, diverged=(), train_mode=None):
    seeds = []
    for i, acc in enumerate(accs):
        final = {"val_accuracy": acc, "train_loss": 0.5, "last_batch_loss": 0.4, "test_accuracy": acc - 0.3}
        if train_mode is not None:
            final["val_accuracy_train_mode"] = train_mode[i]
        losses = [(10 * k, 2.0 / k) for k in range(1, 6)]
        seeds.append(SeedRecord(i, final, losses, DIAG, diverged=i in diverged))
    r = ReportRow(name, scheme, params or {}, seeds)
    r.objective = sum(accs) / len(accs)
    return r


GRID = {
    "name": "g",
    "seeds": [0, 1, 2],
    "schemes": [
        {"scheme": "pytorch_default", "label": "default"},
        {"scheme": "uniform_fan_in", "label": "rule"},
        {"scheme": "constant", "value": 1, "label": "ones"},
    ],
    "train": {"val_train_mode": True},
    "report": {"reference": {"values": {"rule": {"run A": 84.9, "run B": 80.0}}}},
}


def grid_rows():
    return [
        row("default", "pytorch_default", [85.0, 85.2, 84.8], train_mode=[84.0, 84.2, 83.8]),
        row("rule", "uniform_fan_in", [85.5, 85.9, 85.3], train_mode=[84.9, 85.1, 84.7]),
        row("ones", "constant", [99.0, 0.0, 0.0], diverged=(1, 2), train_mode=[9.0, 0.0, 0.0]),
    ]


def test_ranking_baseline_and_published_numbers():
    sweep = parse_config(GRID)
    summaries = summarize(grid_rows(), sweep)
    assert [s.row.name for s in summaries] == ["rule", "default", "ones"]  # diverged last despite 33% mean
    rule, default = summaries[0], summaries[1]
    assert default.vs_baseline is None  # pytorch_default is the baseline by default
    assert rule.vs_baseline.difference.mean == pytest.approx(0.5667, abs=1e-4)
    assert rule.vs_baseline.p_value == pytest.approx(stats.ttest_rel([85.5, 85.9, 85.3], [85.0, 85.2, 84.8]).pvalue)
    ci = rule.intervals["val_accuracy_train_mode"]  # 84.9 ± t * 0.2 / sqrt(3)
    assert rule.reference == {"run A": (84.9, True), "run B": (80.0, False)}
    assert ci.low < 84.9 < ci.high


def test_report_files_and_images(tmp_path):
    sweep = parse_config(GRID)
    report = build_report(grid_rows(), sweep, tmp_path / "r")
    names = sorted(p.relative_to(tmp_path / "r").as_posix() for p in report.files)
    assert names == sorted(
        [
            "report.md",
            "report.html",
            "results.csv",
            "plots/val_accuracy.png",
            "plots/loss_curves.png",
            "plots/signal_propagation.png",
        ]
    )
    for png in (tmp_path / "r" / "plots").glob("*.png"):
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 400 and png.stat().st_size > 10_000
        assert image[..., :3].std() > 0.05  # not a blank canvas
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| 1 | rule | 3 | 85.57 [" in md and "## Published numbers" in md and "1 inside, 1 outside" in md
    assert "84.900 inside" in md and "80.000 OUTSIDE" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html
    csv_rows = (tmp_path / "r" / "results.csv").read_text().splitlines()
    assert csv_rows[0].startswith("rank,scheme,n,val acc % (95% CI)") and len(csv_rows) == 4
    assert "rule" in report.text.splitlines()[2]


def test_one_seed_rows_have_no_interval(tmp_path):
    sweep = parse_config(GRID | {"seeds": [0]})
    rows = [row("default", "pytorch_default", [85.0]), row("rule", "uniform_fan_in", [86.0])]
    summaries = summarize(rows, sweep)
    assert math.isnan(summaries[0].intervals["val_accuracy"].low) and math.isnan(summaries[0].vs_baseline.p_value)
    report = build_report(rows, sweep, tmp_path)
    assert "86.00 (n=1)" in report.text


SEARCH = {
    "name": "s",
    "seeds": [0, 1],
    "search": {
        "n_trials": 6,
        "schemes": {"uniform_fan_in": {"c": [0.1, 10.0]}, "xavier_uniform": {"gain": [0.5, 2.0]}},
    },
}


def search_rows(best_c):
    rows = [row(f"uniform_fan_in(c={best_c})", "uniform_fan_in", [86.0, 86.2], {"c": best_c})]
    for i, c in enumerate([0.5, 1.0, 2.0]):
        rows.append(row(f"uniform_fan_in(c={c})", "uniform_fan_in", [80.0 + i, 80.5 + i], {"c": c}))
    for g in (0.7, 1.5):
        rows.append(row(f"xavier_uniform(gain={g})", "xavier_uniform", [82.0, 82.4], {"gain": g}))
    return rows


def test_best_value_at_a_search_edge_is_flagged():
    sweep = parse_config(SEARCH)
    assert boundary_warnings(summarize(search_rows(9.5), sweep), sweep)[0].startswith(
        "The best trial's `uniform_fan_in.c` = 9.5 lies within 5% of the search range's high end [0.1, 10]"
    )
    assert boundary_warnings(summarize(search_rows(3.0), sweep), sweep) == []  # log scale: 3 is mid-range


def test_search_report_adds_its_plots(tmp_path):
    sweep = parse_config(SEARCH)
    report = build_report(search_rows(9.5), sweep, tmp_path)
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert {"objective_vs_params.png", "optimization_history.png", "param_importances.png"} <= set(plots)
    md = (tmp_path / "report.md").read_text()
    assert "## Search range" in md and "widen the range" in md
    assert "Δ" not in report.text  # no pytorch_default row: no baseline column
