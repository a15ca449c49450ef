"""The MLflow tracker alone, against a temporary SQLite store: no Ray, no training.

Trial results are made by hand; what is checked is the layout a sweep leaves in MLflow, that writing a
trial twice changes nothing, that a half-written trial is rewritten, that a trial run turns FINISHED only
after its seed runs, and that reading the store back gives the results that were written.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import requests
from conftest import mlflow_runs
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from initsweep.config import parse_config
from initsweep.mlflow_server import server_env
from initsweep.results import DataLineage, SeedResult, TrialResult
from initsweep.tracking import (
    RESPONSE_CUT_RETRIES,
    Tracker,
    TrackingUnavailable,
    _outage_is_unavailable,
    artifact_root,
    read_sweep,
)

SWEEP = parse_config(
    {
        "name": "tracked",
        "seeds": [0, 1],
        "schemes": [{"scheme": "uniform_fan_in", "c": 1.5}, {"scheme": "orthogonal", "label": "ortho"}],
        "grid": {"model.depth": [2, 3]},
    }
)
DIAG = [{"layer": "1:Linear", "weight_mean": 0.0, "weight_std": 0.1, "act_mean": 0.0, "act_std": 1.0, "grad_norm": 0.5}]


def result(index: int, trial_id: str, diverged: bool = False) -> TrialResult:
    seeds = []
    for seed in SWEEP.seeds:
        epochs = [
            {"train_loss": 1.0 - 0.1 * e, "last_batch_loss": 0.9, "val_loss": 0.8, "val_accuracy": 70.0 + e + seed}
            for e in range(2)
        ]
        step = 7 if diverged and seed == 1 else None
        seeds.append(SeedResult(seed, epochs, [(10, 2.0), (20, 1.5)], {"test_accuracy": 69.0 + seed}, step, DIAG, 1.25))
    return TrialResult(SWEEP.trials()[index], seeds, trial_id=trial_id)


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    t = Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    t.start_sweep(SWEEP, "sweep1", str(tmp_path / "tune"))
    return t


def test_a_trial_is_written_once_with_its_seed_runs_nested(tracker, tmp_path):
    assert tracker.record_trial(result(0, "t0")) is not None
    assert tracker.record_trial(result(0, "t0")) is None  # already recorded: nothing written
    runs = mlflow_runs(tracker.tracking_uri, "tracked")
    assert len(runs["sweep"]) == 1 and len(runs["trial"]) == 1 and len(runs["seed"]) == 2
    trial = runs["trial"][0]
    assert trial.info.status == "FINISHED" and trial.info.run_name == "uniform_fan_in(c=1.5) depth=2"
    assert trial.data.params["c"] == "1.5" and trial.data.params["model.depth"] == "2"
    assert trial.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
    assert {s.data.tags["mlflow.parentRunId"] for s in runs["seed"]} == {trial.info.run_id}
    assert trial.data.metrics["val_accuracy"] == pytest.approx(71.5)  # the mean of 71 and 72 at epoch 2
    # artifacts of an SQLite store go beside it, not into the working folder
    assert artifact_root(tracker.tracking_uri) == tmp_path / "mlruns"
    assert (tmp_path / "mlruns").is_dir()


def test_a_half_written_trial_is_deleted_and_written_again(tracker):
    c = tracker.client
    # What a driver killed mid-write leaves: a RUNNING trial run with one of its seed runs.
    tags = {"sweep_id": "sweep1", "trial_id": "t1", "run_kind": "trial", "mlflow.parentRunId": tracker.parent_run_id}
    partial = c.create_run(tracker.experiment_id, tags=tags, run_name="partial").info.run_id
    seed_tags = tags | {"run_kind": "seed", "mlflow.parentRunId": partial}
    c.create_run(tracker.experiment_id, tags=seed_tags, run_name="partial seed")
    tracker.record_trial(result(1, "t1"))
    runs = mlflow_runs(tracker.tracking_uri, "tracked")
    assert [r.info.run_name for r in runs["trial"]] == ["ortho depth=2"]
    assert len(runs["seed"]) == 2 and all(r.info.status == "FINISHED" for r in runs["trial"] + runs["seed"])


def test_the_trial_run_turns_finished_after_its_seed_runs(tracker):
    tracker.record_trial(result(2, "t2"))
    runs = mlflow_runs(tracker.tracking_uri, "tracked")
    trial_end = runs["trial"][0].info.end_time
    assert all(s.info.end_time <= trial_end for s in runs["seed"])


def test_reading_the_store_back_gives_the_results_written(tracker):
    written = [result(0, "t0"), result(3, "t3", diverged=True)]
    for r in written:
        tracker.record_trial(r)
    tracker.record_trial(TrialResult(SWEEP.trials()[1], [], trial_id="t1", error="Traceback ...\nValueError: boom"))
    tracker.end_sweep("FINISHED", {"trials_finished": 2})
    client = MlflowClient(tracker.tracking_uri)
    sweep, read = read_sweep(client, client.get_run(tracker.parent_run_id))
    assert sweep == SWEEP
    assert [(r.name, r.trial_id, r.config) for r in read] == [(r.name, r.trial_id, r.config) for r in written]
    for got, want in zip(read, written, strict=True):
        assert [s.to_dict() for s in got.seeds] == [s.to_dict() for s in want.seeds]
    failed = mlflow_runs(tracker.tracking_uri, "tracked")["trial"]
    assert {r.info.status for r in failed} == {"FINISHED", "FAILED"}
    assert next(r for r in failed if r.info.status == "FAILED").data.tags["error"] == "ValueError: boom"


class _Flaky:
    """A Tracker write whose first `fails` calls end as MLflow's client ends them when the server goes
    away: an MlflowException raised from `cause` (a response cut off mid-way cannot be produced on a
    real server at will; tests/test_faults.py stops one mid-sweep)."""

    tracking_uri = "http://user:secret@127.0.0.1:5000"

    def __init__(self, fails: int, cause: Exception):
        self.fails, self.cause, self.calls = fails, cause, 0

    @_outage_is_unavailable
    def write(self) -> str:
        self.calls += 1
        if self.calls <= self.fails:
            raise MlflowException("API request failed") from self.cause
        return "written"


def test_a_response_cut_off_midway_is_written_again_and_an_outage_is_one_line():
    cut = requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
    assert _Flaky(RESPONSE_CUT_RETRIES, cut).write() == "written"  # idempotent writes: made again
    with pytest.raises(
        TrackingUnavailable,
        match=r"^--tracking-uri http://user:\*\*\*@127.0.0.1:5000: .*"
        r"\(ChunkedEncodingError, after MLflow's retries\)$",
    ):
        _Flaky(RESPONSE_CUT_RETRIES + 1, cut).write()
    refused = _Flaky(1, requests.exceptions.ConnectionError("refused"))  # MLflow has retried these already
    with pytest.raises(TrackingUnavailable, match=r"\(ConnectionError, after MLflow's retries\)$"):
        refused.write()
    assert refused.calls == 1


def test_each_run_records_its_data_once_across_rewrites_and_resumes(tmp_path):
    """The lineage the driver computed is every run's one dataset input; recording a trial again, resuming
    the sweep (the same data) and reading it back add nothing (tests/test_sweep.py checks a real sweep's)."""
    sizes = {"train": 8, "val": 2, "test": 4}
    seen = DataLineage("fashion_mnist", "/data", "0123456789abcdef", sizes, {"split_seed": 3})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri)
    tracker.start_sweep(SWEEP, "sweep1", str(tmp_path / "tune"), seen)
    tracker.record_trial(result(0, "t0"))
    tracker.record_trial(result(0, "t0"))  # already recorded: nothing written
    resumed = Tracker(uri)
    resumed.start_sweep(SWEEP, "sweep1", str(tmp_path / "tune"), seen)
    resumed._log_data(resumed.parent_run_id)  # logging it twice is harmless too
    resumed.record_trial(result(1, "t1"))
    runs = mlflow_runs(uri, "tracked")
    assert [len(runs[kind]) for kind in ("sweep", "trial", "seed")] == [1, 2, 4]
    for run in runs["sweep"] + runs["trial"] + runs["seed"]:
        (data_input,) = run.inputs.dataset_inputs
        d = data_input.dataset
        assert (d.name, d.digest, d.source_type) == ("fashion_mnist", seen.digest, "local")
        assert json.loads(d.source) == {"uri": "/data"}
        assert json.loads(d.profile) == {"sizes": sizes, "split_seed": 3}
        assert [(t.key, t.value) for t in data_input.tags] == [("mlflow.data.context", "training")]
    client = MlflowClient(uri)
    assert len(read_sweep(client, runs["sweep"][0])[1]) == 2


