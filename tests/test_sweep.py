"""The sweep end to end through `sweeps/run.py`: real Ray (local, 2 CPUs), Optuna and an MLflow store."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, free_port, mlflow_runs, progress_lines, run_cli, trial_of, wait_for_http
from mlflow import MlflowClient

from initsweep.sweep.storage import PARTIAL, STALE_AFTER_S


def assert_complete(runs: dict, n_trials: int, n_seeds: int) -> None:
    """One FINISHED parent, trial and seed runs, correctly nested, none duplicated or left RUNNING."""
    assert [r.info.status for r in runs["sweep"]] == ["FINISHED"]
    parent = runs["sweep"][0].info.run_id
    assert Counter(r.info.status for r in runs["trial"]) == {"FINISHED": n_trials}
    assert Counter(r.info.status for r in runs["seed"]) == {"FINISHED": n_trials * n_seeds}
    trial_ids = [r.data.tags["trial_id"] for r in runs["trial"]]
    assert len(set(trial_ids)) == n_trials
    by_id = {r.info.run_id: r for r in runs["trial"]}
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in runs["trial"])
    for seed_run in runs["seed"]:
        trial = by_id[seed_run.data.tags["mlflow.parentRunId"]]
        assert seed_run.data.tags["trial_id"] == trial.data.tags["trial_id"]
    pairs = Counter((r.data.tags["trial_id"], r.data.params["seed"]) for r in runs["seed"])
    assert set(pairs.values()) == {1}


@pytest.mark.slow
def test_grid_sweep_records_every_trial_and_seed_and_resumes_idempotently(tmp_path):
    timings = tmp_path / "timings.jsonl"  # the driver's marks (`INITSWEEP_TIMINGS`), as bench/overhead.py reads them
    proc = run_cli(
        str(ROOT / "sweeps" / "smoke.yaml"),
        "--storage-path",
        str(tmp_path / "ray"),
        cwd=tmp_path,
        env={"INITSWEEP_TIMINGS": str(timings)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    marks = [json.loads(line) for line in timings.read_text().splitlines()]
    order = [m["phase"] for m in marks if "s" not in m]
    # the data, the checks and the store are ready while Ray starts; Ray shuts down while the report is written
    assert set(order[:6]) == {"tracking_imported", "engine_imported", "data_loaded", "sweep_checked"} | {
        "store_opened",
        "ray_started",
    }
    assert order[order.index("fit_returned") :] == ["fit_returned", "report_built", "tuner_returned", "ray_shut_down"]
    assert [m["phase"] for m in marks].count("record_trial") == 3  # once each: the last pass skips what it wrote
    assert [line.split("]")[0] for line in progress_lines(out.splitlines())] == ["[1/3", "[2/3", "[3/3"]
    assert "ETA" in out and "best " in out
    assert "val acc % (95% CI)" in out and "3/3 trials done (0 failed)" in out
    assert "UI: initsweep ui --tracking-uri 'sqlite:///" in out
    # 3 cells on 2 slots: the third runs as 2 shards of 1 seed (no slot idles), printed and recorded as one
    exp_dir = next((tmp_path / "ray").glob("smoke-*"))
    assert len(list(exp_dir.glob("train_trial_*"))) == 4
    busy = re.search(
        r"3/3 trials done \(0 failed\) in [\d.]+ s; slots busy (\d+)% of the [\d.]+ s the trials ran \(2 slots\)", out
    )
    assert busy and 0 < int(busy[1]) <= 100, out[-800:]

    uri = f"sqlite:///{tmp_path}/mlflow.db"  # MLflow's own default, in the working directory
    runs = mlflow_runs(uri, "smoke")
    assert_complete(runs, n_trials=3, n_seeds=2)
    client = MlflowClient(uri)
    sweep = runs["sweep"][0]
    assert sweep.data.params["mode"] == "grid" and sweep.data.params["n_trials"] == "3"
    assert sweep.data.tags["mlflow.source.git.commit"]
    assert [a.path for a in client.list_artifacts(sweep.info.run_id)] == ["report", "sweep.yaml"]
    assert sweep.data.metrics["trials_finished"] == 3

    trials = {r.data.params["scheme"]: r for r in runs["trial"]}
    assert set(trials) == {"constant", "uniform_fan_in", "pytorch_default"}
    rule = trials["uniform_fan_in"]
    assert rule.data.params["c"] == "1.0" and "gain" not in rule.data.params
    assert {"model", "optimizer", "lr", "epochs"} <= set(rule.data.params)
    assert rule.data.params["lr"] == "0.001" and rule.data.params["epochs"] == "1"
    history = client.get_metric_history(rule.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1]
    seeds = [r for r in runs["seed"] if r.data.tags["mlflow.parentRunId"] == rule.info.run_id]
    seed_acc = [r.data.metrics["val_accuracy"] for r in seeds]
    assert rule.data.metrics["val_accuracy"] == sum(seed_acc) / 2  # the trial's mean over its seeds
    assert "val_accuracy_std" in rule.data.metrics and "test_accuracy" in rule.data.metrics
    # Every trial and seed run names its data (MLflow's Dataset column): the smoke sweep's 2,000 images.
    from test_data import digest_of

    from initsweep.config import DataConfig
    from initsweep.engine.data import load_configured

    digest = digest_of(load_configured(DataConfig(limit=2000)))
    for run in runs["trial"] + runs["seed"]:
        (data_input,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        dataset = data_input.dataset
        assert (dataset.name, dataset.digest) == ("fashion_mnist", digest)
        assert json.loads(dataset.source) == {"uri": "/usr/share/datasets/fashion-mnist"}
        profile = json.loads(dataset.profile)
        assert profile["sizes"] == {"train": 1600, "val": 400, "test": 10_000} and profile["split_seed"] == 0
        assert [(t.key, t.value) for t in data_input.tags] == [("mlflow.data.context", "training")]
    for s in seeds:
        assert s.data.params["seed"] in ("0", "1") and s.data.tags["diverged"] == "false"
        assert len(client.get_metric_history(s.info.run_id, "minibatch_loss")) == 1  # 16 steps, one per 10
        assert [a.path for a in client.list_artifacts(s.info.run_id)] == ["init_diagnostics.json"]

    # The report: written locally, logged to the parent run, its numbers the MLflow metrics.
    report_dir = next((tmp_path / "reports").glob("smoke-*"))
    assert f"report: {report_dir / 'report.md'}" in out
    expected = ["report.html", "report.md", "results.csv"]
    expected += [f"plots/{n}.png" for n in ("loss_curves", "phase_diagram", "signal_propagation", "val_accuracy")]
    assert sorted(p.relative_to(report_dir).as_posix() for p in report_dir.rglob("*.*")) == sorted(expected)
    for png in report_dir.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    logged = client.list_artifacts(sweep.info.run_id, "report")
    assert {a.path for a in logged} >= {"report/report.md", "report/report.html", "report/results.csv", "report/plots"}
    table = list(csv.DictReader((report_dir / "results.csv").open()))
    for line in table:
        trial = next(r for r in runs["trial"] if r.info.run_name == line["scheme"])
        assert line["val acc % (95% CI)"].startswith(f"{trial.data.metrics['val_accuracy']:.2f} [")
        assert line["test acc %"] == f"{trial.data.metrics['test_accuracy']:.2f}"

    # --no-ray trains every cell whole in this process: the same table (the split is invisible in it).
    local = run_cli(
        str(ROOT / "sweeps" / "smoke.yaml"), "--no-ray", "--report-dir", str(tmp_path / "local"), cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr[-3000:]

    def rows(folder):  # without the rank, which orders ties by finishing order
        return sorted(line.split(",", 1)[1] for line in (folder / "results.csv").read_text().splitlines())

    assert rows(tmp_path / "local" / "smoke-no-ray") == rows(report_dir)

    # The same command again: the sweep is found finished, nothing trains, nothing is written twice.
    rerun = run_cli(str(ROOT / "sweeps" / "smoke.yaml"), "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming sweep" in rerun.stdout
    assert not progress_lines(rerun.stdout.splitlines())
    assert_complete(mlflow_runs(uri, "smoke"), n_trials=3, n_seeds=2)

    # Rebuilt from MLflow alone (no Ray, no Tune files): the same report.
    shutil.rmtree(tmp_path / "ray")
    rebuilt = subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "report.py"), "--experiment", "smoke", "--out", str(tmp_path / "again")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    again = tmp_path / "again" / report_dir.name
    for name in expected:
        assert (again / name).read_bytes() == (report_dir / name).read_bytes(), name


@pytest.mark.slow
def test_search_sweep_conditional_params_and_optuna_study(tmp_path):
    uri = f"sqlite:///{tmp_path}/search.db"
    proc = run_cli(
        str(ROOT / "sweeps" / "search_bounds.yaml"),
        *("--set", "search.n_trials=5", "--set", "data.limit=1000", "--set", "train.epochs=1"),
        *("--set", "seeds=[0,1]", "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best: " in proc.stdout
    plots = {p.name for p in (tmp_path / "reports").rglob("*.png")}
    assert {"objective_vs_params.png", "optimization_history.png", "param_importances.png"} <= plots
    runs = mlflow_runs(uri, "search_bounds")
    assert_complete(runs, n_trials=5, n_seeds=2)
    assert runs["sweep"][0].data.params["mode"] == "search"
    expected = {"uniform_symmetric": {"y"}, "uniform_fan_in": {"c"}, "normal_fan_in": {"c"}}
    expected |= {"xavier_uniform": {"gain"}, "orthogonal": {"gain"}}
    every_param = {"y", "c", "gain"}
    for r in runs["trial"]:
        scheme = r.data.params["scheme"]
        assert set(r.data.params) & every_param == expected[scheme]  # uniform_fan_in has c and no gain

    tune_dir = next((tmp_path / "ray").glob("search_bounds-*"))
    sweep_id = json.loads((tune_dir / "initsweep-sweep.json").read_text())["sweep_id"]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tune_dir / "optuna-journal.log"))
    )
    study = optuna.load_study(study_name=f"search_bounds-{sweep_id}", storage=storage)
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 5}
    objectives = sorted(round(t.value, 6) for t in study.trials)
    assert objectives == sorted(round(r.data.metrics["val_accuracy"], 6) for r in runs["trial"])

    # The documented dashboard command serves the study from our storage.
    journal = str(tune_dir / "optuna-journal.log")
    assert f"optuna-dashboard '{journal}'" in proc.stdout
    port = free_port()
    dashboard_bin = str(Path(sys.executable).with_name("optuna-dashboard"))
    dashboard = subprocess.Popen([dashboard_bin, journal, "--port", str(port), "--quiet"], stderr=subprocess.PIPE)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/api/studies", dashboard, timeout=60), dashboard.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as reply:
            served = json.loads(reply.read())["study_summaries"]
        assert [(s["study_name"], s["is_preferential"]) for s in served] == [(f"search_bounds-{sweep_id}", False)]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    args = [
        sys.executable,
        str(ROOT / "sweeps" / "run.py"),
        *("--set", "data.limit=1500", "--set", "train.epochs=1", "--set", "seeds=[0,1]"),
        *("--storage-path", str(tmp_path / "ray")),
    ]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    finished_first = []
    for line in first.stdout:
        if progress_lines([line]):
            finished_first.append(trial_of(line))
            if len(finished_first) == 2:
                first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    assert 2 <= len(finished_first) < 9
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    interrupted = mlflow_runs(uri, "seed_table")
    assert [r.info.status for r in interrupted["sweep"]] == ["KILLED"]
    # every trial that printed its line is recorded; one finishing as the signal lands may be recorded too,
    # its line cut off (both workers finish at about the same time)
    assert len(finished_first) <= len(interrupted["trial"]) <= len(finished_first) + 1
    assert all(r.info.status == "FINISHED" for r in interrupted["trial"] + interrupted["seed"])
    tune_dir = next((tmp_path / "ray").glob("seed_table-*"))
    stale = time.time() - STALE_AFTER_S - 1
    for left in (tune_dir / f"tuner.pkl{PARTIAL}0", next(tune_dir.glob("*/checkpoint_*")) / f"state{PARTIAL}0"):
        left.write_bytes(b"what a killed writer left")  # (this run was interrupted, not killed)
        os.utime(left, (stale, stale))

    second = run_cli(
        *("--set", "data.limit=1500", "--set", "train.epochs=1", "--set", "seeds=[0,1]"),
        *("--storage-path", str(tmp_path / "ray")),
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    finished_second = [trial_of(line) for line in progress_lines(second.stdout.splitlines())]
    assert not set(finished_first) & set(finished_second)  # no finished trial trained twice
    assert len(finished_second) in (9 - len(interrupted["trial"]), 9 - len(finished_first))  # the rest, once
    assert_complete(mlflow_runs(uri, "seed_table"), n_trials=9, n_seeds=2)
    assert b"initsweep.sweep.storage" in (tune_dir / "tuner.pkl").read_bytes()  # Tune wrote through ours
    assert not list(tune_dir.rglob(f"*{PARTIAL}*"))  # every file it wrote renamed into place, the stale ones gone


def test_bad_input_through_a_real_process_exits_2_and_creates_nothing(tmp_path):
    """The table in test_bad_input.py calls `main` in-process; here the same path as a user runs it."""
    for bad in (["--set", "train.lr=0"], ["--tracking-uri", "http://127.0.0.1:1"]):
        # 30 s: an unreachable tracking server must fail fast, not after MLflow's minutes of retries
        proc = run_cli(*bad, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path, timeout=30)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no Tune folder, no Optuna journal
