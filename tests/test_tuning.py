"""Fair comparisons (a `tune` section): the config, the two-stage searcher on its own, and a tuned sweep end to
end through Ray Tune and MLflow at test size."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, mlflow_runs, run_cli
from mlflow import MlflowClient
from ray.tune.search import Searcher
from test_faults import Driver, study_of
from test_sweep import assert_complete

from initsweep.config import ConfigError, parse_config
from initsweep.sweep.staged import StagedSearch

TUNED = {
    "name": "fair",
    "seeds": [0, 1],
    "schemes": ["orthogonal", {"scheme": "uniform_fan_in", "c": 1}],
    "tune": {"params": {"train.lr": [1e-4, 3e-4, 1e-3]}, "seeds": [100, 101]},
}


def staged(raw: dict) -> StagedSearch:
    return StagedSearch(parse_config(raw), study="s", storage=optuna.storages.InMemoryStorage(), metric="objective")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"seeds": [100, 101]}, "tune.seeds: seed 100 is also an evaluation seed"),
        ({"tune": {"params": {"model.width": [64]}, "seeds": [5]}}, "tune.params.model.width: not a tunable"),
        ({"tune": {"params": {"train.lr": []}, "seeds": [5]}}, "tune.params.train.lr: needs at least one value"),
        ({"tune": {"params": {"train.lr": [0.1, 0.1]}, "seeds": [5]}}, "tune.params.train.lr: 0.1 appears twice"),
        ({"tune": {"params": {"train.lr": [-1.0]}, "seeds": [5]}}, "tune.params.train.lr: input should be greater"),
        ({"tune": {"params": {"train.lr": {"low": 1, "high": 0}}, "seeds": [5], "n_trials": 2}}, "tune.params"),
        ({"tune": {"params": {"train.lr": {"low": 1e-4, "high": 1e-2}}, "seeds": [5]}}, "tune.n_trials: needed"),
        ({"tune": {"params": {"train.lr": [0.1]}, "seeds": [5, 5]}}, "tune.seeds: seed 5 appears twice"),
        ({"grid": {"train.lr": [0.1]}}, "tune.params.train.lr: also a grid axis"),
    ],
)
def test_bad_tune_sections_are_one_line_naming_the_key(change, message):
    with pytest.raises(ConfigError) as err:
        parse_config(TUNED | change)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_a_tuned_grid_counts_its_candidates_then_one_judged_trial_per_row():
    sweep = parse_config(TUNED)
    assert sweep.n_trials == 2 * (3 + 1)
    first = sweep.tuning_trials()[0]
    assert first.seeds == [100, 101] and first.train.lr == 1e-4 and first.stage == "tune"
    assert first.name == "orthogonal(gain=auto) lr=0.0001 [tune]"
    judged = sweep.trial(sweep.schemes[1], {}, {"train.lr": 3e-4}, "eval")
    assert judged.seeds == [0, 1] and judged.train.lr == 3e-4 and judged.name == "uniform_fan_in(c=1) lr=0.0003"


def test_each_row_is_judged_at_its_own_best_candidate_as_soon_as_its_candidates_are_in():
    searcher = staged(TUNED)
    stage1 = {f"t{i}": searcher.suggest(f"t{i}") for i in range(6)}
    assert [c["stage"] for c in stage1.values()] == ["tune"] * 6
    assert searcher.suggest("wait") is None  # nothing to judge yet
    score = {1e-4: 70.0, 3e-4: 80.0, 1e-3: 75.0}
    for tid, c in stage1.items():
        if c["cell"]["row"]["scheme"] == "orthogonal":
            searcher.on_trial_complete(tid, {"objective": score[c["tuned"]["train.lr"]], "diverged": 0})
    judged = searcher.suggest("j0")  # orthogonal has all its candidates: it is judged now
    assert judged["stage"] == "eval" and judged["cell"]["row"]["scheme"] == "orthogonal"
    assert judged["tuned"] == {"train.lr": 3e-4}
    rule = [(tid, c) for tid, c in stage1.items() if c["cell"]["row"]["scheme"] == "uniform_fan_in"]
    for tid, c in rule:  # the best mean has a diverged seed: it never wins
        diverged = c["tuned"]["train.lr"] == 1e-3
        searcher.on_trial_complete(
            tid, {"objective": 90.0 if diverged else score[c["tuned"]["train.lr"]], "diverged": int(diverged)}
        )
    assert searcher.suggest("j1")["tuned"] == {"train.lr": 3e-4}
    assert searcher.suggest("done") is Searcher.FINISHED


def test_a_range_is_drawn_per_row_the_same_whatever_order_results_come_back():
    raw = TUNED | {
        "tune": {"params": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}, "seeds": [7], "n_trials": 4}
    }

    def run(reverse: bool) -> list[dict]:
        searcher, drawn = staged(raw), []
        for _ in range(4):
            batch = {}
            for i in range(3):
                c = searcher.suggest(f"{len(drawn)}-{i}")
                if c is not None and c["stage"] == "tune":
                    batch[f"{len(drawn)}-{i}"] = c
            assert len(batch) == 2  # one candidate per row at a time
            drawn += list(batch.values())
            for tid in sorted(batch, reverse=reverse):
                searcher.on_trial_complete(tid, {"objective": 50.0 + batch[tid]["tuned"]["train.lr"], "diverged": 0})
        return drawn

    forward = run(False)
    assert forward == run(True) and len({c["tuned"]["train.lr"] for c in forward}) == 8


def test_a_trial_the_restored_state_never_suggested_is_found_by_its_config(tmp_path):
    searcher = staged(TUNED)
    searcher.save(str(tmp_path / "older.pkl"))
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(3)}  # orthogonal's three candidates
    restored = staged(TUNED)
    restored.restore(str(tmp_path / "older.pkl"))
    for tid, c in configs.items():
        restored.on_trial_complete(tid, {"objective": 60.0, "diverged": 0, "config": c})
    judged = restored.suggest("j")
    assert judged["stage"] == "eval" and judged["cell"]["row"]["scheme"] == "orthogonal"


SMOKE_TUNED = [
    str(ROOT / "sweeps" / "smoke.yaml"),
    *("--set", "name=fair", "--set", "tune={params: {train.lr: [0.0003, 0.003]}, seeds: [100, 101]}"),
]


def check_fair_sweep(tmp_path) -> None:
    """Stages, tags, params, the choice and the report of a finished SMOKE_TUNED sweep in tmp_path."""
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "fair")
    assert_complete(runs, n_trials=9, n_seeds=2)
    trials = runs["trial"]
    assert Counter(r.data.tags["stage"] for r in trials) == {"tune": 6, "eval": 3}
    for seed in runs["seed"]:  # tuning seeds choose, evaluation seeds judge: never the same run
        assert seed.data.params["seed"] in (("100", "101") if seed.data.tags["stage"] == "tune" else ("0", "1"))
        assert seed.data.params["train.lr"] in ("0.0003", "0.003")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = runs["sweep"][0].info.run_id
    chosen = json.loads(Path(client.download_artifacts(parent, "chosen_values.json", str(tmp_path))).read_text())
    for row in ("constant(value=0)", "uniform_fan_in(c=1)", "pytorch_default"):
        candidates = [r for r in trials if r.data.tags["stage"] == "tune" and r.data.tags["row"] == row]
        top = max(candidates, key=lambda r: r.data.metrics["val_accuracy"])  # ties: the first listed wins
        ties = [r for r in candidates if r.data.metrics["val_accuracy"] == top.data.metrics["val_accuracy"]]
        expected = {"train.lr": min(float(r.data.params["train.lr"]) for r in ties)}
        judged = next(r for r in trials if r.data.tags["stage"] == "eval" and r.data.tags["row"] == row)
        assert chosen[row] == expected and float(judged.data.params["train.lr"]) == expected["train.lr"]
    md = (next((tmp_path / "reports").glob("fair-*")) / "report.md").read_text()
    assert "## Tuning (stage 1)" in md and "tuning_sensitivity.png" in md
    results = md[md.index("## Results") :]
    assert "[tune]" not in results and results.count("| 1 |") == 1  # the ranked table holds the judged rows only


@pytest.mark.slow
def test_a_fair_sweep_chooses_on_tuning_seeds_and_judges_on_fresh_ones_and_resumes_between_stages(tmp_path):
    args = [*SMOKE_TUNED, "--storage-path", str(tmp_path / "ray")]
    overlap = run_cli(*args, "--set", "tune.seeds=[1, 2]", cwd=tmp_path)
    assert overlap.returncode == 2 and overlap.stderr.startswith("error: tune.seeds: seed 1 is also an evaluation")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray").exists()

    # Killed once some rows have chosen (stage 2 under way) but not all: the rerun finishes both stages.
    first = Driver(args, tmp_path)
    first.kill_when(lambda: sum("[tune]" in line for line in first.progress()) >= 3)
    last = Driver(args, tmp_path)
    assert last.finish() == 0, "".join(last.lines)[-6000:]
    assert "resuming sweep" in "".join(last.lines)
    check_fair_sweep(tmp_path)

    # --no-ray runs both stages in this process: the same choices and numbers, to the last digit.
    local = run_cli(*SMOKE_TUNED, "--no-ray", "--report-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]

    def rows(folder):  # without the rank, which orders ties by finishing order
        return sorted(line.split(",", 1)[1] for line in (folder / "results.csv").read_text().splitlines())

    assert rows(tmp_path / "local" / "fair-no-ray") == rows(next((tmp_path / "reports").glob("fair-*")))


@pytest.mark.slow
def test_a_seeded_search_draws_the_same_configs_twice_with_two_trials_in_flight(tmp_path):
    drawn = []
    for attempt in ("a", "b"):
        folder = tmp_path / attempt
        folder.mkdir()
        search = [str(ROOT / "sweeps" / "search_bounds.yaml"), "--set", "search.n_trials=6"]
        search += ["--set", "data.limit=1000", "--set", "seeds=[0]", "--set", "resources.max_concurrent=2"]
        proc = run_cli(*search, "--storage-path", str(folder / "ray"), cwd=folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
        study = study_of(next((folder / "ray").glob("search_bounds-*")), "search_bounds")
        drawn.append([t.params for t in sorted(study.trials, key=lambda t: t.number)])
    assert len(drawn[0]) == 6 and drawn[0] == drawn[1]
