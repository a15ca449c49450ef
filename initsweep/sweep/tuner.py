"""The Tuner: a sweep assembled from its config (grid or Optuna search, scheduler, resources), started
or restored from its folder, recorded in MLflow, and reported from what MLflow holds.

The dataset travels once through the object store (`tune.with_parameters`), as NumPy arrays that every
worker of a node maps instead of copying (`SharedData`); actors are reused between trials. A sweep is
identified by its name and a hash of its config (resources excluded), so the same command resumes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from filelock import FileLock
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from initsweep.config import SweepConfig
from initsweep.engine.data import Data, lineage, load_raw
from initsweep.report.build import Report, build_report
from initsweep.results import DataLineage, TrialResult, best
from initsweep.sweep.callbacks import Live, Progress, RecordTrials, attach
from initsweep.sweep.cluster import check_cluster, check_resources
from initsweep.sweep.resources import GIB
from initsweep.sweep.search import BatchedOptunaSearch, study_name
from initsweep.sweep.space import grid_cells, shard_tail
from initsweep.sweep.staged import StagedSearch
from initsweep.sweep.storage import experiment_dir, remove_stale_partials, sweep_id_in, whole_filesystem
from initsweep.sweep.trainable import StoredData, train_trial
from initsweep.tracking import Tracker, TrackingUnavailable, is_local_uri, mark, masked, read_failures, read_sweep

__all__ = ["SlotUse", "SweepOutcome", "optuna_location", "run_sweep", "slot_count"]


@dataclass(frozen=True)
class SlotUse:
    """How busy the sweep kept its trial slots while Tune ran (`tuner.fit`): busy slot-seconds (each
    trial attempt's time in its trainable, this run's attempts only) over slots x that wall time. The
    sweep's own start and end (imports, Ray's start, the report) lie outside it."""

    slots: int
    fit_s: float
    busy_s: float

    @property
    def share(self) -> float:
        return self.busy_s / (self.slots * self.fit_s) if self.fit_s > 0 else 0.0

    def line(self) -> str:
        return f"slots busy {self.share:.0%} of the {self.fit_s:.1f} s the trials ran ({self.slots} slots)"


@dataclass
class SweepOutcome:
    sweep_id: str
    experiment_dir: Path
    experiment_id: str
    parent_run_id: str
    report: Report | None
    """The report over every finished trial (None when none finished)."""
    resumed: bool
    results: list[TrialResult]
    """Every trial recorded with a result (a tuned sweep's candidates included), as MLflow holds it."""
    failed: list[tuple[str, str]]
    """(name, the error's last line) of each trial that failed after its retries."""
    slot_use: SlotUse | None = None
    """How busy the trial slots were while Tune ran (None when no trial ran in this run)."""


def run_sweep(
    sweep: SweepConfig,
    data: Data | StoredData,
    tracker: Tracker,
    *,
    storage_path: str,
    report_dir: str = "reports",
    fresh: bool = False,
    verbose: bool = False,
    printer=print,
    progress_bar: bool = False,
    data_lineage: DataLineage | None = None,
    trials_done: Callable[[], None] | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep on the connected Ray cluster and record it through `tracker`. `data` goes
            to the object store once, unless it is there already (`StoredData.put`: then a caller that drops its
            own `Data` keeps no private copy during the sweep, as `initsweep.api.run_sweep` does). `progress_bar`: one
        live bar (done/total, best so far, ETA) instead of a line per finished trial. `data_lineage`: what MLflow
    records of the data (computed from `data` when it is a `Data`). `trials_done`: called once Tune has
    finished, before the report (the API shuts its embedded Ray down meanwhile)."""
    exp_dir = experiment_dir(sweep, storage_path)
    check_resources(sweep.resources, printer)  # before anything is written: a trial no node can hold
    check_cluster(is_local_uri(tracker.tracking_uri), masked(tracker.tracking_uri), exp_dir.parent)
    sweep_id = sweep_id_in(exp_dir, fresh)
    storage = whole_filesystem()
    can_restore = tune.Tuner.can_restore(str(exp_dir), storage)
    if data_lineage is None and isinstance(data, Data):
        data_lineage = lineage(sweep.data, data)
    parent = tracker.start_sweep(sweep, sweep_id, str(exp_dir), data_lineage)

    stored = data if isinstance(data, StoredData) else StoredData.put(data)
    load_raw.cache_clear()  # the files read for it: trials read the store's copy
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, sweep=sweep, data=stored, exp_dir=str(exp_dir)),
        {
            "cpu": sweep.resources.cpus_per_trial,
            "gpu": sweep.resources.gpus_per_trial,
            "memory": (sweep.resources.memory_gb_per_trial or 0) * GIB,
            "custom_resources": dict(sweep.resources.custom),
        },
    )
    attach(sweep_id, Live(sweep, tracker, printer, progress_bar))  # before a restore unpickles the callbacks
    if can_restore:
        printer(f"resuming sweep {sweep_id} from {exp_dir}", flush=True)
        remove_stale_partials(exp_dir)  # what writes cut short by a kill left beside their whole versions
        tuner = tune.Tuner.restore(
            str(exp_dir), trainable, resume_errored=False, restart_errored=False, storage_filesystem=storage
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"cell": tune.grid_search(_cells(sweep))} if _plain_grid(sweep) else {},
            tune_config=_tune_config(sweep, exp_dir, sweep_id),
            run_config=tune.RunConfig(
                name=exp_dir.name,
                storage_path=str(exp_dir.parent),
                storage_filesystem=storage,  # every file written whole: a killed driver leaves state that reads
                callbacks=[Progress(sweep_id), RecordTrials(sweep_id)],
                verbose=2 if verbose else 0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last epoch's is all a retry needs
                failure_config=tune.FailureConfig(max_failures=sweep.resources.max_failures),
            ),
        )
    fit_start, fit_clock = time.time(), time.perf_counter()
    mark("fit_started")
    try:
        grid = tuner.fit()
    except BaseException as err:
        outage = _outage_in(err)
        if outage is None:
            tracker.end_sweep("KILLED")
            raise
        raise outage from None  # Tune's state and checkpoints are saved: the same command resumes

    slot_use = _slot_use(sweep, grid, fit_start, time.perf_counter() - fit_clock)
    mark("fit_returned")
    if trials_done is not None:
        trials_done()
    # What MLflow holds is the sweep's record, whichever run of the command wrote each trial.
    _, results = read_sweep(tracker.client, tracker.client.get_run(parent))
    failed = read_failures(tracker.client, tracker.client.get_run(parent))
    metric = sweep.objective.metric
    judged = [r for r in results if r.config.stage != "tune"]  # a tuning candidate is never "the best"
    top = best(judged, sweep.objective.mode, value=lambda r: r.mean(metric), diverged=lambda r: r.n_diverged > 0)
    complete = len(results) + len(failed) >= sweep.n_trials
    summary = {"trials_finished": len(results), "trials_failed": len(failed)}
    if top:
        summary["best_objective"] = top.mean(metric)
    if complete and sweep.search is not None:
        close_stale_optuna_trials(sweep, exp_dir, sweep_id)
    report = None
    if results:  # drawn from MLflow, exactly as `sweeps/report.py` rebuilds it later
        report = build_report(results, sweep, Path(report_dir) / f"{sweep.name}-{sweep_id}", failed=failed)
        mark("report_built")
        tracker.log_report(report.folder)
        if report.chosen:
            tracker.log_chosen(report.chosen)
    tracker.end_sweep("FINISHED" if complete else "KILLED", summary)
    return SweepOutcome(
        sweep_id,
        exp_dir,
        tracker.experiment_id,
        parent,
        report,
        resumed=can_restore,
        results=results,
        failed=failed,
        slot_use=slot_use,
    )


def slot_count(sweep: SweepConfig) -> int:
    """Trials the connected cluster runs at once: its CPUs (and GPUs, where trials ask for them) over what a
    trial asks, at most `resources.max_concurrent`."""
    r, total = sweep.resources, ray.cluster_resources()
    slots = int(total.get("CPU", 1) // r.cpus_per_trial)
    if r.gpus_per_trial > 0:
        slots = min(slots, int(total.get("GPU", 0) // r.gpus_per_trial))
    return max(1, min(slots, r.max_concurrent or slots))


def _cells(sweep: SweepConfig) -> list[dict]:
    """A plain grid's Tune trials: its cells, the last round's split into seed shards where slots would
    idle (fifo only: ASHA judges each trial on its own seeds)."""
    cells = grid_cells(sweep)
    if not sweep.resources.split_tail or sweep.scheduler.kind != "fifo":
        return cells
    return shard_tail(cells, sweep.seeds, slot_count(sweep))


def _slot_use(sweep: SweepConfig, grid, fit_start: float, fit_s: float) -> SlotUse | None:
    """Busy slot-seconds of the trials that reported in this run, against the slots x `fit_s`."""
    busy = [
        r.metrics["busy_s"]
        for r in grid
        if r.metrics and "busy_s" in r.metrics and r.metrics.get("timestamp", 0) >= fit_start
    ]
    return SlotUse(slot_count(sweep), fit_s, sum(busy)) if busy else None


def _outage_in(err: BaseException | None) -> TrackingUnavailable | None:
    """The tracking outage behind an error, however deep Tune wrapped it."""
    while err is not None and not isinstance(err, TrackingUnavailable):
        err = err.__cause__ or err.__context__
    return err


def _plain_grid(sweep: SweepConfig) -> bool:
    """A grid Tune runs by itself; a tuned grid's trials come from `StagedSearch`."""
    return sweep.schemes is not None and sweep.tune is None


def close_stale_optuna_trials(sweep: SweepConfig, exp_dir: Path, sweep_id: str) -> None:
    """Mark FAIL any Optuna trial a finished sweep left RUNNING (one whose Tune trial never reported)."""
    study = optuna.load_study(study_name=study_name(sweep.name, sweep_id), storage=optuna_storage(sweep, exp_dir))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


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
        if max_concurrent is None:  # a search needs a bound, or it asks for every trial at once
            max_concurrent = slot_count(sweep)
        search_alg = BatchedOptunaSearch(
            sweep.search,
            study=study_name(sweep.name, sweep_id),
            storage=optuna_storage(sweep, exp_dir),
            metric="objective",
            mode=obj.mode,
            batch_size=sweep.search.batch_size or max_concurrent,
        )
        num_samples = sweep.search.n_trials
    elif sweep.tune is not None:
        search_alg = StagedSearch(
            sweep, study=study_name(sweep.name, sweep_id), storage=optuna_storage(sweep, exp_dir), metric="objective"
        )
        num_samples = sweep.n_trials
    return tune.TuneConfig(
        metric="objective",
        mode=obj.mode,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=num_samples,
        max_concurrent_trials=max_concurrent,
        reuse_actors=sweep.resources.reuse_actors,
    )


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

    journal = optuna_location(sweep, exp_dir)
    return optuna.storages.JournalStorage(JournalFileBackend(journal, lock_obj=JournalLock(journal)))


class JournalLock:
    """The Optuna journal's write lock as an OS file lock (`filelock`: fcntl), which the kernel lets go of
    when its holder dies.

    Optuna's default lock is a symlink that outlives a driver killed while appending to the journal: the
    resumed sweep then waited out its 30 s grace period, logging a warning every 10 s. Only the driver
    writes a sweep's journal (the search runs in it), from one machine."""

    def __init__(self, journal: str):
        self.journal = journal
        self.lock = FileLock(journal + ".flock")

    def __reduce__(self):
        """Pickled as the journal's path (Tune saves its searcher, the study's storage with it): a copy in
        another process starts unlocked, as a held lock belongs to its process."""
        return JournalLock, (self.journal,)

    def acquire(self) -> bool:
        self.lock.acquire()
        return True

    def release(self) -> None:
        self.lock.release()
