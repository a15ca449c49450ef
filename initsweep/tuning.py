"""Ray Tune wiring: a thin trainable around `run_trial`, the Tuner, resources, scheduler and restore.

The trainable only translates: Tune config -> `TrialConfig`, each epoch's seed results -> one
`tune.report` (means and stds over seeds, the objective, and the seeds' full history as JSON so the
driver can record a trial from its last result alone). The dataset travels once through the object
store (`tune.with_parameters`); actors are reused between trials.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from initsweep import faults
from initsweep.config import ConfigError, SweepConfig
from initsweep.data import Data
from initsweep.report import Report, ReportRow, aggregate, build_report
from initsweep.search import OptunaSpace, grid_cells, make_sampler, trial_from_params
from initsweep.tracking import Tracker, TrialRecord, is_local_uri, log_report, read_failures, read_sweep
from initsweep.train import SeedResult, run_trial

__all__ = ["SweepOutcome", "connect", "experiment_dir", "run_sweep", "sweep_hash"]

SWEEP_FILE = "initsweep-sweep.json"
CHECKPOINT_FILE = "training-state.pt"


def train_trial(config: dict[str, Any], *, sweep: SweepConfig, data: Data, exp_dir: str) -> None:
    """The Ray Tune trainable: one trial config on all the sweep's seeds, one report per epoch.

    Every report carries a checkpoint of the whole training state, so a retried trial (a lost node, an
    error) or a resumed sweep goes on after the last epoch it reported instead of starting over.
    """
    torch.set_num_threads(max(1, int(sweep.resources.cpus_per_trial)))
    trial = trial_from_params(sweep, config)
    use_cuda = sweep.resources.gpus_per_trial > 0 and torch.cuda.is_available()
    node_id = ray.get_runtime_context().get_node_id()
    resume = latest_state(Path(exp_dir) / Path(tune.get_context().get_trial_dir()).name)
    names = (trial.name, trial.scheme.name, trial.scheme.scheme)  # for injected faults (tests)
    restored_epoch = resume["epoch"] if resume else 0
    faults.maybe_fail(names, resumed=resume is not None, epoch=None)

    def report(epoch: int, seeds: list[SeedResult], snapshot) -> None:
        metrics = epoch_report(sweep, epoch, seeds) | {
            "node_id": node_id,
            "device": "cuda" if use_cuda else "cpu",
            "restored_epoch": restored_epoch,  # epochs this attempt did not train (from a checkpoint)
        }
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        faults.maybe_fail(names, resumed=resume is not None, epoch=epoch)

    if resume is not None and restored_epoch >= trial.train.epochs:  # finished, but the driver missed it
        seeds = [SeedResult.from_dict(d) for run in resume["runs"] for d in run["results"]]
        report(restored_epoch, seeds, lambda: resume)
        return
    run_trial(trial, data, device="cuda" if use_cuda else "cpu", on_epoch=report, resume=resume)


def latest_state(trial_folder: Path) -> dict | None:
    """The newest training state among a trial's checkpoints on storage, or None.

    Read from the folder rather than from `tune.get_checkpoint()`: Tune's record of a trial's latest
    checkpoint is saved by the driver a moment after the worker wrote it, so a killed driver can hand a
    resumed trial an older one, and the epochs after it would train twice.
    """
    newest = None
    for path in trial_folder.glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        try:
            state = torch.load(path, weights_only=True)
        except Exception:  # a checkpoint cut short by a killed process: use an older one
            continue
        if newest is None or state["epoch"] > newest["epoch"]:
            newest = state
    return newest


def epoch_report(sweep: SweepConfig, epoch: int, seeds: list[SeedResult]) -> dict[str, Any]:
    """Means and stds over seeds at `epoch`, the objective, and every seed's history so far."""
    metrics = aggregate(seeds, epoch)
    if seeds[0].test_accuracy is not None:  # the last epoch
        metrics |= {k: v for k, v in aggregate(seeds).items() if k.startswith("test_accuracy")}
    metrics["objective"] = metrics[sweep.objective.metric]
    metrics["epoch"] = epoch
    metrics["seed_results"] = json.dumps([s.to_dict() for s in seeds])
    return metrics


def seeds_of(result: dict[str, Any] | None) -> list[SeedResult]:
    if not result or "seed_results" not in result:
        return []
    return [SeedResult.from_dict(d) for d in json.loads(result["seed_results"])]


def sweep_hash(sweep: SweepConfig) -> str:
    """Identifies what a sweep computes (resources excluded): the same config resumes the same sweep."""
    science = sweep.model_dump(mode="json", exclude={"resources"})
    return hashlib.sha256(json.dumps(science, sort_keys=True).encode()).hexdigest()[:8]


