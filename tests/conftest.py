"""Shared fixtures: real FashionMNIST subsets, loaded once per test session."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch

from initsweep.engine.data import Data, load_data


@pytest.fixture(scope="session")
def small_data() -> Data:
    """2,000 class-balanced FashionMNIST train images (1,600 train / 400 val) and the full test set."""
    return load_data("fashion_mnist", limit=2000)


TORCH_THREADS = max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
"""Torch threads per test process: the machine's cores shared among pytest-xdist's workers."""


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep each test process's torch to its share of the cores: two workers each running two threads on the
    2-core machine spun against each other."""
    torch.set_num_threads(TORCH_THREADS)


ROOT = Path(__file__).parents[1]
TEST_OUTPUT = ROOT / "test-output"
"""Where the browser tests keep their screenshots; the ones this run saved are listed at its end."""
_session_start = time.time()
PROGRESS_LINE = re.compile(r"\[\d+/\d+\] ")


def progress_lines(lines: Iterable[str]) -> list[str]:
    """The sweep's per-trial progress lines (`[3/9] name: ...`) among a driver's output lines; a library's
    log line that also starts with a bracket (Optuna's `[W 2026-...]`) is not one."""
    return [line for line in lines if PROGRESS_LINE.match(line)]


def trial_of(line: str) -> str:
    """The Tune trial id a progress line names (`... (trial 3f2a_00001) ...`)."""
    return line.split("(trial ")[1].split(")")[0]


def pytest_collection_modifyitems(items):
    """The `slow` tests first, each file's in its order. With `--dist worksteal` a worker that runs out takes
    half of the other's queue from its end, so the long tests are shared out and short ones close the run
    (xdist's default chunks gave all of them to one worker; handed out one at a time, they ran in pairs)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionstart(session):
    global _session_start
    _session_start = time.time()


def pytest_terminal_summary(terminalreporter):
    for path in sorted(TEST_OUTPUT.glob("*.png")):
        if path.stat().st_mtime >= _session_start:
            terminalreporter.write_line(f"screenshot: {path}")


def run_cli(*args: str, cwd, timeout: float = 600, env: dict | None = None, script: Path = ROOT / "sweeps" / "run.py"):
    """`python sweeps/run.py ARGS` as a user runs it, in `cwd`, with no tracking URI or Ray address set
    (`script`: another checkout's `sweeps/run.py`)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean | (env or {}),
    )


def cli_main():
    """`sweeps/run.py`'s `main(argv) -> exit code`, to call in this process (no 5 s interpreter start)."""
    spec = importlib.util.spec_from_file_location("initsweep_run_cli", ROOT / "sweeps" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


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


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, served artifacts under `root`), which a test
    can stop and start again on the same port and store."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = root, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        from initsweep.mlflow_server import server_command, server_env

        cmd = server_command(f"sqlite:///{self.root}/mlflow.db", port=self.port, artifacts=self.root / "artifacts")
        with open(self.root / "server.log", "a") as log:
            self.process = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=log, env=server_env(), start_new_session=True
            )
        if not wait_for_http(f"{self.uri}/health", self.process, timeout=180):  # 2 busy cores: tens of seconds
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {(self.root / 'server.log').read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        """Kill the server and its workers at once (as a crash or a lost network would)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=30)


@pytest.fixture
def two_nodes():
    """A head and a worker node on 127.0.0.1, one CPU each: two one-CPU trials run at once, one per node."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free 127.0.0.1 port (SQLite backend, served artifacts); yields its URI."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server.uri
    server.stop()
