"""Your network, your data: models and datasets by import path, registration and entry point; the layers
a scheme initializes (`init.layers`, `init.overrides`); bad user code as one line, exit 2, before Ray;
and the examples in examples/ end to end through Ray and MLflow at test size."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import uuid

import pytest
import torch
import yaml
from conftest import ROOT, cli_main, mlflow_runs, run_cli
from torch import nn
from user_modules import BROKEN, DATA, MODELS

from initsweep.catalog.datasets import REGISTERED_DATASETS
from initsweep.catalog.models import REGISTERED_MODELS
from initsweep.config import ConfigError, InitConfig, parse_config
from initsweep.engine.data import lineage, load_configured, load_raw
from initsweep.engine.diagnostics import init_diagnostics
from initsweep.engine.models import build_model, check_sweep
from initsweep.engine.schemes import apply_scheme, fan_in, plan_init
from initsweep.tracking import _flat_params

BASE = {"name": "user", "seeds": [0], "data": {"limit": 300}, "train": {"epochs": 1}, "schemes": ["xavier_uniform"]}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """tmp_path as the working folder, holding this test's own copies of the user modules (fresh names, so
    that no test sees another's imports): returns {'models': name, 'data': name, 'broken': name}."""
    tag = uuid.uuid4().hex[:8]
    names = {"models": f"models_{tag}", "data": f"data_{tag}", "broken": f"broken_{tag}"}
    for kind, source in (("models", MODELS), ("data", DATA), ("broken", BROKEN)):
        (tmp_path / f"{names[kind]}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])  # as `python sweeps/run.py` will, in main
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what the CLI sets stays in this test
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return names


def _model(names, factory, **more):
    return {"model": {"name": "import", "target": f"{names['models']}:{factory}", **more}}


def _data(names, loader, **more):
    return {"data": {"dataset": "import", "target": f"{names['data']}:{loader}", **more}}


# (config changes, given the modules' names -> the start of the error line)
CASES = [
    (lambda n: _model(n, "mlp") | {"model": {"target": "no_such_module_xyz:build"}}, "model.target: no module named"),
    (lambda n: {"model": {"target": f"{n['broken']}:build"}}, "model.target: importing 'broken_"),
    (lambda n: _model(n, "nope"), "model.target: 'models_TAG' has no attribute 'nope'"),
    (lambda n: _model(n, "VALUE"), "model.target: models_TAG:VALUE is a int, not a function"),
    (lambda n: _model(n, "raises"), "model.target: building the model raised ValueError: width must be even"),
    (lambda n: _model(n, "mlp", kwargs={"widht": 3}), "model.target: building the model raised TypeError: mlp() got"),
    (lambda n: _model(n, "not_a_module"), "model.target: the factory returned a int, not a torch.nn.Module"),
    (
        lambda n: _model(n, "wrong_output"),
        "model.target: the output on a batch of shape (64, 1, 28, 28) is (64, 5); expected (64, 10)",
    ),
    (lambda n: _model(n, "bad_forward"), "model.target: one batch of shape (64, 1, 28, 28) fails in forward"),
    (lambda n: {"model": {"target": "not an import path"}}, "model.target: 'not an import path' is not an import"),
    (lambda n: {"model": {"name": "import"}}, "model.target: missing (name: import needs target"),
    (lambda n: {"model": {"name": "resnet"}}, "model: input tag 'resnet' found using 'name' does not match"),
    (lambda n: _data(n, "three"), "data.target: the loader returned 3 values; expected 4: (x_train, y_train"),
    (lambda n: _data(n, "short_labels"), "data.target: y_train has shape (299,); expected (300,), a label per"),
    (lambda n: _data(n, "float_labels"), "data.target: y_train should be integer class labels, not torch.float64"),
    (lambda n: _data(n, "label_out_of_range"), "data.target: y_test has label 12, outside 0..9 (the classes of"),
    (lambda n: _data(n, "negative_label"), "data.target: y_train has label -1, outside 0..9"),
    (lambda n: _data(n, "raises"), "data.target: the loader raised OSError: no such file: digits.npz"),
    (lambda n: _data(n, "nope"), "data.target: 'data_TAG' has no attribute 'nope'"),
    (lambda n: _data(n, "load", limit=5000), "data.limit: 5000 is more than the 300 images of data_TAG:load"),
    (lambda n: _data(n, "load", limit=30), "data.limit: 30 images leave 24 train and 6 validation images"),
    (
        lambda n: _data(n, "load", limit=None) | {"train": {"batch_size": 500}},
        "train.batch_size: 300 images leave 240 train images (val_fraction 0.2), fewer than one batch of 500",
    ),
    (lambda n: {"data": {"dataset": "import"}}, "data.target: missing (dataset: import needs target"),
    (
        lambda n: _model(n, "net") | {"init": {"overrides": [{"match": "*.bn2", "scheme": "constant"}]}},
        "init.overrides.0.match: '*.bn2' matches no layer with weights (conv, bn, up, norm, fc)",
    ),
    (
        lambda n: {"init": {"layers": {"include": ["conv*"]}}},
        "init.layers.include.0: 'conv*' matches no Linear/Conv1d/Conv2d/Conv3d layer (those are: 1, 4, 7)",
    ),
    (
        lambda n: {"init": {"layers": {"exclude": ["fc"]}}},
        "init.layers.exclude.0: 'fc' matches no Linear/Conv1d/Conv2d/Conv3d layer",
    ),
    (
        lambda n: {"init": {"layers": {"types": ["Embedding"]}}},
        "init.layers: selects no layer of the model (its layers with weights: 1, 4, 7)",
    ),
    (lambda n: {"init": {"layers": {"types": ["LSTM"]}}}, "init.layers.types.0: input should be 'Linear', 'Conv1d'"),
    (
        lambda n: _model(n, "net") | {"init": {"overrides": [{"match": "bn", "scheme": "xavier_uniform"}]}},
        "init.overrides.0 (xavier_uniform on bn): cannot initialize a weight of shape (4,) (Fan in and fan out",
    ),
    (
        lambda n: {"init": {"overrides": [{"match": "fc", "scheme": "constant", "value": [1]}]}},
        "init.overrides.0.value: [1] is not a number or a name",
    ),
    (
        lambda n: {"init": {"overrides": [{"match": "*", "scheme": "lsuv"}]}},
        "init.overrides.0.scheme: lsuv works on the whole model; a rule takes a per-layer scheme",
    ),
]


def _config(user_dir, change) -> dict:
    raw = json.loads(json.dumps(BASE))
    for key, value in change(user_dir).items():
        raw[key] = (raw.get(key) or {}) | value if isinstance(value, dict) else value
        raw[key] = {k: v for k, v in raw[key].items() if v is not None} if isinstance(raw[key], dict) else raw[key]
    return raw


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("change,message", CASES, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(CASES)])
def test_bad_user_code_is_one_line_exit_2_before_ray(user_dir, tmp_path, capsys, change, message, dry_run):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(_config(user_dir, change)))
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = cli_main()(["sweep.yaml", "--storage-path", str(tmp_path / "storage")] + (["--dry-run"] * dry_run))
    finally:
        load_raw.cache_clear()
    out, err = capsys.readouterr()
    tag = user_dir["models"].split("_")[1]
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and err.startswith(f"error: {message.replace('TAG', tag)}"), err
    assert out == ""
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__")
    assert after == before  # no mlflow.db, mlruns, storage, report