def experiment_dir(sweep: SweepConfig, storage_path: str) -> Path:
    return Path(storage_path).expanduser().resolve() / f"{sweep.name}-{sweep_hash(sweep)}"


class Progress(tune.Callback):
    """One line per finished trial: done/total, its objective, the best so far, elapsed time and ETA."""

    def __init__(self, sweep: SweepConfig, printer=print):
        self.sweep, self.printer = sweep, printer
        self.start, self.done_at_start = time.monotonic(), None

    def setup(self, **info) -> None:
        self.start, self.done_at_start = time.monotonic(), None

    def _line(self, trials: list[Trial], trial: Trial, failed: bool) -> None:
        total = self.sweep.n_trials
        finished = [t for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR) or t is trial]
        done = len(finished)
        if self.done_at_start is None:
            self.done_at_start = done - 1
        elapsed = time.monotonic() - self.start
        rate = elapsed / max(1, done - self.done_at_start)
        obj = self.sweep.objective
        label = trial_from_params(self.sweep, trial.config).name
        r = trial.last_result or {}
        if failed or "objective" not in r:
            what = "FAILED" if failed else "stopped before its first epoch"
        else:
            what = f"{obj.metric} {r['objective']:.4g} ± {r.get(obj.metric + '_std', 0):.2g}"
            what += f" ({int(r['diverged'])} diverged)" if r.get("diverged") else ""
            if r["epoch"] < self.sweep.train.epochs:
                what += f", stopped early after epoch {r['epoch']}"
            if r.get("restored_epoch", 0) >= r["epoch"]:
                what += " (finished before the restart: nothing trained)"
        best = _best(finished, obj.mode)
        best_text = (
            f"best {trial_from_params(self.sweep, best.config).name} {best.last_result['objective']:.4g}"
            if best
            else "best -"
        )
        self.printer(
            f"[{done}/{total}] {label}: {what}  (trial {trial.trial_id}) | {best_text} | "
            f"{_clock(elapsed)} elapsed, ETA {_clock(rate * max(0, total - done))}",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, failed=True)


def _best(trials: list[Trial], mode: str) -> Trial | None:
    """The best finished trial by its objective; diverged trials never count as best."""
    ok = [t for t in trials if t.last_result and "objective" in t.last_result and not t.last_result.get("diverged")]
    if not ok:
        return None
    pick = max if mode == "max" else min
    return pick(ok, key=lambda t: t.last_result["objective"])


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class RecordTrials(tune.Callback):
    """Writes each trial to MLflow from the driver as soon as it finishes or fails.

    At the end it goes over every trial once more: a resumed sweep's trials that finished before the
    interruption are recorded if an earlier driver died before writing them (writes are idempotent).
    """

    def __init__(self, tracker: Tracker, sweep: SweepConfig):
        self.tracker, self.sweep = tracker, sweep

    def _record(self, trial: Trial, error: str | None = None) -> None:
        self.tracker.record_trial(record_of(self.sweep, trial.trial_id, trial.config, trial.last_result, error))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._record(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial, _error_text(trial))

    def on_experiment_end(self, trials, **info) -> None:
        for trial in trials:
            # An interrupted sweep ends its running trials TERMINATED too, but without a `done` result.
            last = trial.last_result or {}
            if trial.status == Trial.TERMINATED and (last.get("done") or last.get("epoch") == self.sweep.train.epochs):
                self._record(trial)
            elif trial.status == Trial.ERROR:
                self._record(trial, _error_text(trial))


def _error_text(trial: Trial) -> str:
    path = getattr(trial, "error_file", None)
    try:
        return Path(path).read_text() if path else "trial failed"
    except OSError:
        return "trial failed"


def record_of(sweep: SweepConfig, trial_id: str, config: dict, result: dict | None, error: str | None = None):
    return TrialRecord(
        trial_id=trial_id,
        trial=trial_from_params(sweep, config),
        seeds=seeds_of(result),
        error=error,
        node_id=(result or {}).get("node_id"),
    )


@dataclass
class SweepOutcome:
    sweep_id: str
    experiment_dir: Path
    experiment_id: str
    parent_run_id: str
    report: Report | None
    """The report over every finished trial (None when none finished)."""
    best: tuple[str, float] | None
    """(trial name, objective) of the best trial that neither diverged nor failed."""
    resumed: bool
    n_errors: int


