"""Run an init-scheme sweep: `python sweeps/run.py [CONFIG] [--set KEY=VALUE ...]`.

Trials run on Ray Tune (an embedded local Ray unless `--address`/`RAY_ADDRESS` names a cluster), Optuna
draws them for `search` sweeps, and every sweep, trial and seed is recorded in MLflow. Running the same
command again resumes an interrupted sweep. `--no-ray` trains in this process instead (debug mode).
Bad input: exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's initsweep (ray job working dirs)

from initsweep.config import ConfigError, SweepConfig, load_config

DEFAULT_CONFIG = Path(__file__).with_name("seed_table.yaml")
EXIT_BAD_INPUT, EXIT_TRACKING_DOWN, EXIT_INTERRUPTED = 2, 3, 130
"""Exit codes: bad input (nothing started); the tracking server went away mid-sweep past MLflow's retries;
trials left to run (Ctrl-C, a killed run). Rerunning the same command resumes after the last two."""

EXAMPLES = """examples:
  python sweeps/run.py                                   # the founding seed table: 9 schemes x 5 seeds
  python sweeps/run.py sweeps/search_bounds.yaml         # Optuna searches bounds and gains
  python sweeps/run.py sweeps/smoke.yaml --no-ray        # seconds, in this process, no Ray, no MLflow
  python sweeps/run.py sweeps/search_bounds.yaml --dry-run   # what would run, without running it
  python sweeps/run.py --set train.epochs=1 --set data.limit=6000
  ray job submit --working-dir . -- python sweeps/run.py sweeps/seed_table.yaml --tracking-uri http://HEAD:5000
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Sweep weight-init schemes over replicate seeds with Ray Tune, Optuna and MLflow.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="sweep YAML (default: %(default)s)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key by its dotted path (repeatable), e.g. train.lr=3e-4",
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's "
        "own default, ./mlflow.db, so `python sweeps/ui.py` here shows the runs)",
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
        "127.0.0.1; exposes Ray's dashboard and Jobs API, which runs any code it is sent",
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
    p.add_argument("--verbose", action="store_true", help="show Ray's logs and Tune's progress tables")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sweep = load_config(args.config, args.overrides)
        if args.dry_run:
            from initsweep.sweep.plan import describe, needs_build

            if not needs_build(sweep):  # built-in model and data: known without torch
                print(describe(sweep))
                return 0
            from initsweep.engine.data import load_configured
            from initsweep.engine.models import check_sweep

            data = load_configured(sweep.data)  # your code runs: the model built, one batch through it
            print(describe(sweep, data, check_sweep(sweep, data)))
            return 0
        if args.no_ray:
            return run_in_process(sweep, args.device, args.report_dir)
        return run_with_ray(sweep, args)
    except ConfigError as err:  # bad input, a missing dataset or an unreachable service
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run_in_process(sweep: SweepConfig, device: str | None, report_dir: str) -> int:
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
        s = aggregate(result.seeds)
        print(
            f"[{i}/{total}] {result.config.name}: val acc {s['val_accuracy']:.2f}% "
            f"± {s['val_accuracy_std']:.2f} ({result.seconds:.1f} s)",
            flush=True,
        )

    results = run(sweep, device=device, on_trial=progress)
    report = build_report(results, sweep, Path(report_dir).resolve() / f"{sweep.name}-no-ray")
    print()
    print(report.text)
    n = sweep.n_trials
    print(f"\n{n} trials, {n * len(sweep.seeds)} trained models in {time.perf_counter() - start:.1f} s")
    print(f"report: {report.folder / 'report.md'}")
    return 0


def check_listen(listen: str | None, address: str | None) -> None:
    if listen is None:
        return
    if address:
        raise ConfigError(f"--listen {listen}: applies to the embedded Ray only, not to --address {address}")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise ConfigError(f"--listen {listen}: not an IP address (e.g. 0.0.0.0 or 10.0.0.5)") from None


