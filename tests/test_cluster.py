"""Clusters: two real Ray nodes, `ray job submit` against a local head, and cluster.yaml's schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port, mlflow_runs, run_cli, wait_for_http
from ray.autoscaler._private.util import prepare_config, validate_config

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_trials_land_on_both_nodes_and_local_stores_are_refused(two_nodes, mlflow_server, tmp_path):
    smoke = str(ROOT / "sweeps" / "smoke.yaml")
    proc = run_cli(
        smoke,
        *("--address", two_nodes.address, "--tracking-uri", mlflow_server, "--storage-path", str(tmp_path / "ray")),
        *("--set", "schemes.1.c=0.5", "--set", "schemes.2.scheme=kaiming_normal"),  # its own experiment
        *("--set", "name=two_nodes", "--set", "resources.reuse_actors=false"),  # two trials at once: one per node
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(mlflow_server, "two_nodes")
    assert len(runs["trial"]) == 3 and all(r.info.status == "FINISHED" for r in runs["trial"] + runs["seed"])
    assert len({r.data.tags["node_id"] for r in runs["trial"]}) == 2

    local = run_cli(smoke, "--address", two_nodes.address, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert local.returncode == 2
    assert local.stderr.startswith(f"error: --tracking-uri sqlite:///{tmp_path}/mlflow.db: a multi-node cluster needs")
    assert local.stderr.count("\n") == 1

    # Without --address the sweep starts a Ray of its own, even with this cluster running on the machine
    # (a plain ray.init() would join it, and then refuse the SQLite store as above).
    embedded = run_cli(smoke, "--storage-path", str(tmp_path / "ray"), "--set", "seeds=[7]", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    assert "on Ray (embedded" in embedded.stdout and "3/3 trials done (0 failed)" in embedded.stdout


EMBEDDED_RAY = """
import json, time
import psutil
from initsweep.sweep.cluster import connect

url = connect(None)
started, seen = time.monotonic(), set()
while time.monotonic() - started < 8:  # Ray starts the idle workers for its first driver within a second or two
    for process in psutil.Process().children(recursive=True):
        try:
            seen.add(" ".join(process.cmdline())[:80])
        except psutil.Error:
            pass
    time.sleep(0.5)
print(json.dumps({"url": url, "processes": sorted(seen)}))
"""


def test_an_embedded_ray_starts_neither_dashboard_nor_idle_workers(tmp_path):
    """Ray's dashboard and Jobs API are opt-in (`--ray-dashboard`), and the idle workers Ray starts for its
    first driver would go unused (Tune's trial actors carry a runtime_env, so Ray starts their own): the
    embedded Ray starts neither (200 MB and 93 MB of memory, 3 and 1.5 CPU-seconds a sweep)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-c", EMBEDDED_RAY], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    processes = found["processes"]
    assert any("raylet" in p for p in processes) and any("ray::RuntimeEnvAgent" in p for p in processes), processes
    assert found["url"] is None
    assert not [p for p in processes if p.startswith("ray::IDLE") or "ray-dashboard-" in p], processes


@pytest.mark.slow
def test_ray_job_submit_runs_a_smoke_sweep(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dashboard = free_port(), free_port()
    # The head's `python` (the job's entrypoint) must be this virtualenv's.
    env = os.environ | {"RAY_AUTH_MODE": "token", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    start = [RAY, "start", "--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]
    start += ["--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats", "--block"]
    # Ray's fixed default agent port (52365) may be held by another Ray on this machine (a sweep in a
    # parallel test); its job agent would then never come up ("No available agent to submit job").
    start += [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}"]
    # --block keeps this head tied to one process: stopping it stops this head only (`ray stop` would
    # stop every Ray on the machine).
    head = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert wait_for_http(f"http://127.0.0.1:{dashboard}", head, timeout=120), "the Ray head did not start"
        db = tmp_path / "job.db"
        submit = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT), "--"]
        submit += ["python", "sweeps/run.py", "sweeps/smoke.yaml", "--tracking-uri", f"sqlite:///{db}"]
        submit += ["--storage-path", str(tmp_path / "ray")]
        for _ in range(12):  # the job agent can come up after the dashboard answers; Ray says "try again later"
            proc = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=300)
            if "No available agent to submit job" not in proc.stderr:
                break
            time.sleep(5)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert "3/3 trials done (0 failed)" in proc.stdout
        runs = mlflow_runs(f"sqlite:///{db}", "smoke")
        assert len(runs["trial"]) == 3 and len(runs["seed"]) == 6
        assert all(r.info.status == "FINISHED" for r in runs["sweep"] + runs["trial"] + runs["seed"])
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cluster_yaml_passes_rays_schema():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    assert set(config["available_node_types"]) == {"head", "cpu_worker", "gpu_worker"}
    assert config["available_node_types"]["gpu_worker"]["resources"] == {"GPU": 1}
    setup = "\n".join(config["setup_commands"])
    assert "dataset-fashion-mnist" in setup and "pip install -q -e ~/initsweep" in setup
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # every node gets the token


def test_cluster_yaml_comments_every_key():
    """Each key has a comment on the line above it or at the end of its line."""
    lines = (ROOT / "cluster.yaml").read_text().splitlines()
    keys = [(i, line) for i, line in enumerate(lines) if re.match(r"^\s*(- )?\"?[~\w./-]+\"?:", line)]
    uncommented = [line for i, line in keys if not lines[i - 1].strip().startswith("#") and " # " not in line]
    assert not uncommented


def test_a_broken_cluster_yaml_fails_the_schema():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["instance"] = "m5.xlarge"
    with pytest.raises(Exception, match="'instance' was unexpected"):
        validate_config(prepare_config(config))
