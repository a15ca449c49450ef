"""The Python API: run a sweep, or read one back from MLflow, and get its results as DataFrames.

    results = initsweep.run_sweep("sweeps/smoke.yaml", overrides=["train.epochs=1"])
    results.to_dataframe()   # one row per trial and seed: the trial's settings and the seed's metrics
    results.summary()        # the result table: one row per trial, best first, intervals over seeds
    initsweep.load_results("sqlite:///mlflow.db", "smoke")   # the same object, from MLflow alone

`initsweep run` is this `run_sweep` with a terminal around it. Everything a sweep records lives in
MLflow, so `load_results` rebuilds exactly what `run_sweep` returned (the report too, on request).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initsweep.config import ConfigError, SweepConfig, load_config, parse_config
from initsweep.results import TrialResult, best

if TYPE_CHECKING:
    import pandas as pd

    from initsweep.report.build import Report
    from initsweep.sweep.tuner import SlotUse

__all__ = ["SweepResults", "load_results", "run_sweep"]

LISTEN_WARNING = (
    "warning: --listen {listen}: {exposed} accept connections from other machines; Ray's token authentication "
    "is on (the token is in ~/.ray/auth_token)"
)
EXPOSED = {
    False: "Ray's node services",
    True: "Ray's dashboard, its Jobs API (which runs any code it is sent) and its node services",
}
"""What `--listen` opens, without and with `--ray-dashboard`."""


@dataclass
class SweepResults:
    """A sweep's record: its config, every finished trial with its seeds, the failures, and where MLflow
    (and Tune, for a sweep run here) keeps it."""

    sweep: SweepConfig
    trials: list[TrialResult]
    """Every trial with a result, a tuned sweep's candidates (stage "tune") included."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(trial name, the error's last line) of the trials that failed after their retries."""
    tracking_uri: str = ""
    experiment_id: str = ""
    parent_run_id: str = ""
    sweep_id: str = ""
    report: Report | None = None
    experiment_dir: Path | None = None
    """Tune's folder (state, checkpoints): known for a sweep run in this process."""
    seconds: float = 0.0
    slot_use: SlotUse | None = None
    """How busy the trial slots were while Tune ran (a sweep run in this process; None otherwise)."""

    @property
    def judged(self) -> list[TrialResult]:
        """The trials that answer the sweep's question (a tuning candidate only chooses settings)."""
        return [t for t in self.trials if t.config.stage != "tune"]

    @property
    def best(self) -> TrialResult | None:
        """The best judged trial by the objective's mean over seeds; one with a diverged seed never is."""
        obj = self.sweep.objective
        return best(self.judged, obj.mode, value=lambda t: t.mean(obj.metric), diverged=lambda t: t.n_diverged > 0)

    @property
    def complete(self) -> bool:
        return len(self.trials) + len(self.failed) >= self.sweep.n_trials

    def to_dataframe(self) -> pd.DataFrame:
        """One row per trial and seed: `trial` (its name), `row`, `scheme`, `stage`, `trial_id`, `seed`, the
        scheme's parameters as `param.NAME`, the grid, drawn and tuned settings under their dotted keys
        (`model.depth`, `train.lr`), then the seed's final metrics, `diverged`, `epochs` and `seconds`."""
        import pandas as pd

        rows = []
        for t in self.trials:
            settings = {f"param.{k}": v for k, v in t.params.items()} | t.axes | dict(t.config.tuned)
            head = {"trial": t.name, "row": t.row_name, "scheme": t.scheme, "stage": t.config.stage}
            head |= {"trial_id": t.trial_id}
            for s in t.seeds:
                metrics = s.final
                rows.append(
                    head
                    | {"seed": s.seed}
                    | settings
                    | metrics
                    | {"diverged": s.diverged, "epochs": len(s.epochs), "seconds": s.seconds}
                )
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """The result table as data, best first: per judged trial its seeds (`n`), `diverged`, and for each
        final metric its mean and confidence interval (`METRIC`, `METRIC_low`, `METRIC_high`, at
        `report.level`); with a baseline row, the paired difference in the objective and its p-values."""
        import pandas as pd

        from initsweep.report.summary import summarize

        rows = []
        for rank, s in enumerate(summarize(self.judged, self.sweep), 1):
            row: dict[str, Any] = {"rank": rank, "trial": s.trial.name, "n": len(s.trial.seeds)}
            row["diverged"] = s.diverged
            for metric, ci in s.intervals.items():
                row |= {metric: ci.mean, f"{metric}_low": ci.low, f"{metric}_high": ci.high}
            if s.vs_baseline is not None:
                d = s.vs_baseline.difference
                row |= {"vs_baseline": d.mean, "vs_baseline_low": d.low, "vs_baseline_high": d.high}
                row |= {"p_value": s.vs_baseline.p_value, "p_adjusted": s.vs_baseline.p_adjusted}
            rows.append(row)
        return pd.DataFrame(rows).set_index("rank")

    def __repr__(self) -> str:
        top = self.best
        metric = self.sweep.objective.metric
        best_text = f", best {top.name!r} ({metric} {top.mean(metric):.4g})" if top else ""
        return (
            f"<SweepResults {self.sweep.name!r} ({self.sweep_id}): {len(self.trials)}/{self.sweep.n_trials} trials, "
            f"{len(self.failed)} failed{best_text}>"
        )


