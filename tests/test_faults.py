"""Faults injected for real: killed drivers, failing trials, diverging trials, an MLflow server that goes
away, two sweeps on one SQLite store. Each test runs real Ray, Optuna and MLflow (issue 6)."""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import faultplan
import optuna
import psutil
import pytest
from conftest import ROOT, MlflowServer, mlflow_runs, progress_lines, trial_of
from mlflow import MlflowClient
from ray.cluster_utils import Cluster
from test_sweep import assert_complete

from initsweep.config import load_config
from initsweep.sweep.tuner import optuna_location, optuna_storage

pytestmark = pytest.mark.slow

SEARCH = [
    str(ROOT / "sweeps" / "search_bounds.yaml"),
    *("--set", "search.n_trials=6", "--set", "data.limit=1500", "--set", "seeds=[0,1]"),
]


class Driver:
    """`sweeps/run.py` in its own session, its output collected by a thread while the test watches."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None):
        clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "sweeps" / "run.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=clean | (env or {}),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def progress(self) -> list[str]:
        return progress_lines(list(self.lines))

    def kill_when(self, condition, timeout: float = 300) -> None:
        """SIGKILL the driver (only it) as soon as `condition()` holds, then end what it left running."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, "".join(self.lines)[-12000:]
            assert time.monotonic() < deadline, "".join(self.lines)[-12000:]
            time.sleep(0.1)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):  # a dead machine takes its Ray processes with it
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.reader.join(timeout=10)

    def finish(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def study_of(tune_dir: Path, name: str) -> optuna.Study:
    """A search sweep's Optuna study, from the journal in its Tune folder."""
    sweep_id = json.loads((tune_dir / "initsweep-sweep.json").read_text())["sweep_id"]
    backend = optuna.storages.journal.JournalFileBackend(str(tune_dir / "optuna-journal.log"))
    return optuna.load_study(study_name=f"{name}-{sweep_id}", storage=optuna.storages.JournalStorage(backend))


def test_driver_killed_at_three_points_resumes_to_one_complete_sweep(tmp_path):
    args = [*SEARCH, "--storage-path", str(tmp_path / "ray")]
    tune_dir = lambda: next((tmp_path / "ray").glob("search_bounds-*"), None)  # noqa: E731

    # 1. mid-trial: a first epoch checkpointed, no trial finished yet
    first = Driver(args, tmp_path)
    first.kill_when(lambda: tune_dir() is not None and any(tune_dir().glob("*/checkpoint_*")))
    assert not first.progress()
    # 2. after two trials finished in this run (the second one perhaps not yet written to MLflow)
    second = Driver(args, tmp_path)
    second.kill_when(lambda: len(second.progress()) >= 2)
    # 3. as the last trial finishes: the final MLflow writes and the report are under way
    third = Driver(args, tmp_path)
    third.kill_when(lambda: any(line.startswith("[6/6]") for line in third.progress()))
    last = Driver(args, tmp_path)
    assert last.finish() == 0, "".join(last.lines)[-3000:]
    output = "".join(last.lines)
    assert "resuming sweep" in output and "6/6 trials done (0 failed)" in output

    # No finished trial trained again: a trial that finished in one run shows up in a later run's
    # progress only as resumed from its final checkpoint (nothing trained).
    finished: set[str] = set()
    for run in (second, third, last):
        for line in run.progress():
            if trial_of(line) in finished:
                assert "nothing trained" in line, line
            finished.add(trial_of(line))
    assert len(finished) == 6

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = mlflow_runs(uri, "search_bounds")
    assert_complete(runs, n_trials=6, n_seeds=2)  # none RUNNING, none duplicated
    study = study_of(tune_dir(), "search_bounds")
    states = Counter(t.state.name for t in study.trials)
    assert states["COMPLETE"] == 6 and states["RUNNING"] == 0, states


def test_a_driver_killed_holding_the_optuna_journal_lock_lets_the_next_one_write_at_once(tmp_path):
    """Optuna's default journal lock (a symlink) outlived a driver killed mid-append: the resumed sweep waited
    30 s for it, warning every 10 s. The sweep's journal lock is the kernel's, gone with its holder."""
    sweep = load_config(ROOT / "sweeps" / "search_bounds.yaml")
    journal = optuna_location(sweep, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, journal], stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        writer = threading.Thread(
            target=optuna.create_study, kwargs={"storage": optuna_storage(sweep, tmp_path)}, daemon=True
        )
        writer.start()
        writer.join(timeout=3)
        assert writer.is_alive(), "the study was written while another process held the journal's lock"
    finally:
        holder.kill()
        holder.wait(timeout=30)
    writer.join(timeout=10)  # Optuna's symlink lock would hold it 30 s
    assert not writer.is_alive()
    storage = pickle.loads(pickle.dumps(optuna_storage(sweep, tmp_path)))  # as Tune saves its searcher
    assert len(optuna.get_all_study_names(storage)) == 1


HOLD_LOCK = """import sys, time
from initsweep.sweep.tuner import JournalLock
lock = JournalLock(sys.argv[1])  # kept: filelock lets go of a lock that is garbage-collected
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_failing_and_diverging_trials_are_results_not_crashes(tmp_path):
    """xavier_uniform trials raise once (retried from their checkpoint), orthogonal ones on every attempt
    (ERROR after the retries); large-c uniform_fan_in trials diverge under SGD."""
    config = tmp_path / "faults.yaml"
    config.write_text(
        "name: faults\nseeds: [0, 1]\ndata: {dataset: fashion_mnist, limit: 1000}\n"
        "train: {epochs: 2, optimizer: sgd, lr: 0.1}\n"
        "search:\n  n_trials: 6\n  sampler: random\n  seed: 15\n  schemes:\n"
        "    uniform_fan_in: {c: [0.5, 3000.0]}\n    xavier_uniform: {gain: 1.0}\n    orthogonal: {gain: 1.0}\n"
    )
    driver = Driver(
        [str(config), "--storage-path", str(tmp_path / "ray")],
        tmp_path,
        env=faultplan.env("xavier_uniform:once,orthogonal:always"),
    )
    assert driver.finish() == 0, "".join(driver.lines)[-12000:]
    output = "".join(driver.lines)
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "faults")
    trials = runs["trial"]
    assert len(trials) == 6 and all(r.info.status != "RUNNING" for r in runs["sweep"] + trials + runs["seed"])
    failed = [r for r in trials if r.info.status == "FAILED"]
    assert failed and {r.data.params["scheme"] for r in failed} == {"orthogonal"}
    assert f"6/6 trials done ({len(failed)} failed)" in output
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for run in failed:
        assert "orthogonal(gain=1) fails on every attempt" in run.data.tags["error"]
        error_txt = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
        assert "InjectedFault" in Path(error_txt).read_text()

    # Retried once from its first epoch's checkpoint: one FINISHED run with both epochs.
    retried = [r for r in trials if r.data.params["scheme"] == "xavier_uniform"]
    assert retried and all(r.info.status == "FINISHED" for r in retried)
    for run in retried:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2]
    tune_dir = next((tmp_path / "ray").glob("faults-*"))
    for folder in tune_dir.glob("train_trial_*xavier_uniform*"):
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [(r["epoch"], r["restored_epoch"]) for r in rows] == [(1, 0), (2, 1)]

    # Divergence: recorded with its step, a finite penalty for Optuna, never the best.
    diverged = [r for r in trials if r.data.tags["diverged"] == "true"]
    assert diverged and all(float(r.data.params["c"]) > 100 for r in diverged)
    for run in diverged:
        seeds = [s for s in runs["seed"] if s.data.tags["mlflow.parentRunId"] == run.info.run_id]
        lost = [s for s in seeds if s.data.tags["diverged"] == "true"]
        assert lost and all(int(s.data.tags["diverged_step"]) >= 1 for s in lost)
        assert all(s.data.metrics["val_accuracy"] == 0.0 and s.data.metrics["val_loss"] == 1e9 for s in lost)
    study = study_of(tune_dir, "faults")
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 6 - len(failed), "FAIL": len(failed)}
    assert all(math.isfinite(t.value) for t in study.trials if t.state.name == "COMPLETE")
    healthy = {
        r.info.run_name: r.data.metrics["val_accuracy"]
        for r in trials
        if r.info.status == "FINISHED" and r.data.tags["diverged"] == "false"
    }
    top = max(healthy, key=healthy.get)
    assert next(line for line in driver.lines if line.startswith("best: ")).startswith(f"best: {top} ")
    assert study.best_value == pytest.approx(healthy[top])  # Optuna's best is a trial that trained

    report = next((tmp_path / "reports").glob("faults-*"))
    first_row = next(csv.DictReader((report / "results.csv").open()))
    assert first_row["diverged"] == "0"
    md = (report / "report.md").read_text()
    assert "## Failed trials" in md and md.count("orthogonal(gain=1) fails on every attempt") == len(failed)


def test_mlflow_server_away_for_30_s_mid_sweep_loses_nothing(tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        smoke = str(ROOT / "sweeps" / "smoke.yaml")
        driver = Driver([smoke, "--tracking-uri", server.uri, "--storage-path", str(tmp_path / "ray")], tmp_path)
        deadline = time.monotonic() + 300
        while not driver.progress():  # the first trial finished; the driver is about to write it
            assert driver.proc.poll() is None and time.monotonic() < deadline, "".join(driver.lines)[-12000:]
            time.sleep(0.05)
        server.stop()
        time.sleep(30)
        assert driver.proc.poll() is None  # waiting for the server, not failed
        server.start()
        assert driver.finish() == 0, "".join(driver.lines)[-12000:]
        runs = mlflow_runs(server.uri, "smoke")
        assert_complete(runs, n_trials=3, n_seeds=2)
        client = MlflowClient(server.uri)
        for run in runs["seed"]:  # every metric arrived
            assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1
            assert len(client.get_metric_history(run.info.run_id, "minibatch_loss")) == 1
        assert [a.path for a in client.list_artifacts(runs["sweep"][0].info.run_id)] == ["report", "sweep.yaml"]
    finally:
        server.stop()


SHORT_RETRIES = {  # MLflow's own settings: give up after about 3 s instead of about 4 minutes
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def test_mlflow_server_down_past_the_retries_stops_with_one_line_and_the_rerun_repairs(tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        smoke = str(ROOT / "sweeps" / "smoke.yaml")
        args = [smoke, "--tracking-uri", server.uri, "--storage-path", str(tmp_path / "ray")]
        driver = Driver(args, tmp_path, env=SHORT_RETRIES)
        deadline = time.monotonic() + 300
        while not driver.progress():  # the first trial finished; the driver is about to write it
            assert driver.proc.poll() is None and time.monotonic() < deadline, "".join(driver.lines)[-12000:]
            time.sleep(0.05)
        server.stop()
        assert driver.finish(timeout=300) == 3, "".join(driver.lines)[-12000:]
        errors = [line for line in driver.lines if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in "".join(driver.lines), "".join(driver.lines)[-6000:]
        assert errors[0].startswith(f"error: --tracking-uri {server.uri}: the tracking server stopped answering")
        assert "run the same command again to resume" in errors[0]
        tune_dir = next((tmp_path / "ray").glob("smoke-*"))
        assert list(tune_dir.glob("*/checkpoint_*"))  # Tune's state and checkpoints are kept

        server.start()
        again = Driver(args, tmp_path)
        assert again.finish() == 0, "".join(again.lines)[-12000:]
        assert "resuming sweep" in "".join(again.lines)
        assert_complete(mlflow_runs(server.uri, "smoke"), n_trials=3, n_seeds=2)
    finally:
        server.stop()


def test_two_sweeps_at_once_on_one_sqlite_store_listening_on_loopback_only(tmp_path):
    smoke = str(ROOT / "sweeps" / "smoke.yaml")
    storage = ("--storage-path", str(tmp_path / "ray"))
    paused = faultplan.env("", pause_s=2.0)  # each trial waits 2 s after its epoch: both Rays stay up a while
    first = Driver([smoke, "--ray-dashboard", *storage], tmp_path, env=paused)
    second = Driver([smoke, "--set", "seeds=[2,3]", *storage], tmp_path, env=paused)  # the same experiment

    # While both run: every socket their processes (Ray's included) listen on is a loopback address.
    listening, refused = set(), {}
    deadline = time.monotonic() + 300

    # Until both sweeps trained a trial and the dashboard answered (it can lag its sweep's line).
    def running() -> bool:
        return first.proc.poll() is None or second.proc.poll() is None

    while not (first.progress() and second.progress() and refused) and running():
        assert time.monotonic() < deadline, (refused, "".join(first.lines + second.lines)[-6000:])
        for driver in (first, second):
            # The Jobs API (it runs any code it is sent) turns away a request without Ray's token.
            dashboard = next((line for line in list(driver.lines) if "dashboard " in line), None)
            if dashboard and driver not in refused:
                url = "http://" + dashboard.split("dashboard ")[1].split(")")[0] + "/api/jobs/"
                try:
                    urllib.request.urlopen(url, timeout=10)
                    refused[driver] = 200
                except urllib.error.HTTPError as err:
                    refused[driver] = err.code
                except urllib.error.URLError:
                    pass  # not up yet
            with contextlib.suppress(psutil.Error):
                procs = [psutil.Process(driver.proc.pid), *psutil.Process(driver.proc.pid).children(recursive=True)]
                pids = {p.pid: p.name() for p in procs}
                listening |= {
                    (c.laddr.ip, pids[c.pid])
                    for c in psutil.net_connections("inet")
                    if c.status == psutil.CONN_LISTEN and c.pid in pids
                }
        time.sleep(1)
    names = {name for _, name in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # Ray was running and was seen
    assert all(ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback for ip, _ in listening), listening
    assert set(refused.values()) <= {401, 403} and list(refused) == [first], refused  # token auth is on
    # Without --ray-dashboard there is no dashboard and no Jobs API.
    assert next(line for line in second.lines if line.startswith("sweep 'smoke'")).endswith("on Ray (embedded)\n")

    assert first.finish() == 0, "".join(first.lines)[-12000:]
    assert second.finish() == 0, "".join(second.lines)[-12000:]
    assert "database is locked" not in "".join(first.lines + second.lines)
    runs = mlflow_runs(f"sqlite:///{tmp_path}/mlflow.db", "smoke")
    assert len(runs["sweep"]) == 2 and all(r.info.status == "FINISHED" for r in runs["sweep"])
    for sweep in runs["sweep"]:
        sweep_id = sweep.data.tags["sweep_id"]
        mine = {k: [r for r in v if r.data.tags["sweep_id"] == sweep_id] for k, v in runs.items()}
        assert_complete(mine, n_trials=3, n_seeds=2)


def _result_rows(folder):
    """Tune's result rows of one trial so far (the last line may be half-written)."""
    rows = []
    for line in (folder / "result.json").read_text().splitlines() if (folder / "result.json").exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def test_a_worker_node_dies_mid_trial_and_the_trial_resumes_from_its_checkpoint(mlflow_server, tmp_path, monkeypatch):
    """A head that runs no trials and two one-CPU workers; a worker is killed while its trial trains (each
    epoch pauses 1.5 s after its checkpoint, through the trial hook, so "mid-way" lasts long enough to see
    on a fast machine: an epoch of this size trains in a fraction of a second)."""
    for key, value in faultplan.env("", pause_s=1.5).items():  # the nodes' workers inherit it
        monkeypatch.setenv(key, value)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        args = [str(ROOT / "sweeps" / "smoke.yaml"), "--address", cluster.address, "--tracking-uri", mlflow_server]
        args += ["--storage-path", str(tmp_path / "ray"), "--set", "name=node_loss", "--set", "train.epochs=4"]
        args += ["--set", "data.limit=6000", "--set", "resources.reuse_actors=false"]
        driver = Driver(args, tmp_path)
        tune_dir = lambda: next((tmp_path / "ray").glob("node_loss-*"), None)  # noqa: E731

        # The node killed is one whose trial has checkpointed an epoch and has at least two to go. (Waiting
        # for both workers to be mid-way at once failed on a busy machine: one worker's trial finished
        # before the other's had started.)
        def last_rows():
            """Each trial's last result so far, and whether it has a checkpoint."""
            folders = tune_dir().glob("train_trial_*") if tune_dir() else []
            return [(rows[-1], any(f.glob("checkpoint_*"))) for f in folders if (rows := _result_rows(f))]

        deadline = time.monotonic() + 300
        while (row := next((r for r, saved in last_rows() if saved and r["epoch"] <= 2), None)) is None:
            assert driver.proc.poll() is None and time.monotonic() < deadline, "".join(driver.lines)[-12000:]
            time.sleep(0.05)
        lost = next(node for node in workers if node.node_id == row["node_id"])
        done_before = {r["trial_id"] for r, _ in last_rows() if r["epoch"] == 4}
        cluster.remove_node(lost, allow_graceful=False)
        assert driver.finish() == 0, "".join(driver.lines)[-12000:]
    finally:
        cluster.shutdown()

    runs = mlflow_runs(mlflow_server, "node_loss")
    assert_complete(runs, n_trials=3, n_seeds=2)  # one FINISHED run per trial and per seed
    client = MlflowClient(mlflow_server)
    for trial in runs["trial"]:
        if trial.data.tags["trial_id"] not in done_before:  # every trial not done at the loss finished on a live node
            assert trial.data.tags["node_id"] != lost.node_id
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")] == [1, 2, 3, 4]
    resumed = []
    for folder in tune_dir().glob("train_trial_*"):
        rows = _result_rows(folder)
        trained = [r["epoch"] for r in rows if r["restored_epoch"] < r["epoch"]]
        assert trained == sorted(set(trained)) and rows[-1]["epoch"] == 4  # no epoch trained twice
        # A trial that finished just as its node died re-reports its last epoch from the checkpoint.
        assert all(r["restored_epoch"] == r["epoch"] == 4 for r in rows if r["restored_epoch"] >= r["epoch"])
        if any(r["restored_epoch"] > 0 for r in rows):
            resumed.append(rows)
    assert resumed  # the lost node's trial went on from its checkpoint, not from scratch
    for rows in resumed:
        assert rows[0]["node_id"] == lost.node_id and rows[-1]["node_id"] != lost.node_id