def run_with_ray(sweep: SweepConfig, args: argparse.Namespace) -> int:
    from initsweep.tracking import Tracker, TrackingUnavailable, check_tracking_server, default_tracking_uri

    tracking_uri = default_tracking_uri(args.tracking_uri)
    check_listen(args.listen, args.address)
    if args.listen:
        print(
            f"warning: --listen {args.listen}: Ray's dashboard, its Jobs API (which runs any code it is sent) "
            "and its node services accept connections from other machines; Ray's token authentication is "
            "on (the token is in ~/.ray/auth_token)",
            file=sys.stderr,
        )
    check_tracking_server(tracking_uri)  # in seconds, before any training (MLflow would retry for minutes)
    storage = Path(args.storage_path).expanduser().absolute()
    existing = next(p for p in [storage, *storage.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):  # checked, not created: nothing left behind
        raise ConfigError(f"--storage-path {args.storage_path}: cannot create or write this folder ({existing})")
    if not args.verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from initsweep.engine.data import load_configured
    from initsweep.sweep.cluster import connect

    data = load_configured(sweep.data)  # before Ray starts: a missing dataset fails in a second
    from initsweep.engine.models import check_sweep

    check_sweep(sweep, data)  # your model built, initialized and run on one batch: bad code is one line
    start = time.perf_counter()
    dashboard = connect(args.address, args.verbose, args.listen)
    kind = "search" if sweep.search else "grid"
    print(
        f"sweep {sweep.name!r} ({kind}): {sweep.n_trials} trials x {len(sweep.seeds)} seeds on Ray "
        f"({args.address or 'embedded'}{', dashboard ' + dashboard if dashboard else ''})",
        flush=True,
    )
    from initsweep.sweep.trainable import StoredData
    from initsweep.sweep.tuner import run_sweep  # imports Ray: after connect() set its environment

    stored = StoredData.put(data)  # every worker of a node maps this one copy
    del data  # and the driver keeps none of its own during the sweep (219 MB for FashionMNIST)

    if not args.verbose:  # after the imports: Optuna sets its own level when it loads
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("optuna").setLevel(logging.WARNING)

    try:
        outcome = run_sweep(
            sweep,
            stored,
            Tracker(tracking_uri),
            storage_path=str(storage),
            report_dir=str(Path(args.report_dir).resolve()),
            fresh=args.fresh,
            verbose=args.verbose,
        )
    except TrackingUnavailable as err:
        print(
            f"error: {err}; Tune's state and checkpoints are kept: run the same command again to resume "
            "(it writes what MLflow missed)",
            file=sys.stderr,
        )
        return EXIT_TRACKING_DOWN
    return print_outcome(sweep, outcome, tracking_uri, time.perf_counter() - start)


def print_outcome(sweep: SweepConfig, outcome, tracking_uri: str, seconds: float) -> int:
    """The result table, the best trial, where everything is; 130 when trials are still to run."""
    from initsweep.sweep.search import study_name
    from initsweep.sweep.tuner import optuna_location
    from initsweep.tracking import masked, ui_hint

    print()
    finished = outcome.n_errors + outcome.n_finished
    if outcome.report:
        print(outcome.report.text)
    if outcome.best:
        value = outcome.best.mean(sweep.objective.metric)
        print(f"\nbest: {outcome.best.name} ({sweep.objective.metric} {value:.4g}, mean over {len(sweep.seeds)} seeds)")
    print(
        f"\n{finished}/{sweep.n_trials} trials done ({outcome.n_errors} failed) in "
        f"{seconds:.1f} s; Tune state: {outcome.experiment_dir}"
    )
    print(
        f"MLflow: experiment {sweep.name!r} (id {outcome.experiment_id}), parent run {outcome.parent_run_id}, "
        f"store {masked(tracking_uri)}"
    )
    print(f"  UI: {ui_hint(tracking_uri, outcome.experiment_id, outcome.parent_run_id)}")
    if sweep.search is not None:
        print(
            f"Optuna: study {study_name(sweep.name, outcome.sweep_id)}; dashboard: "
            f"optuna-dashboard '{optuna_location(sweep, outcome.experiment_dir)}' (http://127.0.0.1:8080)"
        )
    if outcome.report:
        print(
            f"report: {outcome.report.folder / 'report.md'} (and report.html, results.csv, plots/; "
            "also in the parent run's artifacts under report/)"
        )
    if finished < sweep.n_trials:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
