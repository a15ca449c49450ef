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
    per_cell = 1 + (cfg.tune.n_candidates if cfg.tune else 0)  # a tuned grid: its candidates, then the row
    assert len(trials) * per_cell == len(cfg.schemes) * len(cfg.combinations()) * per_cell == cfg.n_trials
    assert len({t.name for t in trials}) == len(trials)
    if cfg.tune and cfg.tune.candidates() is not None:  # a range: Optuna draws them as the sweep runs
        assert all(t.seeds == cfg.tune.seeds and t.stage == "tune" for t in cfg.tuning_trials())
    for t in trials:  # the shared train section, but for a grid's train axes (an lr-transfer study's train.lr)
        axes = {k.split(".", 1)[1]: v for k, v in t.axes.items() if k.startswith("train.")}
        assert t.seeds == cfg.seeds and t.train == cfg.train.model_copy(update=axes)
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
    ({"data": {"dataset": "cifar10"}}, "data.dataset: unknown dataset 'cifar10' (valid: fashion_mnist, fortunes, text"),
    ({"data": {"limit": 70000}}, "data.limit: 70000 is more than the 60000 images"),
    ({"data": {"limit": 1}}, "data.limit: 1 images leave 1 train and 0 validation images (val_fraction 0.2); each"),
    ({"data": {"limit": 30}}, "data.limit: 30 images leave 24 train and 6 validation images"),
    ({"data": {"val_fraction": 0.9999}}, "data.val_fraction: 60000 images leave 6 train and 59994 validation images"),
    ({"data": {"limit": 100}}, "data.limit: 100 images leave 80 train images (val_fraction 0.2), fewer than one batch"),
    ({"data": {"limit": 5000, "val_fraction": 0.99}}, "data.val_fraction: 5000 images leave 50 train images"),
    ({"train": {"batch_size": 50000}}, "train.batch_size: 60000 images leave 48000 train images (val_fraction 0.2)"),
    ({"data": {"split_seed": -1}}, "data.split_seed: input should be greater than or equal to 0 (got -1)"),
    ({"data": {"split_seed": 2**63}}, "data.split_seed: 9223372036854775808 is out of range"),
    ({"seeds": [0, 2**63]}, "seeds.1: 9223372036854775808 is out of range (numbers here fit in 64 bits)"),
    ({"seeds": [-2]}, "seeds: seeds must be >= 0 and <= 9223372036854775807 (2**63 - 1) (got -2)"),
    ({"train": {"epochs": 10**30}}, "train.epochs: 1000000000000000000000000000000 is out of range"),
    ({"train": {"epochs": 10**5000}}, "train.epochs: <an integer of 5001 digits> is out of range"),
    ({"train": {"lr": float("nan")}}, "train.lr: nan is not a finite number"),
    ({"train": {"momentum": "nan"}}, "train.momentum: input should be a finite number (got 'nan')"),
    ({"init": {"bias": "constant", "bias_value": float("-inf")}}, "init.bias_value: -inf is not a finite number"),
    ({"schemes": [{"scheme": "normal", "std": float("inf")}]}, "schemes.0.std: inf is not a finite number"),
    ({"schemes": [{"scheme": "uniform", "low": [0]}]}, "schemes.0.low: [0] is not a number or a name"),
    ({"schemes": [{"scheme": "uniform", 1: 0}]}, "schemes.0.1: not a parameter name (a string)"),
    ({"model": {"hidden": [256, 0]}}, "model.hidden.1: input should be greater than 0 (got 0)"),
    ({"model": {"depth": 2, "width": 0}}, "model.width: input should be greater than 0 (got 0)"),
    ({"model": {"depth": 0}}, "model.depth: input should be greater than 0 (got 0)"),
    ({"model": {"depth": 1001}}, "model.depth: input should be less than or equal to 1000 (got 1001)"),
    ({"model": {"dropout": float("nan")}}, "model.dropout: nan is not a finite number"),
    ({"model": {"name": "cnn", "channels": [8, 0]}}, "model.channels.1: input should be greater than 0 (got 0)"),
    ({"model": {"name": "cnn", "hidden": 0}}, "model.hidden: input should be greater than 0 (got 0)"),
    ({"model": {"name": "cnn", "channels": [4] * 5}}, "model.channels: 5 conv blocks (each halving the image) shrink"),
    ({"model": {"name": [1]}}, "model: input tag '[1]' found using 'name' does not match any of the expected tags"),
    ({"report": {"level": 1.0}}, "report.level: input should be less than 1 (got 1.0)"),
    (
        {"report": {"reference": {"values": {"uniform_fan_in(c=1)": {"run A": float("nan")}}}}},
        "report.reference.values.uniform_fan_in(c=1).run A: nan is not a finite number",
    ),
    ({"grid": {1: [2]}}, "grid.1: keys should be strings (got 1)"),
    ({"name": None}, "name: input should be a valid string (got None)"),
    ({"name": b"\xff"}, "name: input should be a valid string, unable to parse raw data as a unicode string"),
    ({"x\ny": 1}, "x\\ny: unknown key"),
    ({"init": {"bias": "ones"}}, "init.bias: input should be 'zeros', 'constant', 'normal' or 'default'"),
    ({"init": {"bias_value": 0.1}}, "init.bias_value: only used with bias: constant"),
    ({"init": {"bias_std": 0.1}}, "init.bias_std: only used with bias: normal"),
    ({"init": {"bias": "normal", "bias_std": -0.1}}, "init.bias_std: input should be greater than or equal to 0"),
    (
        {"schemes": [{"scheme": "critical"}], "model": {"activation": "gelu"}},
        "schemes.0.weight_variance: 'auto' has no edge of chaos here: gelu has no critical",
    ),
    (
        {"schemes": [{"scheme": "critical"}], "init": {"bias": "default"}},
        "schemes.0.weight_variance: 'auto' needs init.bias zeros, constant or normal",
    ),
    (
        {"schemes": [{"scheme": "critical"}], "grid": {"model.activation": ["tanh", "gelu"]}},
        "schemes.0.weight_variance: 'auto' has no edge of chaos here",
    ),
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
    ({"seed": 2**32}, "search.seed: input should be less than or equal to 4294967295 (got 4294967296)"),
    ({"seed": -1}, "search.seed: input should be greater than or equal to 0 (got -1)"),
    ({"schemes": {"uniform": {"low": [float("nan"), 1]}}}, "search.schemes.uniform.low.0: nan is not a finite number"),
    ({"schemes": {"uniform": {"low": [0, 2**64]}}}, "search.schemes.uniform.low.1: 18446744073709551616 is out of"),
    ({"sampler": "cmaes"}, "search.sampler: input should be 'tpe', 'random' or 'qmc'"),
    ({"params": {"model.width": [64]}}, "search.params.model.width: not a tunable setting"),
    ({"params": {"init.bias_std": {"low": 0, "high": 0.5}}}, "search.params.init.bias_std: only used with bias"),
    ({"params": {"init.bias_std": {"low": 0.5, "high": 0.1}}}, "search.params.init.bias_std.low: 0.5 must be below"),
    ({"params": {"train.lr": []}}, "search.params.train.lr: needs at least one value"),
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


