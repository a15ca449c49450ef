"""Search spaces with a real Optuna study: conditional parameters, fixed values, trial configs."""

from __future__ import annotations

import pickle

import optuna
import pytest

from initsweep.config import SearchConfig, parse_config
from initsweep.schemes import SCHEMES, Range
from initsweep.search import OptunaSpace, grid_cells, make_sampler, row_from_params, trial_from_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(**schemes) -> SearchConfig:
    return SearchConfig(n_trials=40, schemes=schemes, seed=3)


def draw(cfg: SearchConfig, n: int = 40) -> list[dict]:
    study = optuna.create_study(sampler=make_sampler(cfg), direction="maximize")
    space = pickle.loads(pickle.dumps(OptunaSpace(cfg)))  # Tune pickles the searcher with its space
    drawn = []
    for _ in range(n):
        trial = study.ask()
        fixed = space(trial)
        drawn.append(trial.params | fixed)
        study.tell(trial, 1.0)
    return drawn


def test_parameters_are_conditional_on_the_scheme():
    cfg = search(uniform_fan_in={}, xavier_uniform={}, uniform_symmetric={"y": [0.01, 0.5]}, pytorch_default={})
    drawn = draw(cfg)
    assert {d["scheme"] for d in drawn} == {"uniform_fan_in", "xavier_uniform", "uniform_symmetric", "pytorch_default"}
    for d in drawn:
        expected = {f"{d['scheme']}.{p}" for p in SCHEMES[d["scheme"]].params} | {"scheme"}
        assert set(d) == expected  # uniform_fan_in has c and no gain, and so on
        row = row_from_params(d)
        assert row.scheme == d["scheme"] and set(row.params) == set(SCHEMES[d["scheme"]].params)
        if d["scheme"] == "uniform_fan_in":
            assert 0.1 <= row.params["c"] <= 10 and "gain" not in row.params
        if d["scheme"] == "uniform_symmetric":
            assert 0.01 <= row.params["y"] <= 0.5


def test_listed_parameters_are_searched_and_the_rest_fixed():
    cfg = search(kaiming_normal={"a": 0.1, "mode": ["fan_in", "fan_out"]}, lsuv={"max_iter": [1, 5], "tol": 0.2})
    space = cfg.space()
    assert space["kaiming_normal"] == {"a": 0.1, "mode": Range(choices=("fan_in", "fan_out")), "nonlinearity": "auto"}
    assert space["lsuv"] == {"tol": 0.2, "max_iter": Range(1, 5, integer=True)}
    for d in draw(cfg, 20):
        row = row_from_params(d)
        if row.scheme == "lsuv":
            assert isinstance(row.params["max_iter"], int) and 1 <= row.params["max_iter"] <= 5
            assert row.params["tol"] == 0.2
        else:
            assert row.params["a"] == 0.1 and row.params["mode"] in ("fan_in", "fan_out")


def test_an_empty_mapping_searches_the_registry_ranges():
    space = search(trunc_normal={}).space()["trunc_normal"]
    assert space == {"std": Range(1e-3, 1.0, log=True), "bound": Range(0.5, 4.0)}


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_samplers_are_reproducible_from_the_search_seed(sampler):
    cfg = SearchConfig(n_trials=8, sampler=sampler, seed=1, schemes={"uniform_fan_in": {}, "xavier_normal": {}})
    assert draw(cfg, 8) == draw(cfg, 8)
    other = SearchConfig(n_trials=8, sampler=sampler, seed=2, schemes={"uniform_fan_in": {}, "xavier_normal": {}})
    assert draw(cfg, 8) != draw(other, 8)


def test_grid_cells_round_trip_to_the_sweeps_trials():
    sweep = parse_config(
        {
            "name": "g",
            "seeds": [0],
            "schemes": [{"scheme": "uniform", "low": -0.5, "high": 0.5}, "orthogonal"],
            "grid": {"model.depth": [2, 3], "model.activation": ["relu", "tanh"]},
        }
    )
    cells = grid_cells(sweep)
    assert len(cells) == 8 and cells[0] == {
        "row": sweep.schemes[0].model_dump(),
        "axes": {"model.depth": 2, "model.activation": "relu"},
    }
    assert [trial_from_params(sweep, {"cell": c}) for c in cells] == sweep.trials()


def test_a_searcher_restored_from_older_state_still_closes_each_optuna_trial_once(tmp_path):
    """A killed driver can leave Tune's searcher state older than its trial states and the study: the
    restored searcher meets a trial it never suggested, or one the dead driver already told Optuna."""
    from ray.tune.search.optuna import OptunaSearch

    from initsweep.tuning import ResumableOptunaSearch

    cfg = search(uniform_fan_in={"c": [0.5, 2.0]})
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))

    def searcher(kind=ResumableOptunaSearch):
        return kind(
            space=OptunaSpace(cfg),
            metric="objective",
            mode="max",
            sampler=make_sampler(cfg),
            study_name="s",
            storage=optuna.storages.JournalStorage(backend),
        )

    live = searcher()
    live.save(str(tmp_path / "older.pkl"))  # the state a killed driver left behind ...
    first, second = live.suggest("t1"), live.suggest("t2")  # ... before it suggested these two
    live.on_trial_complete("t2", {"objective": 70.0, "config": second})  # and told Optuna about t2

    stock = searcher(OptunaSearch)
    stock.restore(str(tmp_path / "older.pkl"))
    with pytest.raises(KeyError):
        stock.on_trial_complete("t1", {"objective": 60.0, "config": first})

    restored = searcher()
    restored.restore(str(tmp_path / "older.pkl"))
    restored.on_trial_result("t1", {"objective": 55.0, "training_iteration": 1, "config": first})
    restored.on_trial_complete("t1", {"objective": 60.0, "config": first})
    restored.on_trial_result("t2", {"objective": 70.0, "training_iteration": 1, "config": second})
    restored.on_trial_complete("t2", {"objective": 70.0, "config": second})
    study = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(backend))
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 60.0), ("COMPLETE", 70.0)]
    assert study.trials[0].intermediate_values == {1: 55.0}
