"""`initsweep run [CONFIG] [--set KEY=VALUE ...]` (also `python sweeps/run.py`): run an init-scheme sweep.

Trials run on Ray Tune (an embedded local Ray unless `--address`/`RAY_ADDRESS` names a cluster), Optuna
draws them for `search` sweeps, and every sweep, trial and seed is recorded in MLflow; this is
`initsweep.api.run_sweep` with a terminal around it. Running the same command again resumes an
interrupted sweep. `--no-ray` trains in this process instead (debug mode).
Bad input: exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from initsweep.cli import add_config_arguments

HELP = "run (or resume) a sweep"
DESCRIPTION = "Sweep weight-init schemes over replicate seeds with Ray Tune, Optuna and MLflow."
DEFAULT_CONFIG = Path(__file__).parents[2] / "sweeps" / "seed_table.yaml"
EXIT_BAD_INPUT, EXIT_TRACKING_DOWN, EXIT_INTERRUPTED = 2, 3, 130
"""Exit codes: bad input (nothing started); the tracking server went away mid-sweep past MLflow's retries;
trials left to run (Ctrl-C, a killed run). Rerunning the same command resumes after the last two."""
TABLE_WIDTH = 120
"""The result table's width when standard output is not a terminal (a terminal's own width otherwise)."""

EPILOG = """examples:
  initsweep run                                   # the founding seed table: 9 schemes x 5 seeds
  initsweep run sweeps/search_bounds.yaml         # Optuna searches bounds and gains
  initsweep run sweeps/smoke.yaml --no-ray        # seconds, in this process, no Ray, no MLflow
  initsweep run sweeps/search_bounds.yaml --dry-run   # what would run, without running it
  initsweep run --set train.epochs=1 --set data.limit=6000
  ray job submit --working-dir . -- python sweeps/run.py sweeps/seed_table.yaml --tracking-uri http://HEAD:5000
(`python sweeps/run.py ARGS` is the same command, for a clone without the package installed)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, str(DEFAULT_CONFIG), "train.lr=3e-4")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's "
        "own default, ./mlflow.db, so `initsweep ui` here shows the runs)",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster to join: auto, HOST:PORT or ray://... (default: $RAY_ADDRESS, else an embedded local Ray)",
    )
    p.add_argument(
        "--storage-path",
        default="~/ray_results",
        help="where Tune keeps the sweep's state, for resuming; shared (NFS) on a multi-node cluster "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--report-dir",
        default="reports",
        help="where the report folder (<name>-<sweep id>) is written (default: %(default)s)",
    )
    p.add_argument(
        "--listen",
        metavar="IP",
        help="embedded Ray only: listen on this address of the machine (0.0.0.0: every one) instead of "
        "127.0.0.1; exposes Ray's node services (and with --ray-dashboard its dashboard and Jobs API, which "
        "runs any code it is sent)",
    )
    p.add_argument(
        "--ray-dashboard",
        action="store_true",
        help="embedded Ray only: also start Ray's dashboard and Jobs API, on 127.0.0.1 or --listen's address "
        "(off by default: 200 MB and 3 CPU-seconds a sweep; the results are in MLflow)",
    )
    p.add_argument("--fresh", action="store_true", help="start the sweep over under a new run instead of resuming")
    p.add_argument(
        "--no-ray",
        action="store_true",
        help="train the grid's trials in this process one after another (debug: no Ray, no MLflow)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials the config would run (resolved params) and their resources, then exit",
    )
    p.add_argument("--device", default=None, help="--no-ray only: torch device (default: cuda if present)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's logs and Tune's progress tables, and a line per trial instead of the progress bar",
    )


def table_width() -> int:
    """The terminal's width when standard output is one, else `TABLE_WIDTH`."""
    return shutil.get_terminal_size((TABLE_WIDTH, 24)).columns if sys.stdout.isatty() else TABLE_WIDTH


def main(args: argparse.Namespace) -> int:
    from initsweep.config import ConfigError, load_config

    try:
        sweep = load_config(args.config, args.overrides)
        if args.dry_run:
            return dry_run(sweep)
        if args.no_ray:
            return run_in_process(sweep, args.device, args.report_dir)
        return run_with_ray(sweep, args)
    except ConfigError as err:  # bad input, a missing dataset or an unreachable service
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def dry_run(sweep) -> int:
    from initsweep.sweep.plan import describe, needs_build

    if not needs_build(sweep):  # built-in model and data: known without torch
        print(describe(sweep))
        return 0
    from initsweep.engine.data import load_configured
    from initsweep.engine.models import check_sweep

    data = load_configured(sweep.data, sweep.task)  # your code runs: the model built, one batch through it
    print(describe(sweep, data, check_sweep(sweep, data)))
    return 0