def test_missing_keys_and_junk_that_is_no_config():
    with pytest.raises(ConfigError, match=r"^name: missing \(a required key\)$"):
        parse_config({k: v for k, v in GOOD.items() if k != "name"})
    with pytest.raises(ConfigError, match=r"^config: expected a mapping of keys, got list$"):
        parse_config([GOOD])
    cycle = [0]
    cycle.append(cycle)
    with pytest.raises(ConfigError, match=r"^config: more than 100000 values \(each YAML alias counted"):
        parse_config(GOOD | {"seeds": cycle})
    deep: list = [1]
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(ConfigError, match=r"^grid\.model\.hidden\.0: input should be a valid integer \(got \[\[\["):
        parse_config(GOOD | {"grid": {"model.hidden": [deep]}})


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
    "content,message",
    [
        (b"name: \xff\n", "not UTF-8 text (invalid start byte: byte 6)"),
        (b"", "empty config file (no keys)"),
        (b"# only a comment\n", "empty config file (no keys)"),
        (b"name: a\x00b\n", "not valid YAML at character 7: special characters are not allowed (#x0000)"),
        (b"seeds: [" + b"1" * 5000 + b"]\n", "not valid YAML: Exceeds the limit (4300 digits) for integer string"),
        (b"seeds: " + b"[" * 5000 + b"]" * 5000, "not valid YAML: nested too deeply"),
        (b"a: &a [*a]\n", None),  # a cycle: "config: more than 100000 values"
    ],
)
def test_files_that_are_no_yaml_mapping(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    expected = f"{path}: {message}" if message else "config: more than 100000 values"
    assert str(err.value).startswith(expected), str(err.value)


def test_a_directory_is_no_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r": is a directory, not a config file$"):
        load_config(tmp_path)


def test_yaml_nan_and_inf_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\nseeds: [0]\nschemes: [constant]\ntrain: {lr: .nan}\n")
    with pytest.raises(ConfigError, match=r"^train\.lr: nan is not a finite number$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^model\.dropout: inf is not a finite number$"):
        load_config(SWEEPS / "smoke.yaml", ["model.dropout=.inf"])