def _as_config(config: str | os.PathLike | dict | SweepConfig, overrides: Sequence[str]) -> SweepConfig:
    """A path, a raw mapping (as YAML gives it) or a `SweepConfig`, with `--set`-style overrides."""
    if isinstance(config, SweepConfig):
        if not overrides:
            return config
        config = config.model_dump(mode="json", exclude_unset=True)
    if isinstance(config, dict):
        from initsweep.config import apply_override

        raw = {**config}
        for assignment in overrides:
            apply_override(raw, assignment)
        return parse_config(raw)
    return load_config(config, list(overrides))


def run_sweep(
    config: str | os.PathLike | dict | SweepConfig,
    overrides: Sequence[str] = (),
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    storage_path: str = "~/ray_results",
    report_dir: str = "reports",
    fresh: bool = False,
    listen: str | None = None,
    ray_dashboard: bool = False,
    verbose: bool = False,
    progress_bar: bool | None = None,
    printer: Callable[..., Any] = print,
) -> SweepResults:
    """Run (or resume: the same config again) a sweep on Ray Tune, recorded in MLflow, and return its results.

    `config`: a YAML path, a mapping, or a `SweepConfig`; `overrides`: `KEY=VALUE` strings as `--set` takes
    them. `tracking_uri`: default `$MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` here. `address`: a Ray
    cluster (default `$RAY_ADDRESS`, else an embedded Ray on 127.0.0.1, or on `listen`). `ray_dashboard`: the
    embedded Ray also starts its dashboard and Jobs API (off by default: 200 MB and 3 CPU-s a sweep, and
    an API that runs any code it is sent; the results are in MLflow). `progress_bar`: a
    live bar instead of a line per trial (default: when standard output is a terminal and not `verbose`).
    Raises `ConfigError` (one line) on bad input before anything is started or written, and
    `TrackingUnavailable` when the tracking server goes away mid-sweep (run it again to resume).
    """
    from initsweep.sweep.cluster import connect, ray_environment
    from initsweep.sweep.storage import check_saved_state, experiment_dir
    from initsweep.tracking import Tracker, check_tracking_server, default_tracking_uri, mark

    mark("tracking_imported")  # the `INITSWEEP_TIMINGS` seam: the points a sweep passes, for bench/overhead.py
    sweep = _as_config(config, overrides)
    address = address if address is not None else os.environ.get("RAY_ADDRESS")
    tracking_uri = default_tracking_uri(tracking_uri)
    _check_embedded_only(listen, ray_dashboard, address)
    if listen:
        printer(LISTEN_WARNING.format(listen=listen, exposed=EXPOSED[ray_dashboard]), file=sys.stderr)
    check_tracking_server(tracking_uri)  # in seconds, before any training (MLflow would retry for minutes)
    storage = _writable_storage(storage_path)
    if not fresh:
        check_saved_state(experiment_dir(sweep, storage))  # a resume that cannot read its state stops here
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    # An embedded Ray takes seconds to start, mostly waiting on its processes: meanwhile a thread loads the
    # data, checks the sweep (your model built and run on one batch) and opens the MLflow store. A bad
    # dataset or model still stops the sweep before anything is recorded. A cluster's driver prepares first
    # (what the checks import from your folder travels with the job: `working_folder_modules`), and so does a
    # process that imported Ray already (its bad input is reported before `connect` refuses that).
    overlap = not address and "ray" not in sys.modules
    ours = not address and not ("ray" in sys.modules and sys.modules["ray"].is_initialized())  # else a caller's
    if overlap:
        ray_environment(address, listen)  # before the thread may import your code (which may import Ray)
    if not verbose:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    tracker = Tracker(tracking_uri)
    start = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="initsweep-prepare") as pool:
        prepared = pool.submit(_prepare, sweep, tracker if overlap else None)
        if overlap:
            dashboard = connect(address, verbose, listen, ray_dashboard)
            mark("ray_started")
        data = prepared.result()  # its error, if any, here: one line
        if not overlap:
            dashboard = connect(address, verbose, listen, ray_dashboard)
            mark("ray_started")
    kind = "search" if sweep.search else "grid"
    printer(
        f"sweep {sweep.name!r} ({kind}): {sweep.n_trials} trials x {len(sweep.seeds)} seeds on Ray "
        f"({address or 'embedded'}{', dashboard ' + dashboard if dashboard else ''})",
        flush=True,
    )
    import ray

    from initsweep.engine.data import lineage
    from initsweep.sweep.trainable import StoredData
    from initsweep.sweep.tuner import run_sweep as run_tuner  # imports Ray: after connect() set its environment

    mark("tuner_imported")
    data_lineage = lineage(sweep.data, data)  # what MLflow records of it, before the driver drops its copy
    stored = StoredData.put(data)  # every worker of a node maps this one copy
    del data  # and the driver keeps none of its own during the sweep (219 MB for FashionMNIST)
    mark("data_stored")
    if not verbose:  # after the imports: Optuna sets its own level when it loads
        logging.getLogger("optuna").setLevel(logging.WARNING)
    # Once the trials are done, an embedded Ray shuts down (seconds) while the report is written.
    shutdown = threading.Thread(target=ray.shutdown, name="initsweep-ray-shutdown") if ours else None
    if progress_bar is None:
        progress_bar = sys.stdout.isatty() and not verbose
    outcome = run_tuner(
        sweep,
        stored,
        tracker,
        storage_path=str(storage),
        report_dir=str(Path(report_dir).resolve()),
        fresh=fresh,
        verbose=verbose,
        printer=printer,
        progress_bar=progress_bar,
        data_lineage=data_lineage,
        trials_done=shutdown.start if shutdown else None,
    )
    mark("tuner_returned")
    if shutdown is not None and shutdown.ident is not None:
        shutdown.join()
        mark("ray_shut_down")
    return SweepResults(
        sweep,
        outcome.results,
        outcome.failed,
        tracking_uri,
        outcome.experiment_id,
        outcome.parent_run_id,
        outcome.sweep_id,
        outcome.report,
        outcome.experiment_dir,
        time.perf_counter() - start,
        outcome.slot_use,
    )