def test_dry_run_lists_the_layers_the_init_touches(user_dir, tmp_path, capsys):
    rules = [{"match": "bn", "scheme": "constant", "value": 0.5}, {"match": "up", "scheme": "pytorch_default"}]
    change = _model(user_dir, "net") | {"init": {"layers": {"types": ["Conv2d", "Linear"]}, "overrides": rules}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(_config(user_dir, lambda _: change)))
    assert cli_main()(["sweep.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "init touches 4 layers (init.layers: Conv2d,Linear):" in out
    assert "  conv Conv2d weight (4, 1, 3, 3): the scheme\n" in out
    assert "  bn BatchNorm2d weight (4): init.overrides.0 bn=constant(value=0.5)\n" in out
    assert "  up ConvTranspose2d weight (4, 2, 2, 2): init.overrides.1 up=pytorch_default\n" in out
    assert "  fc Linear weight (10, 6272): the scheme\n" in out and " norm " not in out


def _net(user_dir) -> nn.Module:
    cfg = parse_config(BASE | _model(user_dir, "net")).model
    return build_model(cfg, (1, 28, 28), 10)


def test_layer_selection_by_type_and_name_and_the_last_rule_wins(user_dir):
    model = _net(user_dir)
    default = plan_init(model)
    assert [name for name, _ in default.layers] == ["conv", "fc"]  # today's: Linear and Conv
    init = InitConfig.model_validate(
        {
            "layers": {"types": ["Conv2d", "ConvTranspose2d", "Linear"], "exclude": ["fc"]},
            "overrides": [
                {"match": "*n*", "scheme": "constant", "value": 2.0},  # bn, norm, conv
                {"match": "conv", "scheme": "constant", "value": 3.0},  # a later rule wins
            ],
        }
    )
    plan = plan_init(model, init)
    assert [name for name, _ in plan.layers] == ["up"]
    assert {k: (i, r.params["value"]) for k, (i, r) in plan.overrides.items()} == {
        "conv": (1, 3.0),
        "bn": (0, 2.0),
        "norm": (0, 2.0),
    }
    apply_scheme(model, "normal", {"std": 0.01}, seed=0, init=init)
    assert torch.all(model.conv.weight == 3.0) and torch.all(model.bn.weight == 2.0) and torch.all(model.bn.bias == 0)
    assert torch.all(model.norm.weight == 2.0) and 0.005 < model.up.weight.std() < 0.015
    assert model.fc.weight.std() > 0.0 and model.fc.bias.abs().sum() > 0  # excluded: its own init, bias too


def test_normalization_layers_keep_weight_one_and_bias_zero_unless_a_rule_names_them(user_dir):
    model = _net(user_dir)
    with torch.no_grad():
        model.bn.weight.fill_(7.0)
        model.norm.bias.fill_(7.0)
    apply_scheme(model, "constant", {"value": 0.5}, seed=1)
    assert torch.all(model.bn.weight == 1.0) and torch.all(model.bn.bias == 0.0)
    assert torch.all(model.norm.weight == 1.0) and torch.all(model.norm.bias == 0.0)
    assert torch.all(model.conv.weight == 0.5) and torch.all(model.fc.weight == 0.5)


def test_the_same_seed_gives_the_same_network_whatever_the_rules(user_dir):
    init = InitConfig.model_validate({"overrides": [{"match": "bn", "scheme": "uniform", "low": 0.5, "high": 1.5}]})
    a, b = _net(user_dir), _net(user_dir)
    apply_scheme(a, "kaiming_normal", {"nonlinearity": "relu"}, seed=7, init=init)
    apply_scheme(b, "kaiming_normal", {"nonlinearity": "relu"}, seed=7, init=init)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert a.bn.weight.min() >= 0.5 and a.bn.weight.max() < 1.5 and a.bn.weight.std() > 0


@pytest.mark.parametrize(
    "layer,expected",
    [
        (nn.Linear(30, 20), 30),
        (nn.Conv2d(6, 8, (3, 5)), 6 * 15),
        (nn.Conv2d(6, 8, 3, groups=2), 3 * 9),
        (nn.ConvTranspose2d(6, 8, 3), 8 * 9),  # torch's convention: weight (in, out/groups, k, k), dim 1 times k
        (nn.ConvTranspose1d(6, 8, 3, groups=2), 4 * 3),
        (nn.Embedding(50, 16), 16),
    ],
)
def test_fans_follow_torch_for_every_layer_type(layer, expected):
    assert fan_in(layer.weight) == expected == nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
    types = {"types": [type(layer).__name__]}
    apply_scheme(nn.Sequential(layer), "uniform_fan_in", {"c": 1.0}, seed=0, init=InitConfig(layers=types))
    assert layer.weight.abs().max() <= 1 / math.sqrt(expected)
    assert layer.weight.abs().max() > 0.9 / math.sqrt(expected)


def test_embedding_padding_row_stays_zero():
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(4, 3))
    apply_scheme(model, "normal", {"std": 1.0}, seed=0, init=InitConfig(layers={"types": ["Embedding", "Linear"]}))
    assert torch.all(model[0].weight[0] == 0) and model[0].weight[1:].std() > 0.5


def test_diagnostics_and_lsuv_work_on_any_model(user_dir):
    model = _net(user_dir)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    init = InitConfig.model_validate({"layers": {"types": ["Conv2d", "ConvTranspose2d", "Linear"]}})
    apply_scheme(model, "lsuv", seed=0, batch=x, init=init)
    rows = init_diagnostics(model, x, y, init)
    assert [r["layer"] for r in rows] == ["conv:Conv2d", "up:ConvTranspose2d", "fc:Linear"]
    assert all(abs(r["act_std"] ** 2 - 1) < 0.15 for r in rows)  # lsuv: unit variance at every selected layer
    assert all(r["grad_norm"] > 0 for r in rows)


def test_models_by_registration_and_config_class(user_dir, monkeypatch):
    from typing import Literal

    from pydantic import BaseModel

    import initsweep

    module = __import__(user_dir["models"])
    for name in ("tiny", "wide"):
        monkeypatch.setitem(REGISTERED_MODELS, name, None)  # undone after the test: registered nowhere else
    initsweep.register_model("tiny", module.mlp)

    class WideConfig(BaseModel):
        name: Literal["wide"] = "wide"
        hidden: int = 32
        activation: Literal["relu", "tanh"] = "tanh"

    initsweep.register_model("wide", module.mlp_with, WideConfig)  # gets the config's fields but its name
    tiny = parse_config(BASE | {"model": {"name": "tiny", "kwargs": {"hidden": 8}}})
    assert tiny.model.target == f"{user_dir['models']}:mlp"  # a fresh process (a Ray worker) imports it
    assert build_model(tiny.model, (1, 28, 28), 10)[1].out_features == 8
    wide = parse_config(BASE | {"model": {"name": "wide", "hidden": 12}})
    assert build_model(wide.model, (1, 28, 28), 10)[1].out_features == 12
    assert isinstance(build_model(wide.model, (1, 28, 28), 10)[2], nn.Tanh)
    assert wide.trials()[0].row.params["gain"] == pytest.approx(5 / 3)  # auto follows its activation
    with pytest.raises(ConfigError, match=r"^model\.hidden: input should be a valid integer"):
        parse_config(BASE | {"model": {"name": "wide", "hidden": "x"}})
    with pytest.raises(TypeError, match="needs a field name: Literal"):
        initsweep.register_model("other", module.mlp, WideConfig)
    with pytest.raises(ValueError, match="built-in"):
        initsweep.register_model("mlp", module.mlp)
    assert {"tiny", "wide"} <= set(REGISTERED_MODELS)


def test_datasets_by_registration(user_dir, monkeypatch):
    import initsweep

    monkeypatch.setitem(REGISTERED_DATASETS, "blobs", None)  # undone after the test
    module = __import__(user_dir["data"])
    initsweep.register_dataset("blobs", module.load)
    sweep = parse_config(BASE | {"data": {"dataset": "blobs", "kwargs": {"classes": 4}, "normalize": True}})
    data = load_configured(sweep.data)
    assert data.num_classes == 4 and data.input_shape == (12,)
    assert (len(data.train), len(data.val), len(data.test)) == (240, 60, 100)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert abs(data.train.x.mean().item()) < 1e-5  # normalized with the train split's statistics
    assert check_sweep(sweep, data) == [
        "1 Linear weight (256, 12): the scheme",
        "4 Linear weight (128, 256): the scheme",
        "7 Linear weight (4, 128): the scheme",
    ]
    # What MLflow's Dataset column records: the registered name, the loader's import path as the source.
    seen = lineage(sweep.data, data)
    assert (seen.name, seen.source) == ("blobs", f"{user_dir['data']}:load {{'classes': 4}}")
    assert seen.sizes == {"train": 240, "val": 60, "test": 100} and seen.settings["normalize"] is True
    initsweep.register_dataset("blobs", lambda classes: module.load(classes=classes))  # no import path
    again = parse_config(BASE | {"data": {"dataset": "blobs", "kwargs": {"classes": 4}, "normalize": True}})
    assert again.data.target is None
    relabelled = lineage(again.data, load_configured(again.data))
    assert relabelled.source.endswith("<lambda> {'classes': 4}") and relabelled.digest == seen.digest


def test_models_and_datasets_by_entry_point(user_dir, tmp_path, monkeypatch):
    dist = tmp_path / "userpkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: userpkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[initsweep.models]\nsmall = {user_dir['models']}:mlp\n\n"
        f"[initsweep.datasets]\nblobs = {user_dir['data']}:load\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sweep = parse_config(BASE | {"model": {"name": "small", "kwargs": {"hidden": 6}}, "data": {"dataset": "blobs"}})
    assert sweep.model.target == f"{user_dir['models']}:mlp" and sweep.data.target == f"{user_dir['data']}:load"
    data = load_configured(sweep.data)
    assert build_model(sweep.model, data.input_shape, data.num_classes)[1].out_features == 6


def test_mlflow_params_record_the_layer_selection(user_dir):
    rules = [{"match": "*.bn2", "scheme": "constant", "value": 0}]
    trial = parse_config(BASE | {"init": {"layers": {"exclude": ["fc"]}, "overrides": rules}}).trials()[0]
    params = _flat_params(trial)
    assert params["init.layers"] == "Linear,Conv1d,Conv2d,Conv3d exclude=fc"
    assert params["init.overrides"] == "*.bn2=constant(value=0)"


def _example(name: str, tmp_path, *overrides: str):
    """An example's sweep, run as its README says (from its folder), at test size."""
    folder = ROOT / "examples" / name
    args = ["sweep.yaml", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "ray")]
    args += ["--report-dir", str(tmp_path / "reports"), "--set", "train.epochs=1", "--set", "seeds=[0,1]"]
    for o in overrides:
        args += ["--set", o]
    before = sorted(p.name for p in folder.iterdir())
    proc = run_cli(*args, cwd=folder, env={"PYTHONDONTWRITEBYTECODE": "1"})
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written beside the example
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, mlflow_runs(
        f"sqlite:///{tmp_path}/mlflow.db", yaml.safe_load((folder / "sweep.yaml").read_text())["name"]
    )


