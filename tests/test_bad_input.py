"""Bad input, table-driven, through the CLI's `main`: one line on stderr naming the key or value, exit
code 2, and nothing left behind (no MLflow store, no Optuna journal, no Tune folder).

`main` runs in this process (a fresh interpreter per case would cost 5 s of imports each); the same
path through a real `python sweeps/run.py` process is checked in test_sweep.py."""

from __future__ import annotations

import os
import pickle

import pytest
from conftest import ROOT, cli_main

from initsweep.config import load_config
from initsweep.engine.data import load_raw
from initsweep.sweep.storage import experiment_dir
from initsweep.tracking import masked

SEED = str(ROOT / "sweeps" / "seed_table.yaml")
SEARCH = str(ROOT / "sweeps" / "search_bounds.yaml")
DEPTH = str(ROOT / "sweeps" / "depth_study.yaml")

CASES = [
    # (arguments, the start of the error line)
    (["--set", "seedz=[1]"], "seedz: unknown key"),
    (["--set", "train.epochs=two"], "train.epochs: input should be a valid integer"),
    (["--set", "train.epochs=-1"], "train.epochs: input should be greater than 0"),
    (["--set", "train.lr=0"], "train.lr: input should be greater than 0 (got 0)"),
    (["--set", "train.lr=-0.1"], "train.lr: input should be greater than 0 (got -0.1)"),
    (["--set", "train.batch_size=0"], "train.batch_size: input should be greater than 0"),
    (["--set", "train.optimizer=lbfgs"], "train.optimizer: input should be 'adam' or 'sgd'"),
    (["--set", "schemes.2.low=2"], "schemes.2: low (2.0) must be below high (1.0)"),
    (["--set", "seeds=[]"], "seeds: list should have at least 1 item"),
    (["--set", "seeds=[1,1]"], "seeds: seed 1 appears twice"),
    (["--set", "schemes.0.scheme=he"], "schemes.0.scheme: unknown scheme 'he'"),
    (["--set", "schemes.4.gain=2"], "schemes.4.gain: not a parameter of scheme 'uniform_fan_in' (valid: c)"),
    ([SEARCH, "--set", "search.schemes.uniform_fan_in.c=[-1,2]"], "search.schemes.uniform_fan_in.c: range [-1, 2]"),
    ([SEARCH, "--set", "search.n_trials=0"], "search.n_trials: input should be greater than 0"),
    (["--set", "model.name=resnet"], "model: input tag 'resnet'"),
    (["--set", "model.dropout=1.5"], "model.dropout: input should be less than 1"),
    (["--set", "data.dataset=cifar10"], "data.dataset: unknown dataset 'cifar10'"),
    (["--set", "data.limit=70000"], "data.limit: 70000 is more than the 60000 images"),
    (["--set", "objective.metric=test_accuracy"], "objective.metric: input should be"),
    (["--set", "scheduler.kind=asha", "--set", "scheduler.grace_period=9"], "scheduler.grace_period: more than"),
    (["--set", "report.baseline=nope"], "report.baseline: no row named 'nope'"),
    (["--set", "schemes.6.scheme=gpt2"], "init.roles: scheme gpt2 draws a transformer by role and needs"),
    (["--set", "task=language_model"], "task: language_model cannot train on fashion_mnist"),
    (
        [
            "--set",
            "task=language_model",
            "--set",
            "data.dataset=fortunes",
            "--set",
            "model.name=gpt",
            "--set",
            "data.context=999999",
        ],
        "data.context: the 2576674 tokens of fortunes leave",
    ),
    (["--set", "train.epochs"], "--set train.epochs: expected KEY=VALUE"),
    ([DEPTH, "--set", "grid.model.dept=[2]"], "grid.model.dept: unknown key"),
    ([DEPTH, "--set", "grid.model.depth=[4, 0]"], "grid.model.depth: input should be greater than 0 (got 0)"),
    ([DEPTH, "--set", "model.name=cnn"], "model.width: unknown key"),
    ([SEARCH, "--set", "grid.model.depth=[2]"], "grid: crosses `schemes` rows; a search sweep cannot have grid axes"),
    (["missing.yaml"], "missing.yaml: config file not found"),
    (["BROKEN"], "BROKEN: not valid YAML at line 3"),
    (["--storage-path", "FILE/sub"], "--storage-path FILE/sub: cannot create or write this folder"),
    (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there"),
    (["--tracking-uri", "http://bob:pw@127.0.0.1:1"], "--tracking-uri http://bob:***@127.0.0.1:1: no MLflow tracking"),
    (["--listen", "everywhere"], "--listen everywhere: not an IP address"),
    (["--listen", "0.0.0.0", "--address", "127.0.0.1:1"], "--listen 0.0.0.0: applies to the embedded Ray only"),
    (["--ray-dashboard", "--address", "127.0.0.1:1"], "--ray-dashboard: applies to the embedded Ray only, not to"),
    (["NO_DATA"], "fashion_mnist: no data files in NOWHERE"),
    # a resume whose saved state does not read back (damaged by a disk or a hand: our writes are whole)
    (["DAMAGED", "initsweep-sweep.json"], "TUNE/initsweep-sweep.json: this sweep's saved state does not read back"),
    (["DAMAGED", "tuner.pkl"], "TUNE/tuner.pkl: this sweep's saved state does not read back (ValueError: pickle"),
    (["DAMAGED", "experiment_state-2026-12-07_10-00-00.json"], "TUNE/experiment_state-2026-12-07_10-00-00.json"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[m.split(":")[0] for _, m in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "broken.yaml").write_text("name: x\nseeds: [1, 2\n")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what the CLI sets stays in this test
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    if args == ["NO_DATA"]:  # no dataset files anywhere (an empty cache outside tmp_path, no source folder)
        monkeypatch.setenv("INITSWEEP_DATA", f"{tmp_path}-cache")
        monkeypatch.setenv("INITSWEEP_DATA_SOURCE", f"{tmp_path}-nowhere")
        load_raw.cache_clear()
        args, message = [], message.replace("NOWHERE", f"{tmp_path}-nowhere")
    storage = tmp_path / "storage"
    if args[:1] == ["DAMAGED"]:  # a sweep's Tune folder, its named file cut short
        tune = experiment_dir(load_config(SEED), storage)
        tune.mkdir(parents=True)
        whole = {"initsweep-sweep.json": b'{"sweep_id": "0123456789ab"}', "tuner.pkl": pickle.dumps({"a": [1]})}
        whole |= {args[1]: b'{"trial_data": []}'} if args[1].startswith("experiment_state") else {}
        for name, data in whole.items():
            (tune / name).write_bytes(data[: len(data) // 2] if name == args[1] else data)
        args, message = [], message.replace("TUNE", str(tune))
    args = [
        str(tmp_path / "broken.yaml") if a == "BROKEN" else a.replace("FILE", str(tmp_path / "file.txt")) for a in args
    ]
    message = message.replace("FILE", str(tmp_path / "file.txt")).replace("BROKEN", str(tmp_path / "broken.yaml"))
    if not args or args[0].startswith("--"):
        args = [SEED, *args]
    if "--storage-path" not in args:
        args += ["--storage-path", str(storage)]
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    try:
        code = cli_main()(args)
    finally:
        load_raw.cache_clear()
    out, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err
    assert out == ""
    # nothing new (no mlflow.db, mlruns, storage or journal); a damaged Tune folder stays as it was
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_credentials_in_a_tracking_uri_are_masked():
    assert masked("https://alice:s3cret@mlflow.example.com:5000/") == "https://alice:***@mlflow.example.com:5000/"
    assert masked("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert masked("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_listening_beyond_loopback_warns_what_is_exposed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.chdir(tmp_path)
    # The warning comes first, before anything starts; here an unreachable tracking server then stops it.
    for extra, exposed in (([], "Ray's node services accept"), (["--ray-dashboard"], "Ray's dashboard, its Jobs API")):
        code = cli_main()([SEED, "--listen", "0.0.0.0", *extra, "--tracking-uri", "http://127.0.0.1:1"])
        err = capsys.readouterr().err.splitlines()
        assert code == 2 and len(err) == 2
        assert err[0].startswith(f"warning: --listen 0.0.0.0: {exposed}")
        assert "token authentication is on" in err[0]
        assert err[1].startswith("error: --tracking-uri http://127.0.0.1:1: no MLflow tracking server answers")
