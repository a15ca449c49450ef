"""`initsweep ui [--tracking-uri URI] [--port 5000]` (also `python sweeps/ui.py`): open a sweep store in
the MLflow UI.

Starts `mlflow server` on 127.0.0.1 against the store `initsweep run` wrote (default: ./mlflow.db, with
the artifacts beside it in ./mlruns), prints the URL, and stops it on Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HELP = "serve a sweep store in the MLflow UI"
DESCRIPTION = "Serve an initsweep MLflow store in the MLflow UI (Ctrl-C stops it)."

ML_VIEW = "workflowType=machine_learning"
"""The UI's model-training view (runs, params, metrics); MLflow 3 opens on its GenAI view otherwise."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="the store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; anything else exposes every run to the network)",
    )
    p.add_argument("--experiment", help="open this experiment (a sweep's name)")
    p.add_argument("--verbose", action="store_true", help="show the server's own log here (default: to a file)")


def main(args: argparse.Namespace) -> int:
    import mlflow

    from initsweep.mlflow_server import server_command, server_env
    from initsweep.tracking import default_tracking_uri, masked

    uri = default_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"{masked(uri)} is already a tracking server: open it in a browser")
        return 0
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        print(f"error: --host {args.host}: not an IP address", file=sys.stderr)
        return 2
    if not loopback:
        exposed = f"every run and artifact in {masked(uri)} is readable from the network"
        print(f"warning: --host {args.host}: {exposed}", file=sys.stderr)
    base = f"http://{args.host}:{args.port}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a plain `kill` stops the server too
    # Ctrl-C stops it even when started from a process that ignores SIGINT (Python then would too).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log_path = Path(tempfile.gettempdir()) / f"initsweep-mlflow-ui-{args.port}.log"
    with open(log_path, "w") as log:  # the server's log (worker start-up, deprecation warnings) goes here
        out = None if args.verbose else log
        server = subprocess.Popen(
            server_command(uri, host=args.host, port=args.port),
            stdout=out,
            stderr=out,
            env=server_env(),
            start_new_session=True,
        )
    try:
        if not _wait_for(f"{base}/health", server):
            print(
                f"error: --port {args.port}: mlflow server did not start (is the port in use? its log: {log_path})",
                file=sys.stderr,
            )
            return 1
        page = f"{base}/#/experiments"
        if args.experiment:
            exp = mlflow.MlflowClient(uri).get_experiment_by_name(args.experiment)
            page += f"/{exp.experiment_id}" if exp else ""
        page += f"?{ML_VIEW}"
        shown = "" if args.verbose else f"; server log {log_path}"
        print(f"MLflow UI: {page}  (store {masked(uri)}{shown}; Ctrl-C stops it)", flush=True)
        server.wait()
        return server.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        print("MLflow UI stopped", flush=True)


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 180) -> bool:
    """True once `url` answers; generous: a server on 2 cores busy with a sweep takes over 30 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False
