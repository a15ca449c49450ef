"""Search spaces with a real Optuna study: conditional parameters, fixed values, trial configs."""

from __future__ import annotations

import pickle

import optuna
import pytest

from initsweep.catalog.schemes import SCHEMES, Range
from initsweep.config import SearchConfig, parse_config
from initsweep.sweep.search import BatchedOptunaSearch, OptunaSpace, make_sampler
from initsweep.sweep.space import grid_cells, row_from_params, trial_from_params

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


def _searcher(cfg: SearchConfig, storage, batch_size: int = 2) -> BatchedOptunaSearch:
    return BatchedOptunaSearch(cfg, study="s", storage=storage, metric="objective", mode="max", batch_size=batch_size)


def test_a_searcher_restored_from_older_state_still_closes_each_optuna_trial_once(tmp_path):
    """A killed driver can leave Tune's searcher state older than its trial states and the study: the
    restored searcher meets a trial it never suggested, or one the dead driver already told Optuna."""
    cfg = search(uniform_fan_in={"c": [0.5, 2.0]})
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))

    live = _searcher(cfg, storage)
    live.save(str(tmp_path / "older.pkl"))  # the state a killed driver left behind ...
    first, second = live.suggest("t1"), live.suggest("t2")  # ... before it suggested these two
    live.on_trial_complete("t2", {"objective": 70.0, "config": second})  # and told Optuna about t2

    restored = _searcher(cfg, storage)
    restored.restore(str(tmp_path / "older.pkl"))
    restored.on_trial_complete("t1", {"objective": 60.0, "config": first})
    restored.on_trial_complete("t2", {"objective": 70.0, "config": second})
    study = optuna.load_study(study_name="s", storage=storage)
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 60.0), ("COMPLETE", 70.0)]
    assert restored.suggest("t3") is not None  # the batch is done: the next one starts


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc"])
def test_a_seeded_search_draws_the_same_configs_whatever_order_results_come_back(sampler):
    """Batches of 2: the next batch is drawn only once both results are in, so the order they arrive
    in (and which trial is slower) cannot change what the sampler sees."""

    def run(order_within_batch) -> list[dict]:
        cfg = SearchConfig(schemes={"uniform_fan_in": {}, "normal_fan_in": {}}, n_trials=16, sampler=sampler, seed=3)
        searcher = _searcher(cfg, optuna.storages.InMemoryStorage())
        drawn = []
        for batch in range(8):
            ids = [f"t{batch}a", f"t{batch}b"]
            configs = [searcher.suggest(i) for i in ids]
            assert searcher.suggest(f"t{batch}c") is None  # the batch is full until both are told
            drawn += configs
            for i in order_within_batch(ids):
                c = configs[ids.index(i)]
                searcher.on_trial_complete(i, {"objective": 50 + 10 * c[f"{c['scheme']}.c"], "config": c})
        return drawn

    in_order = run(lambda ids: ids)
    assert in_order == run(lambda ids: ids[::-1])
    assert len({str(c) for c in in_order}) == 16