def connect(address: str | None, verbose: bool = False, listen: str | None = None) -> str | None:
    """Start an embedded Ray or join a cluster; returns the dashboard URL.

    The embedded Ray's dashboard and Jobs API (which runs whatever code it is sent) listen on 127.0.0.1
    unless `listen` names another address of this machine, or 0.0.0.0 for all of them; its node services
    do too when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set before Ray was imported (`sweeps/run.py`
    does). Ray's token authentication stays on either way. `ConfigError` when the cluster cannot be
    reached."""
    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = {"logging_level": "INFO" if verbose else "ERROR", "log_to_driver": verbose}
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            context = ray.init(address=address, **kwargs)
        else:
            if listen not in (None, "0.0.0.0"):
                kwargs["_node_ip_address"] = listen
            # "local": a new Ray of our own, even where another one runs on this machine (`ray start`, or
            # a second sweep): without it ray.init() would join that one.
            context = ray.init(address="local", dashboard_host=listen or "127.0.0.1", include_dashboard=True, **kwargs)
        return context.dashboard_url or None
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first})") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (ray.init would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({err})") from None


def check_cluster(tracking_uri: str, storage: Path) -> None:
    """On a multi-node cluster, refuse stores that the other nodes or the user's UI cannot share."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) < 2:
        return
    if is_local_uri(tracking_uri):
        raise ConfigError(
            f"--tracking-uri {tracking_uri}: a multi-node cluster needs an MLflow tracking server "
            "(e.g. --tracking-uri http://HEAD_IP:5000), not a local file or SQLite store"
        )
    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".initsweep-shared-{uuid.uuid4().hex}"
    marker.write_text("shared?")
    try:
        seen = ray.get(
            [
                _exists.options(
                    scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                        n["NodeID"], soft=False
                    )
                ).remote(str(marker))
                for n in nodes
            ]
        )
    finally:
        marker.unlink(missing_ok=True)
    blind = [n["NodeManagerAddress"] for n, ok in zip(nodes, seen, strict=True) if not ok]
    if blind:
        raise ConfigError(
            f"--storage-path {storage}: not visible from node {blind[0]}; multi-node sweeps need a folder "
            "every node shares (an NFS mount)"
        )


@ray.remote(num_cpus=0)
def _exists(path: str) -> bool:
    return os.path.exists(path)


def _sweep_id(exp_dir: Path, fresh: bool) -> str:
    """The sweep's id, kept in its Tune folder; `fresh` moves an earlier start aside first."""
    meta = exp_dir / SWEEP_FILE
    if fresh and exp_dir.exists():
        exp_dir.rename(exp_dir.with_name(f"{exp_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"))
    if meta.is_file():
        return json.loads(meta.read_text())["sweep_id"]
    exp_dir.mkdir(parents=True, exist_ok=True)
    sweep_id = uuid.uuid4().hex[:12]
    meta.write_text(json.dumps({"sweep_id": sweep_id}))
    return sweep_id


def run_sweep(
    sweep: SweepConfig,
    data: Data,
    *,
    tracking_uri: str,
    storage_path: str,
    report_dir: str = "reports",
    fresh: bool = False,
    verbose: bool = False,
    printer=print,
) -> SweepOutcome:
    """Run (or resume) a sweep on the connected Ray cluster and record it in MLflow."""
    exp_dir = experiment_dir(sweep, storage_path)
    check_cluster(tracking_uri, exp_dir.parent)
    sweep_id = _sweep_id(exp_dir, fresh)
    tracker = Tracker(tracking_uri, sweep, sweep_id)
    parent = tracker.start_sweep(str(exp_dir))

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, sweep=sweep, data=data, exp_dir=str(exp_dir)),
        {"cpu": sweep.resources.cpus_per_trial, "gpu": sweep.resources.gpus_per_trial},
    )
    recorder = RecordTrials(tracker, sweep)
    callbacks = [Progress(sweep, printer), recorder]
    can_restore = tune.Tuner.can_restore(str(exp_dir))
    if can_restore:
        printer(f"resuming sweep {sweep_id} from {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_errored=False, restart_errored=False)
        # A restored Tuner brings back pickled callbacks; use this run's (new URI, fresh clocks).
        tuner._local_tuner.get_run_config().callbacks = callbacks
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(sweep),
            tune_config=_tune_config(sweep, exp_dir, sweep_id),
            run_config=tune.RunConfig(
                name=exp_dir.name,
                storage_path=str(exp_dir.parent),
                callbacks=callbacks,
                verbose=2 if verbose else 0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last epoch's is all a retry needs
                failure_config=tune.FailureConfig(max_failures=sweep.resources.max_failures),
            ),
        )
    try:
        tuner.fit()
    except BaseException:
        tracker.end_sweep("KILLED")
        raise

    # What MLflow holds is the sweep's record, whichever run of the command wrote each trial.
    parent_run = tracker.client.get_run(parent)
    _, rows = read_sweep(tracker.client, parent_run)
    failed = read_failures(tracker.client, parent_run)
    best = best_row(rows, sweep)
    complete = len(rows) + len(failed) >= sweep.n_trials
    summary = {"trials_finished": len(rows), "trials_failed": len(failed)}
    if best:
        summary["best_objective"] = best[1]
    if complete and sweep.search is not None:
        close_stale_optuna_trials(sweep, exp_dir, sweep_id)
    report = None
    if rows:  # drawn from MLflow, exactly as `sweeps/report.py` rebuilds it later
        report = build_report(rows, sweep, Path(report_dir) / f"{sweep.name}-{sweep_id}", failed=failed)
        log_report(tracker.client, parent, report.folder)
    tracker.end_sweep("FINISHED" if complete else "KILLED", summary)
    return SweepOutcome(
        sweep_id,
        exp_dir,
        tracker.experiment_id,
        parent,
        report,
        best,
        resumed=can_restore,
        n_errors=len(failed),
    )


