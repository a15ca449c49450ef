"""Config parsing: the shipped sweeps load, overrides apply, and every bad input is one clear line."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from initsweep.config import ConfigError, apply_override, load_config, parse_config

SWEEPS = Path(__file__).parents[1] / "sweeps"
GOOD = {"name": "t", "seeds": [0, 1], "schemes": [{"scheme": "uniform_fan_in", "c": 1}]}


def test_seed_table_is_the_founding_experiment():
    cfg = load_config(SWEEPS / "seed_table.yaml")
    assert cfg.seeds == [0, 1, 2, 3, 4]
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == ("adam", 1e-3, 100, 2)
    assert (cfg.model.name, cfg.model.hidden, cfg.model.activation, cfg.model.dropout) == (
        "mlp",
        [256, 128],
        "relu",
        0.2,
    )
    assert cfg.data.val_fraction == 0.2 and cfg.data.limit is None and not cfg.data.normalize
    assert cfg.init.bias == "zeros"
    rows = [(r.scheme, r.params) for r in cfg.schemes]
    assert rows[:7] == [
        ("constant", {"value": 0.0}),
        ("constant", {"value": 1.0}),
        ("uniform", {"low": 0.0, "high": 1.0}),
        ("uniform", {"low": -0.5, "high": 0.5}),
        ("uniform_fan_in", {"c": 1.0}),
        ("normal_fan_in", {"c": 1.0}),
        ("pytorch_default", {}),
    ]
    assert rows[7] == ("xavier_uniform", {"gain": pytest.approx(2**0.5)})
    assert rows[8] == ("kaiming_uniform", {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"})


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    if cfg.search is not None:
        assert cfg.n_trials == cfg.search.n_trials and set(cfg.search.space()) == set(cfg.search.schemes)
        return
    trials = cfg.trials()
    assert len(trials) == len(cfg.schemes) * len(cfg.combinations()) == cfg.n_trials
    assert len({t.name for t in trials}) == len(trials)
    assert all(t.seeds == cfg.seeds and t.train == cfg.train for t in trials)
    assert all(t.model == cfg.model for t in trials if not t.axes)


def test_rows_get_the_schemes_defaults_and_a_readable_name():
    cfg = parse_config(
        GOOD | {"schemes": ["lsuv", {"scheme": "uniform", "low": -0.5, "high": 0.5, "label": "centered"}]}
    )
    assert cfg.schemes[0].params == {"tol": 0.1, "max_iter": 10} and cfg.schemes[0].name == "lsuv(tol=0.1, max_iter=10)"
    assert cfg.schemes[1].name == "centered"


def test_overrides_by_dotted_path():
    cfg = load_config(
        SWEEPS / "seed_table.yaml", ["train.epochs=1", "data.limit=6000", "schemes.1.value=0.5", "seeds=[7]"]
    )
    assert cfg.train.epochs == 1 and cfg.data.limit == 6000 and cfg.schemes[1].params == {"value": 0.5}
    assert cfg.seeds == [7]


def test_model_name_defaults_to_mlp():
    assert parse_config(GOOD | {"model": {"hidden": [32]}}).model.hidden == [32]


BAD = [
    # (change to GOOD, expected start of the one-line message)
    ({"seedz": [1]}, "seedz: unknown key"),
    ({"train": {"lr": 0}}, "train.lr: input should be greater than 0 (got 0)"),
    ({"train": {"lr": -1e-3}}, "train.lr: input should be greater than 0"),
    ({"train": {"epochs": "two"}}, "train.epochs: input should be a valid integer"),
    ({"train": {"optimizer": "lbfgs"}}, "train.optimizer: input should be 'adam' or 'sgd'"),
    ({"train": {"batchsize": 10}}, "train.batchsize: unknown key"),
    ({"seeds": []}, "seeds: list should have at least 1 item"),
    ({"seeds": [1, 1]}, "seeds: seed 1 appears twice"),
    ({"seeds": [-1]}, "seeds: seeds must be >= 0"),
    ({"schemes": []}, "schemes: list should have at least 1 item"),
    ({"schemes": [{"scheme": "he"}]}, "schemes.0.scheme: unknown scheme 'he' (valid: constant"),
    ({"schemes": [{"c": 1}]}, "schemes.0.scheme: missing"),
    (
        {"schemes": [{"scheme": "uniform_fan_in", "gain": 2}]},
        "schemes.0.gain: not a parameter of scheme 'uniform_fan_in'",
    ),
    ({"schemes": [{"scheme": "uniform", "low": 1, "high": 0}]}, "schemes.0: low (1.0) must be below high (0.0)"),
    ({"schemes": [{"scheme": "normal", "std": 0}]}, "schemes.0.std: 0 is outside its domain (0.0, inf]"),
    ({"model": {"name": "resnet"}}, "model: input tag 'resnet' found using 'name' does not match"),
    ({"model": {"name": "mlp", "hidden": [256], "dropout": 1.0}}, "model.dropout: input should be less than 1"),
    ({"model": {"name": "cnn", "hidden": [256]}}, "model.hidden: input should be a valid integer"),
    ({"data": {"dataset": "cifar10"}}, "data.dataset: unknown dataset 'cifar10' (valid: fashion_mnist)"),
    ({"data": {"limit": 70000}}, "data.limit: 70000 is more than the 60000 images"),
    ({"data": {"limit": 1}}, "data.limit: 1 images leave an empty train or validation split"),
    ({"init": {"bias": "ones"}}, "init.bias: input should be 'zeros', 'constant' or 'default'"),
    ({"init": {"bias_value": 0.1}}, "init.bias_value: only used with bias: constant"),
    ({"name": ""}, "name: string should have at least 1 character"),
    ({"search": {"n_trials": 2, "schemes": {"uniform_fan_in": {}}}}, "schemes: give either `schemes` (a grid) or"),
    ({"objective": {"metric": "test_accuracy"}}, "objective.metric: input should be 'val_accuracy'"),
    ({"objective": {"metric": "val_accuracy_train_mode"}}, "objective.metric: val_accuracy_train_mode needs"),
    ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial: input should be greater than 0"),
    ({"resources": {"gpus_per_trial": -1}}, "resources.gpus_per_trial: input should be greater than or equal to 0"),
    ({"scheduler": "hyperband"}, "scheduler.kind: input should be 'fifo' or 'asha'"),
    ({"scheduler": {"kind": "asha", "grace_period": 5}}, "scheduler.grace_period: more than train.epochs (2)"),
]

SEARCH = {"name": "s", "seeds": [0], "search": {"n_trials": 3, "schemes": {"uniform_fan_in": {}}}}
BAD_SEARCH = [
    ({"schemes": {"he": {}}}, "search.schemes.he: unknown scheme 'he'"),
    ({"schemes": {"uniform_fan_in": {"gain": [1, 2]}}}, "search.schemes.uniform_fan_in.gain: not a parameter"),
    ({"schemes": {"uniform_fan_in": {"c": [-1, 2]}}}, "search.schemes.uniform_fan_in.c: range [-1, 2]: -1 is outside"),
    ({"schemes": {"uniform_fan_in": {"c": [2, 1]}}}, "search.schemes.uniform_fan_in.c: range [2, 1]: low must"),
    ({"schemes": {"uniform": {"low": [0, 1, 2]}}}, "search.schemes.uniform.low: expected [low, high]"),
    ({"schemes": {"kaiming_normal": {"mode": ["fan_avg"]}}}, "search.schemes.kaiming_normal.mode: choices ['fan_avg']"),
    ({"schemes": {"normal": {"mean": [0, 1], "std": -1}}}, "search.schemes.normal.std: -1 is outside its domain"),
    ({"n_trials": 0}, "search.n_trials: input should be greater than 0"),
    ({"sampler": "cmaes"}, "search.sampler: input should be 'tpe', 'random' or 'qmc'"),
]


@pytest.mark.parametrize(
    "change,message", BAD_SEARCH, ids=[f"{m.split(':')[0]}-{i}" for i, (_, m) in enumerate(BAD_SEARCH)]
)
def test_bad_search_section_names_the_parameter(change, message):
    raw = copy.deepcopy(SEARCH)
    raw["search"].update(change)
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_config_is_one_line_naming_the_key(change, message):
    raw = copy.deepcopy(GOOD)
    for key, value in change.items():
        raw[key] = value
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nseeds: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line 3"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match=r"scalar.yaml: expected a mapping of keys, got int"):
        load_config(scalar)


@pytest.mark.parametrize(
    "assignment,message",
    [
        ("train.epochs", "--set train.epochs: expected KEY=VALUE"),
        ("schemes.9.c=1", "schemes.9: no such list item (has 1)"),
        ("name.x=1", "name: is not a mapping, cannot set name.x"),
    ],
)
def test_bad_override(assignment, message):
    with pytest.raises(ConfigError) as err:
        apply_override(copy.deepcopy(GOOD), assignment)
    assert str(err.value).startswith(message)


STUDY = GOOD | {
    "model": {"dropout": 0.0},
    "schemes": [{"scheme": "uniform_fan_in", "c": 1}, "xavier_uniform", "kaiming_normal"],
    "grid": {"model.depth": [2, 4, 32], "model.activation": ["relu", "tanh"]},
}


def test_grid_crosses_every_row_with_every_combination():
    cfg = parse_config(STUDY)
    trials = cfg.trials()
    assert cfg.n_trials == len(trials) == 3 * 3 * 2
    combos = [(t.axes["model.depth"], t.axes["model.activation"]) for t in trials]
    assert combos == [(d, a) for d in (2, 4, 32) for a in ("relu", "tanh") for _ in range(3)]  # first axis slowest
    for t in trials:
        assert t.model.hidden == [256] * t.axes["model.depth"] and t.model.activation == t.axes["model.activation"]
        assert t.model.dropout == 0.0 and t.seeds == cfg.seeds
    assert trials[0].name == "uniform_fan_in(c=1) depth=2 activation=relu"
    assert trials[-1].name == "kaiming_normal(a=0, mode=fan_in, nonlinearity=auto) depth=32 activation=tanh"


def test_auto_gains_resolve_per_trial_for_its_activation():
    trials = parse_config(STUDY).trials()
    xavier = {t.axes["model.activation"]: t.row for t in trials if t.row.scheme == "xavier_uniform"}
    assert xavier["relu"].params == {"gain": pytest.approx(2**0.5)}
    assert xavier["tanh"].params == {"gain": pytest.approx(5 / 3)}
    assert xavier["tanh"].name == "xavier_uniform(gain=auto)"  # the row's name; the params say what ran
    kaiming = {t.axes["model.activation"]: t.row for t in trials if t.row.scheme == "kaiming_normal"}
    assert kaiming["tanh"].params["nonlinearity"] == "tanh"


def test_grid_axes_may_vary_train_and_data_keys_and_keep_the_rest():
    cfg = parse_config(GOOD | {"grid": {"train.lr": [0.1, 0.01], "data.limit": [2000]}})
    seen = {(t.train.lr, t.data.limit, t.name.split(" ", 1)[1]) for t in cfg.trials()}
    assert seen == {(0.1, 2000, "lr=0.1 limit=2000"), (0.01, 2000, "lr=0.01 limit=2000")}
    assert cfg.n_trials == 2 * len(cfg.schemes)
    assert all(t.train.optimizer == cfg.train.optimizer for t in cfg.trials())


def test_a_dumped_grid_sweep_reloads_to_the_same_trials():
    """MLflow keeps sweep.yaml (every key, in order); the report is rebuilt from it."""
    cfg = parse_config(STUDY | {"model": {"depth": 3, "dropout": 0.0}})
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)))
    assert again.trials() == cfg.trials()


def test_set_reaches_a_grid_axis():
    cfg = load_config(SWEEPS / "depth_study.yaml", ["grid.model.depth=[2, 3]", "grid.model.activation=[tanh]"])
    assert cfg.grid == {"model.depth": [2, 3], "model.activation": ["tanh"]} and cfg.n_trials == 2 * 6


@pytest.mark.parametrize(
    "grid,message",
    [
        ({"model.dept": [2]}, "grid.model.dept: unknown key"),
        ({"seeds": [[1]]}, "grid.seeds: not a setting under data, model, train, init"),
        ({"model": [{"depth": 2}]}, "grid.model: not a setting under data, model, train, init"),
        ({"model.depth": []}, "grid.model.depth: needs at least one value"),
        ({"model.depth": [2, 2]}, "grid.model.depth: 2 appears twice"),
        ({"model.depth": [4, 0]}, "grid.model.depth: input should be greater than 0 (got 0)"),
        ({"model.activation": ["swish"]}, "grid.model.activation: input should be 'relu', 'tanh'"),
        ({"train.lr": [-1]}, "grid.train.lr: input should be greater than 0 (got -1)"),
        ({"model.depth": 4}, "grid.model.depth: input should be a valid list (got 4)"),
    ],
)
def test_bad_grid_axes_name_the_axis(grid, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        parse_config(STUDY | {"grid": grid})


def test_grid_axes_must_fit_the_model_and_the_sweep_kind():
    with pytest.raises(ConfigError, match=r"^grid\.model\.depth: unknown key"):
        parse_config(STUDY | {"model": {"name": "cnn"}, "grid": {"model.depth": [2]}})
    search = {"search": {"schemes": {"orthogonal": {}}, "n_trials": 2}}
    with pytest.raises(ConfigError, match=r"^grid: crosses `schemes` rows; a search sweep cannot have grid axes"):
        parse_config({k: v for k, v in STUDY.items() if k != "schemes"} | search)
