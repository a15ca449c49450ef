"""Tune small, train big: a `tune` section that chooses a row's own scheme parameter (`row.gain`) and whose
stage 2 runs at `tune.confirm`'s settings (a larger width); the config, the trials, and a tuned sweep of
sp against mup end to end through Ray Tune and MLflow at test size."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, mlflow_runs, run_cli
from mlflow import MlflowClient

from initsweep.config import ConfigError, parse_config

GAIN = {"low": 0.5, "high": 2.0, "log": True}
SMALL_BIG = {
    "name": "small_big",
    "seeds": [0, 1],
    "model": {"name": "mlp", "depth": 1, "width": 16, "base_width": 16, "dropout": 0.0},
    "schemes": [{"scheme": "xavier_normal", "label": "xavier"}],
    "grid": {"model.parametrization": ["sp", "mup"]},
    "tune": {
        "params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}, "row.gain": GAIN},
        "n_trials": 2,
        "seeds": [100],
        "confirm": {"model.width": 64},
    },
}


def changed(**tune) -> dict:
    raw = copy.deepcopy(SMALL_BIG)
    raw["tune"] |= tune
    return raw


@pytest.mark.parametrize(
    "raw,message",
    [
        (changed(params={"row.c": GAIN}), "tune.params.row.c: schemes.0 (xavier) is xavier_normal, which has no "),
        (
            SMALL_BIG | {"schemes": ["xavier_normal", {"scheme": "normal_fan_in", "c": 1}]},
            "tune.params.row.gain: schemes.1 (normal_fan_in(c=1)) is normal_fan_in, which has no parameter gain",
        ),
        (changed(params={"row.gain": {"low": 0, "high": 2}}), "tune.params.row.gain: 0.0 is outside its domain"),
        (changed(params={"row.gain.x": GAIN}), "tune.params.row.gain.x: not a tunable setting"),
        (
            SMALL_BIG | {"schemes": ["kaiming_normal"]} | {"tune": SMALL_BIG["tune"] | {"params": {"row.mode": GAIN}}},
            "tune.params.row.mode: kaiming_normal's mode is a choice of names; list its values instead",
        ),
        (changed(confirm={"data.limit": 500}), "tune.confirm.data.limit: not a setting under model or train"),
        (changed(confirm={"seeds": [5]}), "tune.confirm.seeds: not a setting under model or train"),
        (changed(confirm={"train.lr": 0.1}), "tune.confirm.train.lr: also tuned"),
        (changed(confirm={"row.gain": 1.0}), "tune.confirm.row.gain: not a setting under model or train"),
        (changed(confirm={"model.parametrization": "sp"}), "tune.confirm.model.parametrization: also a grid axis"),
        (changed(confirm={"model.width": 0}), "tune.confirm.model.width: input should be greater than 0"),
        (changed(confirm={"train.epochs": "many"}), "tune.confirm.train.epochs: input should be a valid integer"),
        (changed(confirm={"train.nope": 1}), "tune.confirm.train.nope: unknown key"),
        (
            SMALL_BIG | {"model": {"name": "mlp", "hidden": [16], "base_width": 16}},
            "tune.confirm.model.width: sets no layer's width here (an mlp's width needs model.depth",
        ),
    ],
)
def test_bad_row_params_and_confirm_settings_are_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_a_row_param_goes_into_the_row_and_confirm_into_stage_2_only():
    sweep = parse_config(SMALL_BIG)
    row, axes, tuned = sweep.schemes[0], {"model.parametrization": "mup"}, {"train.lr": 3e-3, "row.gain": 1.5}
    candidate = sweep.trial(row, axes, tuned, "tune")
    assert candidate.row.params == {"gain": 1.5} and candidate.row.name == "xavier"
    assert candidate.model.hidden == [16] and candidate.seeds == [100] and candidate.confirmed == {}
    assert candidate.name == "xavier parametrization=mup lr=0.003 gain=1.5 [tune]"
    judged = sweep.trial(row, axes, tuned, "eval")
    assert judged.row.params == {"gain": 1.5} and judged.row.name == "xavier" and judged.train.lr == 3e-3
    assert judged.model.hidden == [64] and judged.model.base_width == 16 and judged.seeds == [0, 1]
    assert judged.confirmed == {"model.width": 64}
    assert judged.name == "xavier parametrization=mup lr=0.003 gain=1.5 width=64"
    saved = parse_config(yaml.safe_load(yaml.safe_dump(sweep.model_dump(mode="json"))))  # as MLflow keeps it
    assert saved.trial(row, axes, tuned, "eval") == judged
    listed = parse_config(changed(params={"row.gain": [1.0, 2.0]}, n_trials=None, confirm={"train.epochs": 3}))
    assert [t.row.params["gain"] for t in listed.tuning_trials()] == [1.0, 2.0, 1.0, 2.0]
    assert listed.trial(row, axes, {"row.gain": 2.0}, "eval").train.epochs == 3


@pytest.mark.slow
def test_tune_small_train_big_sp_against_mup_end_to_end(tmp_path):
    """Ray Tune (embedded, this machine's cores) and SQLite MLflow: stage 1 at width 16, stage 2 at the
    confirmed 64 at each parametrization's own choice; the report says both widths."""
    config = tmp_path / "small_big.yaml"
    config.write_text(yaml.safe_dump(SMALL_BIG | {"data": {"limit": 1000}, "train": {"epochs": 1}}))
    proc = run_cli(str(config), "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "small_big")
    trials = runs["trial"]
    assert Counter(r.data.tags["stage"] for r in trials) == {"tune": 4, "eval": 2}
    assert {r.data.tags["row"] for r in trials} == {"xavier"}
    for r in runs["seed"]:
        width = "16" if r.data.tags["stage"] == "tune" else "64"
        assert r.data.params["model.width"] == width and r.data.params["model.hidden"] == f"[{width}]"
        assert r.data.params["seed"] in (("100",) if r.data.tags["stage"] == "tune" else ("0", "1"))
        assert r.data.params["gain"] == r.data.params["row.gain"]  # the row's param is the tuned value
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = runs["sweep"][0].info.run_id
    chosen = json.loads(Path(client.download_artifacts(parent, "chosen_values.json", str(tmp_path))).read_text())
    for parametrization in ("sp", "mup"):
        mine = [r for r in trials if r.data.params["model.parametrization"] == parametrization]
        candidates = [r for r in mine if r.data.tags["stage"] == "tune"]
        (judged,) = [r for r in mine if r.data.tags["stage"] == "eval"]
        top = max(candidates, key=lambda r: r.data.metrics["val_accuracy"])
        picked = {k: judged.data.params[k] for k in ("train.lr", "row.gain")}
        assert picked in [{k: c.data.params[k] for k in picked} for c in candidates]  # drawn in stage 1
        if sum(c.data.metrics["val_accuracy"] == top.data.metrics["val_accuracy"] for c in candidates) == 1:
            assert picked == {k: top.data.params[k] for k in picked}
        assert {k: str(v) for k, v in chosen[f"xavier parametrization={parametrization}"].items()} == picked
        assert judged.data.params["model.width"] == "64" and judged.info.run_name.endswith(" width=64")
    drawn = {
        p: sorted(
            (c.data.params["train.lr"], c.data.params["row.gain"])
            for c in trials
            if c.data.tags["stage"] == "tune" and c.data.params["model.parametrization"] == p
        )
        for p in ("sp", "mup")
    }
    assert drawn["sp"] == drawn["mup"]  # one row's sampler seed for every grid value: the same proposals
    md = (next((tmp_path / "reports").glob("small_big-*")) / "report.md").read_text()
    tuning = md[md.index("## Tuning (stage 1)") :]
    assert "Chosen at model.width=16 (model.base_width" in tuning and "judged at model.width=64" in tuning
    for parametrization in ("sp", "mup"):
        line = next(x for x in tuning.splitlines() if x.startswith(f"| xavier parametrization={parametrization} |"))
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert "row.gain=" in cells[1] and "train.lr=" in cells[1] and "[" in cells[2], line  # judged, with its CI


def test_the_dry_run_says_where_stage_2_judges(tmp_path):
    proc = run_cli(str(ROOT / "sweeps" / "mup_tune_small_train_big.yaml"), "--dry-run", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stage 2 (eval): each row at its own chosen values, at model.width=1024 (tune.confirm)" in proc.stdout
