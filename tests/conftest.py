"""Shared fixtures: real FashionMNIST subsets, loaded once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from initsweep.data import Data, load_data


@pytest.fixture(scope="session")
def small_data() -> Data:
    """2,000 class-balanced FashionMNIST train images (1,600 train / 400 val) and the full test set."""
    return load_data("fashion_mnist", limit=2000)


@pytest.fixture(autouse=True)
def _two_threads():
    """The test machine has 2 cores; keep torch from oversubscribing them."""
    torch.set_num_threads(2)


ROOT = Path(__file__).parents[1]


def run_cli(*args: str, cwd, timeout: float = 600, env: dict | None = None):
    """`python sweeps/run.py ARGS` as a user runs it, in `cwd`, with no tracking URI or Ray address set."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean | (env or {}),
    )


def mlflow_runs(uri: str, experiment: str) -> dict[str, list]:
    """Active runs of an experiment by kind: {'sweep': [...], 'trial': [...], 'seed': [...]}."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=10_000) if exp else []
    out: dict[str, list] = {"sweep": [], "trial": [], "seed": []}
    for r in runs:
        out[r.data.tags["run_kind"]].append(r)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> bool:
    """True once `url` answers; False if `process` exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free 127.0.0.1 port (SQLite backend, served artifacts); yields its URI."""

    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
    cmd += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    uri = f"http://127.0.0.1:{port}"
    if not wait_for_http(f"{uri}/health", server, timeout=90):
        server.kill()
        raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
    yield uri
    server.terminate()
    server.wait(timeout=30)
