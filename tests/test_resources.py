"""Trial requests no node can hold are refused before anything is written; an autoscaler's node types that
hold one let the sweep wait; a sweep whose trials stay pending says so in one line and goes on."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port, progress_lines, run_cli, wait_for_http

RAY = str(Path(sys.executable).with_name("ray"))
SMOKE = str(ROOT / "sweeps" / "smoke.yaml")
TOKEN = {"RAY_AUTH_MODE": "token"}
"""Every Ray here runs with token authentication (~/.ray/auth_token), as the README's cluster does."""
TINY = ("--set", "data.limit=1000", "--set", "train.epochs=1", "--set", "seeds=[0]")


def assert_nothing_written(cwd: Path, storage: Path) -> None:
    db = cwd / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            assert "runs" not in tables or conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert not storage.exists() or not any(storage.iterdir())


class Head:
    """A `ray start --head --block` of our own on 127.0.0.1: 2 CPUs, 1 fake GPU, 1 `fake_tpu`. Its output and
    Ray's logs stay in its temp dir until it stops, so a head that dies says why (once, in a full run, a
    head exited right after its dashboard answered; its logs had gone with it)."""

    SETTLE_S = 5.0
    """How long a new head must stay up after its dashboard answers to count as started."""

    def __init__(self):
        self.temp_dir = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self) -> str:
        """Start the head (a second time if the first one exits while settling); its address."""
        for attempt in (1, 2):
            port, dashboard = free_port(), free_port()
            cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
            cmd += ["--num-gpus=1", '--resources={"fake_tpu": 1}', "--dashboard-host=127.0.0.1"]
            cmd += [f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}"]
            cmd += [f"--dashboard-agent-grpc-port={free_port()}", f"--temp-dir={self.temp_dir}"]
            cmd += ["--disable-usage-stats", "--block"]
            # --block and a session of its own: killing its process group stops this head only.
            with open(Path(self.temp_dir) / f"ray-start-{attempt}.log", "w") as log:
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | TOKEN
                )
            answered = wait_for_http(f"http://127.0.0.1:{dashboard}", self.proc, timeout=120)
            deadline = time.monotonic() + self.SETTLE_S
            while answered and self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if answered and self.proc.poll() is None:
                self.address = f"127.0.0.1:{port}"
                return self.address
            self.stop(keep_dir=True)
        pytest.fail(f"the Ray head did not start twice; its last words:\n{self.last_words()}")

    def alive(self) -> str:
        """The address, failing the test with the head's last words if it has exited since it started."""
        if self.proc is None or self.proc.poll() is not None:
            pytest.fail(f"the Ray head exited (code {self.proc and self.proc.returncode}):\n{self.last_words()}")
        return self.address

    def last_words(self, lines: int = 15) -> str:
        """The tail of `ray start`'s output and of each Ray log that mentions an error or a failure."""
        root = Path(self.temp_dir)
        out = []
        for path in sorted(root.glob("ray-start-*.log")) + sorted(root.glob("session_*/logs/*")):
            if not path.is_file():
                continue
            text = [line for line in path.read_text(errors="replace").splitlines() if "[state-dump]" not in line]
            if path.name.startswith("ray-start") or any(w in line for line in text for w in ("ERROR", "FATAL", "Fail")):
                out += [f"--- {path.relative_to(root)}", *text[-lines:]]
        return "\n".join(out) or "(no output)"

    def stop(self, keep_dir: bool = False) -> None:
        """Stop the head's whole process group (what is left of it, if its `ray start` exited)."""
        if self.proc is not None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # `ray start --block` took 33 s to stop gracefully on busy cores
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
        if not keep_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.proc.pid, sig)


@pytest.fixture(scope="module")
def _head():
    head = Head()
    try:
        head.start()
        yield head
    finally:
        head.stop()


@pytest.fixture
def head(_head) -> str:
    """The module's Ray head's address, checked alive for each test that uses it."""
    return _head.alive()