class _AnswerLost(http.server.BaseHTTPRequestHandler):
    """A proxy in front of a real `mlflow server` that forwards each write once and then drops the connection
    instead of answering: the write is made, its answer lost, as when a server dies mid-reply. MLflow's
    client makes the request again (the second, identical one is answered)."""

    upstream: str  # the server's URI
    seen: set  # (path, body) of the writes made so far

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        reply = requests.request(self.command, self.upstream + self.path, data=body, headers=headers, timeout=60)
        if self.command != "GET" and (self.path, body) not in self.seen:
            self.seen.add((self.path, body))
            self.close_connection = True
            return
        self.send_response(reply.status_code)
        if "Content-Type" in reply.headers:
            self.send_header("Content-Type", reply.headers["Content-Type"])
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

    def log_message(self, *args):
        pass


def test_a_create_whose_answer_was_lost_leaves_no_orphan_run_on_a_server(mlflow_server, tmp_path):
    """Over HTTP MLflow retries every request, `create_run` included: a run created but never answered must
    not stay RUNNING beside the one that was (CI saw one after tests/test_faults.py's 30 s outage)."""
    handler = type("Proxy", (_AnswerLost,), {"upstream": mlflow_server, "seen": set()})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{proxy.server_address[1]}"
        tracker = Tracker(uri)
        tracker.start_sweep(SWEEP.model_copy(update={"name": "answers-lost"}), "sweep1", str(tmp_path / "tune"))
        tracker.record_trial(result(0, "t0"))
        tracker.end_sweep("FINISHED")
    finally:
        proxy.shutdown()
    assert sum(path.endswith("/runs/create") for path, _ in handler.seen) == 4  # sweep, trial, 2 seeds: twice
    runs = mlflow_runs(mlflow_server, "answers-lost")
    assert {kind: [r.info.status for r in runs[kind]] for kind in runs} == {
        "sweep": ["FINISHED"],
        "trial": ["FINISHED"],
        "seed": ["FINISHED", "FINISHED"],
    }
    assert {r.data.tags["mlflow.parentRunId"] for r in runs["seed"]} == {runs["trial"][0].info.run_id}
    history = MlflowClient(mlflow_server).get_metric_history(runs["seed"][0].info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]  # a log_batch made twice logs each value once


def test_our_mlflow_server_runs_without_mlflows_job_runner_unless_the_environment_asks_for_it():
    """test_ui.py checks the real server's processes; here, that the user's own setting wins."""
    name = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
    assert server_env({})[name] == "false" and server_env({name: "true", "X": "1"}) == {name: "true", "X": "1"}