def best_row(rows: list[ReportRow], sweep: SweepConfig) -> tuple[str, float] | None:
    """(name, objective) of the best trial; trials with a diverged seed never count as best."""
    scored = [(r.name, r.objective) for r in rows if not any(s.diverged for s in r.seeds)]
    if not scored:
        return None
    return (max if sweep.objective.mode == "max" else min)(scored, key=lambda t: t[1])


def close_stale_optuna_trials(sweep: SweepConfig, exp_dir: Path, sweep_id: str) -> None:
    """Mark FAIL any Optuna trial a finished sweep left RUNNING (one whose Tune trial never reported)."""
    study = optuna.load_study(study_name=f"{sweep.name}-{sweep_id}", storage=optuna_storage(sweep, exp_dir))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _param_space(sweep: SweepConfig) -> dict[str, Any]:
    return {"cell": tune.grid_search(grid_cells(sweep))} if sweep.schemes is not None else {}


def _tune_config(sweep: SweepConfig, exp_dir: Path, sweep_id: str) -> tune.TuneConfig:
    obj, sched = sweep.objective, sweep.scheduler
    scheduler = None
    if sched.kind == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=sweep.train.epochs,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
        )
    search_alg, num_samples, max_concurrent = None, 1, sweep.resources.max_concurrent
    if sweep.search is not None:
        search_alg = ResumableOptunaSearch(
            space=OptunaSpace(sweep.search),
            metric="objective",
            mode=obj.mode,
            sampler=make_sampler(sweep.search),
            study_name=f"{sweep.name}-{sweep_id}",
            storage=optuna_storage(sweep, exp_dir),
        )
        num_samples = sweep.search.n_trials
        if max_concurrent is None:  # OptunaSearch needs a bound, or it asks for every trial at once
            cpus = ray.cluster_resources().get("CPU", 1)
            max_concurrent = max(1, int(cpus // sweep.resources.cpus_per_trial))
    return tune.TuneConfig(
        metric="objective",
        mode=obj.mode,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent,
        reuse_actors=sweep.resources.reuse_actors,
    )


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a killed driver.

    Tune saves trial states and the searcher's state one after the other, and the study (in storage)
    moves on without either. After a driver is killed, a restored trial may be unknown to the restored
    searcher (stock OptunaSearch: KeyError), or already closed in the study by the dead driver (stock:
    UpdateFinishedTrialError when it reports again). An unknown trial is matched to its RUNNING Optuna
    trial by its parameters; a closed one is not told anything twice.
    """

    def _open_in_study(self, trial_id: str, result: dict | None) -> bool:
        """Whether the study still waits for this trial (matching an unknown trial to it first)."""
        if trial_id not in self._ot_trials:
            config = (result or {}).get("config", {})
            running = self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            match = next((t for t in running if t.params.items() <= config.items()), None)
            if match is None:
                return False
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, match._trial_id)
        frozen = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
        return not frozen.state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._open_in_study(trial_id, result):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._open_in_study(trial_id, result):
            super().on_trial_complete(trial_id, result, error)
        else:
            self._completed_trials.add(trial_id)


def optuna_location(sweep: SweepConfig, exp_dir: Path) -> str:
    """The study's storage as `optuna-dashboard` takes it: the config's URL, or the journal file's path."""
    if sweep.search and sweep.search.storage:
        return sweep.search.storage
    return str(exp_dir / "optuna-journal.log")


def optuna_storage(sweep: SweepConfig, exp_dir: Path) -> optuna.storages.BaseStorage:
    """The config's storage URL, or a journal file in the sweep's Tune folder (resumes with it)."""
    if sweep.search and sweep.search.storage:
        return optuna.storages.get_storage(sweep.search.storage)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(optuna_location(sweep, exp_dir)))