def run_in_process(sweep, device: str | None, report_dir: str) -> int:
    from initsweep.config import ConfigError
    from initsweep.report.build import build_report
    from initsweep.results import aggregate
    from initsweep.sweep.inprocess import default_device
    from initsweep.sweep.inprocess import run_in_process as run

    if sweep.search is not None:
        raise ConfigError("search: --no-ray runs grid sweeps only (Optuna search runs through Ray Tune)")
    print(
        f"sweep {sweep.name!r}: {sweep.n_trials} trials x {len(sweep.seeds)} seeds, in-process "
        f"on {device or default_device()}",
        flush=True,
    )
    start = time.perf_counter()

    def progress(i: int, total: int, result) -> None:
        s, metric = aggregate(result.seeds), sweep.objective.metric
        print(
            f"[{i}/{total}] {result.config.name}: {metric} {s[metric]:.4g} ± {s[metric + '_std']:.2g} "
            f"({result.seconds:.1f} s)",
            flush=True,
        )

    results = run(sweep, device=device, on_trial=progress)
    report = build_report(results, sweep, Path(report_dir).resolve() / f"{sweep.name}-no-ray")
    print()
    print(report.table(table_width()))
    n = sweep.n_trials
    print(f"\n{n} trials, {n * len(sweep.seeds)} trained models in {time.perf_counter() - start:.1f} s")
    print(f"report: {report.folder / 'report.md'}")
    return 0


def run_with_ray(sweep, args: argparse.Namespace) -> int:
    from initsweep.api import run_sweep
    from initsweep.tracking import TrackingUnavailable

    try:
        results = run_sweep(
            sweep,
            tracking_uri=args.tracking_uri,
            address=args.address,
            storage_path=args.storage_path,
            report_dir=args.report_dir,
            fresh=args.fresh,
            listen=args.listen,
            ray_dashboard=args.ray_dashboard,
            verbose=args.verbose,
            progress_bar=sys.stdout.isatty() and not args.verbose,
        )
    except TrackingUnavailable as err:
        print(
            f"error: {err}; Tune's state and checkpoints are kept: run the same command again to resume "
            "(it writes what MLflow missed)",
            file=sys.stderr,
        )
        return EXIT_TRACKING_DOWN
    return print_outcome(results)


def print_outcome(results) -> int:
    """The result table, the best trial, where everything is; 130 when trials are still to run."""
    from initsweep.sweep.search import study_name
    from initsweep.sweep.tuner import optuna_location
    from initsweep.tracking import masked, ui_hint

    sweep = results.sweep
    print()
    finished = len(results.trials) + len(results.failed)
    if results.report:
        print(results.report.table(table_width()))
    top = results.best
    if top:
        value = top.mean(sweep.objective.metric)
        print(f"\nbest: {top.name} ({sweep.objective.metric} {value:.4g}, mean over {len(sweep.seeds)} seeds)")
    slots = f"; {results.slot_use.line()}" if results.slot_use else ""
    print(
        f"\n{finished}/{sweep.n_trials} trials done ({len(results.failed)} failed) in "
        f"{results.seconds:.1f} s{slots}; Tune state: {results.experiment_dir}"
    )
    print(
        f"MLflow: experiment {sweep.name!r} (id {results.experiment_id}), parent run {results.parent_run_id}, "
        f"store {masked(results.tracking_uri)}"
    )
    print(f"  UI: {ui_hint(results.tracking_uri, results.experiment_id, results.parent_run_id)}")
    if sweep.search is not None:
        print(
            f"Optuna: study {study_name(sweep.name, results.sweep_id)}; dashboard: "
            f"optuna-dashboard '{optuna_location(sweep, results.experiment_dir)}' (http://127.0.0.1:8080)"
        )
    if results.report:
        print(
            f"report: {results.report.folder / 'report.md'} (and report.html, results.csv, plots/; "
            "also in the parent run's artifacts under report/)"
        )
    if finished < sweep.n_trials:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
