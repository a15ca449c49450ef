"""The report from known rows: ranking, baseline comparison, published numbers, search extras, files."""

from __future__ import annotations

import math

import matplotlib.image
import pytest
from scipy import stats

from initsweep.config import TrialConfig, parse_config
from initsweep.report.build import build_report
from initsweep.report.summary import boundary_warnings, summarize
from initsweep.results import SeedResult, TrialResult

DIAG = [
    {"layer": "1:Linear", "act_std": 0.3, "grad_norm": 0.2},
    {"layer": "4:Linear", "act_std": 0.1, "grad_norm": 0.1},
]


def row(name, scheme, accs, params=None, diverged=(), train_mode=None, axes=None):
    """A trial of row `name` (with grid values `axes`) whose seeds ended at `accs`."""
    seeds = []
    for i, acc in enumerate(accs):
        final = {"val_accuracy": acc, "train_loss": 0.5, "last_batch_loss": 0.4}
        if train_mode is not None:
            final["val_accuracy_train_mode"] = train_mode[i]
        losses = [(10 * k, 2.0 / k) for k in range(1, 6)]
        seeds.append(
            SeedResult(
                i,
                [final],
                losses,
                {"test_accuracy": acc - 0.3},
                diverged_step=5 if i in diverged else None,
                diagnostics=DIAG,
            )
        )
    raw_row = {"scheme": scheme, "params": params or {}, "label": name}
    config = TrialConfig.model_validate({"seeds": list(range(len(accs))), "row": raw_row, "axes": axes or {}})
    return TrialResult(config, seeds)


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
    assert [s.trial.name for s in summaries] == ["rule", "default", "ones"]  # diverged last despite 33% mean
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
            "plots/phase_diagram.png",  # MLP trials: mean-field theory beside them
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
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    assert "## Theory beside measurement" in md
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


STUDY = {
    "name": "depth",
    "seeds": [0, 1, 2],
    "model": {"dropout": 0.0},
    "schemes": [
        {"scheme": "kaiming_normal", "label": "he"},
        {"scheme": "uniform_fan_in", "label": "rule"},
        {"scheme": "pytorch_default", "label": "default"},
    ],
    "grid": {"model.depth": [2, 8, 32], "model.activation": ["relu", "tanh"]},
}

# (row, depth, activation) -> the seeds' val accuracy; ("rule", 32, "tanh") failed: no row at all.
STUDY_ACCS = {
    ("he", 2): [85.0, 85.5, 85.2],
    ("he", 8): [84.0, 84.5, 84.2],
    ("he", 32): [60.0, 62.0, 64.0],
    ("rule", 2): [85.3, 85.8, 85.2],
    ("rule", 8): [70.0, 71.0, 72.0],
    ("rule", 32): [10.0, 10.1, 9.9],
    ("default", 2): [84.0, 84.2, 84.4],
    ("default", 8): [80.0, 81.0, 82.0],
    ("default", 32): [10.0, 60.0, 35.0],
}


def study_rows():
    scheme = {"he": "kaiming_normal", "rule": "uniform_fan_in", "default": "pytorch_default"}
    rows = []
    for activation in ("relu", "tanh"):
        for (name, depth), accs in STUDY_ACCS.items():
            if (name, depth, activation) == ("rule", 32, "tanh"):
                continue
            r = row(name, scheme[name], accs, axes={"model.depth": depth, "model.activation": activation})
            for s in r.seeds:  # a deeper net has more layers: its output std falls with depth for "rule"
                s.diagnostics = [{"layer": str(i), "act_std": 0.5**i, "grad_norm": 1.0} for i in range(depth + 1)]
            rows.append(r)
    return rows


