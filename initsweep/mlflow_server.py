"""Starting `mlflow server` on a store a sweep wrote (`initsweep ui`, and the tests' servers): the fewest
processes that serve, on 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from initsweep.tracking import artifact_root

__all__ = ["SERVER_ENV", "server_command", "server_env", "server_workers"]


def server_workers(cpus: int | None = None) -> int:
    """The fewest `mlflow server` workers that serve: one on a small machine. MLflow's default of 4
    uvicorn workers does not come up on 2 busy cores (a worker that misses the supervisor's health check
    is killed and restarted: 80 s to answer against 32 s with one, measured while a sweep trained)."""
    return max(1, min(4, (cpus or os.cpu_count() or 1) // 4))


SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""What `mlflow server` runs with unless the environment says otherwise. MLflow's job runner (GenAI evaluation
and prompt jobs, which sweeps never send) adds 8 Python processes: with it a server on 2 cores took 28 CPU-s
and 2.3 GB to start, without it 8-9 CPU-s and 0.5 GB."""


def server_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to start `server_command` in: `environ` (default this process's) over `SERVER_ENV`."""
    return SERVER_ENV | dict(os.environ if environ is None else environ)


def server_command(
    backend_uri: str, *, host: str = "127.0.0.1", port: int = 5000, artifacts: Path | None = None
) -> list[str]:
    """`mlflow server` on a store: loopback unless `host` says otherwise, `server_workers()` workers, its
    access log quiet, new artifacts in `artifacts` (default: `artifact_root`'s rule for the store). Start
    it in `server_env()`."""
    artifacts = artifacts or artifact_root(backend_uri)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--host", host]
    cmd += ["--port", str(port), "--workers", str(server_workers()), "--uvicorn-opts", "--log-level warning"]
    return cmd + (["--artifacts-destination", str(artifacts)] if artifacts else [])