def test_a_gpu_on_a_machine_without_one_is_refused_before_anything_starts(tmp_path):
    storage = tmp_path / "ray"
    proc = run_cli(SMOKE, *TINY, "--set", "resources.gpus_per_trial=1", "--storage-path", str(storage), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: resources.gpus_per_trial: a trial asks for 1 GPU, but no node has that many")
    assert "(largest node: " in proc.stderr and " GPU, " in proc.stderr and proc.stderr.count("\n") == 1
    assert_nothing_written(tmp_path, storage)


def test_more_cpus_than_any_node_has_is_refused(head, tmp_path):
    storage = tmp_path / "ray"
    proc = run_cli(
        SMOKE,
        *TINY,
        "--set",
        "resources.cpus_per_trial=64",
        "--address",
        head,
        "--storage-path",
        str(storage),
        cwd=tmp_path,
        env=TOKEN,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert re.fullmatch(
        r"error: resources.cpus_per_trial: a trial asks for 64 CPU, but no node has that many "
        r"\(largest node: 2 CPU, 1 GPU, [\d.]+ GiB memory\)\n",
        proc.stderr,
    ), proc.stderr
    assert_nothing_written(tmp_path, storage)


CHECKS = """
import json, sys
import ray
from initsweep.config import ConfigError, ResourcesConfig
from initsweep.sweep.cluster import autoscaler_node_types, check_resources

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
out = []
for kwargs in json.loads(sys.argv[2]):
    said = []
    try:
        check_resources(ResourcesConfig(**kwargs), lambda line, **_: said.append(line))
        out.append(said)
    except ConfigError as err:
        out.append(f"error: {err}")
print(json.dumps({"types": sorted(autoscaler_node_types()), "out": out}))
"""


def checks(head: str, cases: list[dict], autoscaling: Path | None = None) -> dict:
    """`check_resources` on each case, against `head`, in a process of its own (its Ray client uses a token)."""
    import json

    env = os.environ | TOKEN | {"INITSWEEP_AUTOSCALING_CONFIG": str(autoscaling or "/nonexistent.yaml")}
    proc = subprocess.run(
        [sys.executable, "-c", CHECKS, head, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_custom_resources_memory_and_their_combination(head, tmp_path):
    config = tmp_path / "autoscaling.yaml"  # what `ray up` leaves on a head: the launcher's node types
    config.write_text(
        yaml.safe_dump(
            {
                "max_workers": 4,
                "head_node_type": "head",
                "available_node_types": {
                    "head": {"resources": {"CPU": 0}, "node_config": {}},
                    "cpu_worker": {"resources": {"CPU": 16}, "node_config": {}, "max_workers": 2},
                    "gpu_worker": {"resources": {"CPU": 4, "GPU": 4}, "node_config": {}, "max_workers": 1},
                    "spare": {"resources": {"GPU": 8}, "node_config": {}, "max_workers": 0},
                },
            }
        )
    )
    plain = checks(
        head,
        [
            {"cpus_per_trial": 2, "gpus_per_trial": 1, "custom": {"fake_tpu": 1}},
            {"custom": {"fake_tpu": 2}},
            {"custom": {"accelerator_type:H100": 1}},
            {"memory_gb_per_trial": 4096},
        ],
    )
    assert plain["types"] == []
    fits, tpu, h100, memory = plain["out"]
    assert fits == []  # the node holds it (whatever holds it now)
    assert re.fullmatch(
        r"error: resources.custom.fake_tpu: a trial asks for 2 fake_tpu, but no node has that many "
        r"\(largest node: 2 CPU, 1 GPU, [\d.]+ GiB memory, 1 fake_tpu\)",
        tpu,
    ), tpu
    assert h100.startswith("error: resources.custom.accelerator_type:H100: a trial asks for 1 accelerator_type:H100")
    assert h100.endswith(" GiB memory, 0 accelerator_type:H100)")
    assert memory.startswith("error: resources.memory_gb_per_trial: a trial asks for 4.1e+03 GiB memory, but no node")

    scaling = checks(head, [{"gpus_per_trial": 4}, {"gpus_per_trial": 8}], autoscaling=config)
    assert scaling["types"] == ["cpu_worker", "gpu_worker"]
    assert scaling["out"][0] == [
        "resources: no node holds a trial yet (1 CPU, 4 GPU); the autoscaler can add node type gpu_worker: "
        "waiting for it"
    ]
    # Only a type that may not start (max_workers 0) has 8 GPUs: refused.
    assert scaling["out"][1].startswith("error: resources.gpus_per_trial: a trial asks for 8 GPU, but no node")


def _lines(proc: subprocess.Popen) -> queue.Queue:
    out: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            out.put(line)
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def test_a_stalled_sweep_says_so_and_finishes_once_the_gpu_is_free(head, tmp_path):
    holder_code = (
        "import ray, sys, time\n"
        f"ray.init(address={head!r}, logging_level='ERROR', log_to_driver=False)\n"
        "@ray.remote(num_gpus=1, num_cpus=0)\n"
        "class Hold:\n"
        "    def ping(self):\n"
        "        return 1\n"
        "h = Hold.remote()\n"
        "ray.get(h.ping.remote(), timeout=120)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code], stdout=subprocess.PIPE, text=True, env=os.environ | TOKEN
    )
    sweep = None
    try:
        try:  # bounded: a head that died would leave the holder waiting in ray.init, and the suite with it
            said = _lines(holder).get(timeout=150)
        except queue.Empty:
            said = None
        assert said is not None and said.strip() == "held", f"the holder did not get the head's GPU: {said!r}"
        clean = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")} | TOKEN
        cmd = [sys.executable, str(ROOT / "sweeps" / "run.py"), SMOKE, *TINY, "--address", head]
        cmd += ["--storage-path", str(tmp_path / "ray"), "--set", "resources.gpus_per_trial=1"]
        cmd += ["--set", "resources.stall_warning_s=3"]
        sweep = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=clean
        )
        lines, seen, deadline = _lines(sweep), [], time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if line.startswith("stalled:"):
                break
        stalled = [s for s in seen if s.startswith("stalled:")]
        assert stalled, "".join(seen)[-3000:]
        assert stalled[0].strip() == (
            "stalled: 3 trials pending for 3 s, each asking 1 CPU, 1 GPU; free now: 2 CPU, 0 GPU"
        ), stalled
        assert not progress_lines(seen)  # no trial ran meanwhile

        holder.kill()  # its actor dies with its driver: the GPU is free
        assert sweep.wait(timeout=240) == 0, ("".join(seen) + sweep.stdout.read())[-3000:]
        rest = []
        while (line := lines.get(timeout=10)) is not None:
            rest.append(line)
        assert "3/3 trials done (0 failed)" in "".join(rest)
    finally:
        for p in (holder, sweep):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