@pytest.mark.parametrize(
    "assignment,message",
    [
        ("train.epochs", "--set train.epochs: expected KEY=VALUE"),
        ("schemes.9.c=1", "schemes.9: no such list item (has 1)"),
        ("name.x=1", "name: is not a mapping, cannot set name.x"),
        ("train..lr=1", "--set train..lr=1: 'train..lr' is not a dotted key path (an empty part)"),
        ("schemes.²=1", "schemes.²: no such list item (has 1)"),
        ("train.epochs=" + "9" * 5000, "train.epochs: cannot read '9999"),
        ("seeds=" + "[" * 5000, "seeds: cannot read '[[[["),
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


def test_grid_axes_may_vary_train_and_init_keys_and_keep_the_rest():
    cfg = parse_config(GOOD | {"grid": {"train.lr": [0.1, 0.01], "init.bias": ["default"]}})
    seen = {(t.train.lr, t.init.bias, t.name.split(" ", 1)[1]) for t in cfg.trials()}
    assert seen == {(0.1, "default", "lr=0.1 bias=default"), (0.01, "default", "lr=0.01 bias=default")}
    assert cfg.n_trials == 2 * len(cfg.schemes)
    assert all(t.train.optimizer == cfg.train.optimizer for t in cfg.trials())


def test_a_dumped_grid_sweep_reloads_to_the_same_trials():
    """MLflow keeps sweep.yaml (every key, in order); the report is rebuilt from it."""
    cfg = parse_config(STUDY | {"model": {"depth": 3, "dropout": 0.0}})
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)))
    assert again.trials() == cfg.trials()


def test_set_reaches_a_grid_axis():
    cfg = load_config(SWEEPS / "depth_study.yaml", ["grid.model.depth=[2, 3]", "grid.model.activation=[tanh]"])
    assert cfg.grid == {"model.depth": [2, 3], "model.activation": ["tanh"]}
    assert cfg.n_trials == 2 * 5 * (3 + 1)  # combinations x rows x (3 lr candidates, then the judged trial)


@pytest.mark.parametrize(
    "grid,message",
    [
        ({"model.dept": [2]}, "grid.model.dept: unknown key"),
        ({"seeds": [[1]]}, "grid.seeds: not a setting under model, train, init"),
        ({"model": [{"depth": 2}]}, "grid.model: not a setting under model, train, init"),
        ({"model.depth": []}, "grid.model.depth: needs at least one value"),
        ({"model.depth": [2, 2]}, "grid.model.depth: 2 appears twice"),
        ({"model.depth": [4, 0]}, "grid.model.depth: input should be greater than 0 (got 0)"),
        ({"model.activation": ["swish"]}, "grid.model.activation: input should be 'relu', 'tanh'"),
        ({"train.lr": [-1]}, "grid.train.lr: input should be greater than 0 (got -1)"),
        ({"model.depth": 4}, "grid.model.depth: input should be a valid list (got 4)"),
        ({"model.depth": [2, float("nan")]}, "grid.model.depth.1: nan is not a finite number"),
        ({"train.lr": [float("inf")]}, "grid.train.lr.0: inf is not a finite number"),
        ({"model.width": [64, 0]}, "grid.model.width: input should be greater than 0 (got 0)"),
        ({"model.hidden": [[8, 0]]}, "grid.model.hidden.1: input should be greater than 0 (got 0)"),
        ({"data.limit": [2000, 30]}, "grid.data.limit: the data loads once per sweep; run one sweep per data setting"),
        ({"train.batch_size": [100, 50000]}, "grid.train.batch_size: 60000 images leave 48000 train images"),
        ({"model.depth": list(range(1, 101)), "model.width": list(range(1, 101))}, "grid: 30000 trials (rows x"),
    ],
)
def test_bad_grid_axes_name_the_axis(grid, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        parse_config(STUDY | {"grid": grid})


def test_a_cnn_grid_checks_the_conv_blocks_per_trial():
    cnn = STUDY | {"model": {"name": "cnn"}, "grid": {"model.channels": [[8], [8] * 4, [8] * 5]}}
    with pytest.raises(ConfigError, match=r"^grid\.model\.channels: 5 conv blocks .* at most 4 fit$"):
        parse_config(cnn)


def test_grid_axes_must_fit_the_model_and_the_sweep_kind():
    with pytest.raises(ConfigError, match=r"^grid\.model\.depth: unknown key"):
        parse_config(STUDY | {"model": {"name": "cnn"}, "grid": {"model.depth": [2]}})
    search = {"search": {"schemes": {"orthogonal": {}}, "n_trials": 2}}
    with pytest.raises(ConfigError, match=r"^grid: crosses `schemes` rows; a search sweep cannot have grid axes"):
        parse_config({k: v for k, v in STUDY.items() if k != "schemes"} | search)