def _prepare(sweep: SweepConfig, tracker=None):
    """The sweep's data, loaded and checked against its model (`ConfigError` on bad input); with `tracker`,
    its MLflow store opened too (a new SQLite store creates its tables: seconds)."""
    from initsweep.engine.data import load_configured
    from initsweep.engine.models import check_sweep
    from initsweep.tracking import mark

    mark("engine_imported")
    data = load_configured(sweep.data, sweep.task)
    mark("data_loaded")
    check_sweep(sweep, data)  # your model built, initialized and run on one batch: bad code is one line
    mark("sweep_checked")
    if tracker is not None:
        tracker.open()
        mark("store_opened")
    return data


def load_results(
    tracking_uri: str | None, sweep: str, *, run_id: str | None = None, report_dir: str | None = None
) -> SweepResults:
    """A sweep's results from MLflow alone (no Ray, no Tune files): the experiment `sweep`'s latest sweep,
    or its parent run `run_id`. With `report_dir`, the report is written again there, as `initsweep report`
    does. `LookupError` when there is no such sweep."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    from initsweep.tracking import default_tracking_uri, find_sweep_run, read_failures, read_sweep

    uri = default_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    parent = find_sweep_run(client, sweep, run_id)
    config, trials = read_sweep(client, parent)
    failed = read_failures(client, parent)
    sweep_id = parent.data.tags["sweep_id"]
    report = None
    if report_dir is not None and trials:
        from initsweep.report.build import build_report

        report = build_report(trials, config, Path(report_dir).resolve() / f"{config.name}-{sweep_id}", failed=failed)
    return SweepResults(config, trials, failed, uri, parent.info.experiment_id, parent.info.run_id, sweep_id, report)


def _check_embedded_only(listen: str | None, ray_dashboard: bool, address: str | None) -> None:
    """`--listen` and `--ray-dashboard` set up the embedded Ray: refused with a cluster, which has its own."""
    import ipaddress

    if address and ray_dashboard:
        raise ConfigError(
            f"--ray-dashboard: applies to the embedded Ray only, not to --address {address} (a cluster's head "
            "runs its own dashboard)"
        )
    if listen is None:
        return
    if address:
        raise ConfigError(f"--listen {listen}: applies to the embedded Ray only, not to --address {address}")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise ConfigError(f"--listen {listen}: not an IP address (e.g. 0.0.0.0 or 10.0.0.5)") from None


def _writable_storage(storage_path: str) -> Path:
    """Tune's folder, checked (not created: nothing is left behind when it cannot be)."""
    storage = Path(storage_path).expanduser().absolute()
    existing = next(p for p in [storage, *storage.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ConfigError(f"--storage-path {storage_path}: cannot create or write this folder ({existing})")
    return storage