def _ci(values):
    mean, se = sum(values) / len(values), stats.sem(values)
    half = stats.t.ppf(0.975, len(values) - 1) * se
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def test_grid_report_has_a_heatmap_per_activation_and_a_summary_with_intervals(tmp_path):
    from initsweep.report.grid import grid_panels, summary_lines

    sweep = parse_config(STUDY)
    panels = grid_panels(study_rows(), sweep)
    assert [p.title for p in panels] == ["activation=relu", "activation=tanh"]
    relu, tanh = panels
    assert relu.columns == [2, 8, 32] and relu.rows == ["he", "rule", "default"]
    assert ("rule", 32) in relu.cells and ("rule", 32) not in tanh.cells
    assert len(relu.deepest("he").seeds[0].diagnostics) == 33

    lines = summary_lines(relu, sweep)
    assert lines[0].startswith(f"Best at each depth: depth 2: rule {_ci(STUDY_ACCS['rule', 2])} (intervals overlap: he")
    assert f"depth 32: he {_ci(STUDY_ACCS['he', 32])} (intervals overlap: default)" in lines[0]
    he = _ci(STUDY_ACCS["he", 2]), _ci(STUDY_ACCS["he", 32])
    assert f"he: trains at every depth: {he[0]} at depth 2, {he[1]} at depth 32." in lines
    rule = _ci(STUDY_ACCS["rule", 8]), _ci(STUDY_ACCS["rule", 32])
    assert f"rule: trains up to depth 8 ({rule[0]}); at chance from depth 32 ({rule[1]})." in lines
    assert f"default: trains up to depth 8 ({_ci(STUDY_ACCS['default', 8])}); seeds disagree at depth 32" in lines[3]

    report = build_report(study_rows(), sweep, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.index("## Across the grid") < md.index("## Results")  # the study's answer first
    assert f"| rule | {_ci(STUDY_ACCS['rule', 2])} | {rule[0]} | - |" in md  # the failed trial's cell is empty
    assert "### activation=tanh" in md and "he: trains at every depth" in md
    for name in ("grid_heatmap.png", "signal_by_depth.png"):
        image = matplotlib.image.imread(tmp_path / "r" / "plots" / name)
        assert image.shape[0] > 300 and image.shape[1] > 600, name
    # Paired comparisons stay within one grid combination: rule at depth 32 (relu) against default there.
    vs = {s.trial.name: s.vs_baseline for s in report.summaries}
    assert vs["rule depth=32 activation=relu"].difference.mean == pytest.approx(10.0 - 35.0)
    assert vs["default depth=32 activation=relu"] is None


@pytest.mark.parametrize("width", [80, 120])
def test_the_terminal_table_fits_its_width_and_report_md_keeps_everything(tmp_path, width):
    long = {"scheme": "kaiming_uniform", "a": 0, "mode": "fan_in", "nonlinearity": "relu"}
    sweep = parse_config(GRID | {"schemes": [*GRID["schemes"], long], "report": {}, "grid": {"model.depth": [2, 16]}})
    rows = []
    for depth in (2, 16):
        axes = {"model.depth": depth}
        rows += [
            row(n, s, [85.0 + d, 85.4 + d, 84.9 + d], axes=axes, train_mode=[84.0] * 3)
            for n, s, d in (
                ("default", "pytorch_default", 0.0),
                ("rule", "uniform_fan_in", 0.5),
            )
        ]
        name = "kaiming_uniform(a=0, mode=fan_in, nonlinearity=relu) and a label as long as people write them"
        rows.append(row(name, "kaiming_uniform", [86.0, 86.3, 86.1], axes=axes, train_mode=[85.0] * 3))
    report = build_report(rows, sweep, tmp_path)
    table = report.table(width)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= width, table
    header = lines[0]
    assert "val acc % (95% CI)" in header and "scheme" in header  # the objective and its interval, always
    assert ("test acc %" in header) and ("Δ vs baseline" in header) == (width >= 120)
    shortened = next(line for line in lines if "kaiming" in line)
    assert "…" in shortened and "them depth=" in shortened  # cut in the middle: the grid values stay
    assert "(names shortened; report.md has them in full)" in table
    assert f"| {name} depth=16 |" in (tmp_path / "report.md").read_text()
    assert "val acc dropout-on" in (tmp_path / "report.md").read_text()
    assert len(lines[0]) > width - 25  # the room goes to the names, not to padding