@pytest.mark.slow
def test_resnet_example_runs_end_to_end(tmp_path):
    proc, runs = _example(
        "resnet", tmp_path, "data.limit=300", "model.kwargs.widths=[4,8,8]", "resources.cpus_per_trial=1"
    )
    assert len(runs["trial"]) == 2 and len(runs["seed"]) == 4
    for trial in runs["trial"]:
        assert trial.data.params["model.target"] == "resnet_model:build"
        assert trial.data.params["init.overrides"] == "*.bn2=constant(value=0)"
    assert "2/2 trials done (0 failed)" in proc.stdout


@pytest.mark.slow
def test_digits_example_runs_end_to_end(tmp_path):
    proc, runs = _example("digits", tmp_path)  # all 1,797 digits: 1 epoch is 36 steps
    assert len(runs["trial"]) == 4 and len(runs["seed"]) == 8
    assert {t.data.params["data.target"] for t in runs["trial"]} == {"digits_data:load"}
    datasets = {(d.dataset.name, d.dataset.source) for r in runs["seed"] for d in r.inputs.dataset_inputs}
    source = json.dumps({"uri": "digits_data:load {'test_fraction': 0.2}"})
    assert datasets == {("digits_data:load", source)}  # your data, in the Dataset column
    (profile,) = {d.dataset.profile for r in runs["seed"] for d in r.inputs.dataset_inputs}
    assert json.loads(profile)["sizes"] == {"train": 1150, "val": 288, "test": 359}
    accuracies = [s.data.metrics["val_accuracy"] for s in runs["seed"]]
    assert sum(accuracies) / len(accuracies) > 30  # 10 classes: chance is 10%
    assert "4/4 trials done (0 failed)" in proc.stdout
