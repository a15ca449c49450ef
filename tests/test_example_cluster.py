"""The ResNet example on a two-node Ray cluster, launched from a folder that holds its model module: the
module is not installed, and no worker may rely on reading that folder (as on another machine)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid

import pytest
from conftest import ROOT, mlflow_runs

from initsweep.sweep.cluster import JOB_CONFIG_ENV, working_folder_modules

LAUNCHED = "trials x 2 seeds on Ray ("
"""The line the driver prints once it has joined the cluster (and shipped the working folder's code)."""


@pytest.mark.slow
def test_resnet_example_runs_on_two_nodes_from_its_folder(two_nodes, mlflow_server, tmp_path):
    folder = tmp_path / "resnet"
    shutil.copytree(ROOT / "examples" / "resnet", folder, ignore=shutil.ignore_patterns("__pycache__"))
    name = f"resnet_two_nodes_{os.getpid()}"  # its own experiment on the module's MLflow server
    args = [sys.executable, str(ROOT / "sweeps" / "run.py"), "sweep.yaml", "--address", two_nodes.address]
    args += ["--tracking-uri", mlflow_server, "--storage-path", str(tmp_path / "ray")]
    args += ["--report-dir", str(tmp_path / "reports")]
    for override in (
        f"name={name}",
        "data.limit=300",
        "model.kwargs.widths=[4,8,8]",
        "train.epochs=1",
        "seeds=[0,1]",
        "resources.cpus_per_trial=1",
        "resources.reuse_actors=false",  # the two trials at once: one per node
    ):
        args += ["--set", override]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.realpath(p) != str(folder)]
    env["PYTHONPATH"] = os.pathsep.join(path)  # the module imports from the working folder only

    proc = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    stdout: list[str] = []
    removed = False
    try:
        for line in proc.stdout:
            stdout.append(line)
            if not removed and LAUNCHED in line:
                # The driver has imported the module (its checks build the model) and joined the cluster;
                # no trial has started. From now on the folder is as another machine sees it: without
                # resnet_model.py. Ray adds the driver's working folder to every worker's sys.path, which
                # only works where the nodes share that folder; the trials must import the module that
                # the driver shipped with the job.
                (folder / "resnet_model.py").unlink()
                removed = True
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    out, err = "".join(stdout), "".join(stderr)
    assert proc.returncode == 0, (out + err)[-3000:]
    assert removed, out[-3000:]
    assert "2/2 trials done (0 failed)" in out, (out + err)[-3000:]

    runs = mlflow_runs(mlflow_server, name)
    assert len(runs["sweep"]) == 1 and len(runs["trial"]) == 2 and len(runs["seed"]) == 4
    assert all(r.info.status == "FINISHED" for r in runs["sweep"] + runs["trial"] + runs["seed"])
    for trial in runs["trial"]:
        assert trial.data.params["model.target"] == "resnet_model:build"
        assert trial.data.params["init.overrides"] == "*.bn2=constant(value=0)"
        assert {"val_accuracy", "val_loss"} <= set(trial.data.metrics)
    for seed in runs["seed"]:
        assert {"val_accuracy", "val_loss"} <= set(seed.data.metrics)
    # Each node built the model from the shipped module: the two trials ran one on each node.
    assert len({r.data.tags["node_id"] for r in runs["trial"]}) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.yaml"]  # nothing written beside the example


def test_the_modules_shipped_are_those_imported_from_the_working_folder(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    (tmp_path / f"model_{tag}.py").write_text("import json\n")
    (tmp_path / f"pkg_{tag}").mkdir()
    (tmp_path / f"pkg_{tag}" / "__init__.py").write_text("")
    (tmp_path / f"pkg_{tag}" / "layers.py").write_text("")
    (tmp_path / f"unused_{tag}.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f"deeper_{tag}.py").write_text("")  # on the path, but not the working folder's own
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path), str(tmp_path / "sub")])
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    names = [f"model_{tag}", f"pkg_{tag}.layers", f"deeper_{tag}"]
    for name in names:
        importlib.import_module(name)
    try:
        assert working_folder_modules() == [str(tmp_path / f"model_{tag}.py"), str(tmp_path / f"pkg_{tag}")]
        # `ray job submit --working-dir` (or --py-modules) already shipped them: a second runtime_env would conflict
        for key in ("working_dir", "py_modules"):
            monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {key: "x"}, "metadata": {}}))
            assert working_folder_modules() == []
        monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {"env_vars": {"A": "1"}}}))
        assert len(working_folder_modules()) == 2
    finally:
        for name in [*names, f"pkg_{tag}"]:
            sys.modules.pop(name, None)


def test_initsweep_itself_is_not_shipped_from_a_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)  # initsweep/ lies in the working folder here; the nodes have their own
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert "initsweep" in sys.modules
    assert str(ROOT / "initsweep") not in working_folder_modules()
