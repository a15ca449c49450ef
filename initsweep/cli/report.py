"""`initsweep report --experiment NAME` (also `python sweeps/report.py`): rebuild a sweep's report from
MLflow alone (no Ray, no Tune files), e.g. for a sweep run on a cluster.

Writes the same report.md, report.html, results.csv and plots/ as the end of the sweep did.
"""

from __future__ import annotations

import argparse
import sys

HELP = "rebuild a sweep's report from MLflow"
DESCRIPTION = "Rebuild an initsweep report from the MLflow store."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="the sweep's name (its MLflow experiment)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--run-id", help="the sweep's parent run (default: the experiment's latest sweep)")
    p.add_argument("--out", default="reports", help="folder for the report (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from initsweep.api import load_results
    from initsweep.cli.run import table_width
    from initsweep.config import ConfigError

    try:
        results = load_results(args.tracking_uri, args.experiment, run_id=args.run_id, report_dir=args.out)
    except (LookupError, ConfigError, MlflowException) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if results.report is None:
        print(f"error: --experiment {args.experiment}: the sweep has no finished trial yet", file=sys.stderr)
        return 2
    print(results.report.table(table_width()))
    print(f"\nreport: {results.report.folder / 'report.md'}")
    return 0
