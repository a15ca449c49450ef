"""Rebuild a sweep's report from MLflow alone (no Ray, no Tune files), e.g. for a sweep run on a cluster.

    python sweeps/report.py --experiment seed_table [--tracking-uri URI] [--run-id PARENT] [--out DIR]

Writes the same report.md, report.html, results.csv and plots/ as the end of the sweep did.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from initsweep.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Rebuild an initsweep report from the MLflow store.")
    p.add_argument("--experiment", required=True, help="the sweep's name (its MLflow experiment)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--run-id", help="the sweep's parent run (default: the experiment's latest sweep)")
    p.add_argument("--out", default="reports", help="folder for the report (default: %(default)s)")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from initsweep.report.build import build_report
    from initsweep.tracking import default_tracking_uri, find_sweep_run, read_failures, read_sweep

    client = MlflowClient(default_tracking_uri(args.tracking_uri))
    try:
        parent = find_sweep_run(client, args.experiment, args.run_id)
        sweep, results = read_sweep(client, parent)
    except (LookupError, ConfigError, MlflowException) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if not results:
        print(f"error: --experiment {args.experiment}: the sweep has no finished trial yet", file=sys.stderr)
        return 2
    folder = Path(args.out).resolve() / f"{sweep.name}-{parent.data.tags['sweep_id']}"
    report = build_report(results, sweep, folder, failed=read_failures(client, parent))
    print(report.text)
    print(f"\nreport: {report.folder / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
