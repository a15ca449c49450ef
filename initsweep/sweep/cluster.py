"""Connecting to Ray: an embedded one of our own on 127.0.0.1, or a cluster; and what a cluster must share.

Ray reads some settings from the environment once, when it is imported, so `connect` sets them and only
then imports Ray: call it before anything else in the process imports Ray.
"""

from __future__ import annotations

import json
import os
import site
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from initsweep.config import ConfigError, ResourcesConfig
from initsweep.sweep.resources import describe, trial_request

__all__ = [
    "autoscaler_node_types",
    "check_cluster",
    "check_resources",
    "connect",
    "ray_environment",
    "workers_import_this_initsweep",
    "working_folder_modules",
]

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
"""Where `ray up` leaves the cluster config on the head, and what cluster.yaml's head passes to
`ray start --autoscaling-config`: a driver on the head (`ray job submit`) reads the node types there."""

LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, an embedded Ray binds its node services (GCS, raylet, workers, agents)
to 127.0.0.1: Ray uses the machine's outward address as the node IP unless it believes it runs alone."""


NO_PRESTART_ENV = "RAY_prestart_worker_first_driver"
"""Set to 0, an embedded Ray starts no idle workers for its first driver: Tune's trial actors carry a
runtime_env of their own and never run in them (2 idle workers per sweep: 93 MB and 1.5 CPU-s, unused)."""


def ray_environment(address: str | None, listen: str | None = None) -> None:
    """Set what Ray reads from the environment when it is imported (an embedded Ray binds loopback only and
    starts no idle workers) and what its workers inherit (this initsweep); before anything imports Ray.
    `connect` calls it; call it sooner where other threads may import Ray."""
    if not address and not listen:
        if "ray" in sys.modules and os.environ.get(LOOPBACK_ONLY_ENV) != "0":
            raise RuntimeError("connect() must run before Ray is imported, or the embedded Ray is not loopback-only")
        os.environ[LOOPBACK_ONLY_ENV] = "0"
    if not address:
        os.environ.setdefault(NO_PRESTART_ENV, "0")
        workers_import_this_initsweep()


def workers_import_this_initsweep() -> None:
    """Put the checkout this driver's initsweep comes from first on the path an embedded Ray's workers inherit.

    Ray adds only the driver script's folder (`sweeps/`) and the working folder to its workers' path, so
    they import initsweep as a fresh interpreter does: from the checkout `pip install -e` named, which need
    not be the one whose `sweeps/run.py` started the sweep (a second clone, a git worktree), and the trials
    would train with the other checkout's engine. An installed initsweep (site-packages) is left alone.
    """
    root = Path(__file__).resolve().parents[2]
    installed = {Path(p).resolve() for p in (*site.getsitepackages(), site.getusersitepackages())}
    if root in installed:
        return
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path[:1] != [str(root)]:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *path])


def connect(
    address: str | None, verbose: bool = False, listen: str | None = None, dashboard: bool = False
) -> str | None:
    """Start an embedded Ray or join a cluster; returns the dashboard URL (None: no dashboard).

    The embedded Ray's node services, and with `dashboard` its dashboard and Jobs API (which runs whatever
    code it is sent), listen on 127.0.0.1 unless `listen` names another address of this machine, or 0.0.0.0
    for all of them. Without `dashboard` the Jobs API is closed and Ray saves the dashboard's processes
    (200 MB, 3 CPU-s a sweep): a sweep's results are in MLflow. Ray's token authentication stays on either
    way. `ConfigError` when the cluster cannot be reached.
    """
    ray_environment(address, listen)
    import ray  # after the environment above

    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = {"logging_level": "INFO" if verbose else "ERROR", "log_to_driver": verbose}
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            shipped = working_folder_modules()
            if shipped:  # your model or dataset code, for nodes that do not share this folder
                kwargs["runtime_env"] = {"py_modules": shipped}
            context = ray.init(address=address, **kwargs)
        else:
            if listen not in (None, "0.0.0.0"):
                kwargs["_node_ip_address"] = listen
            # "local": a new Ray of our own, even where another one runs on this machine (`ray start`, or
            # a second sweep): without it ray.init() would join that one.
            context = ray.init(
                address="local", dashboard_host=listen or "127.0.0.1", include_dashboard=dashboard, **kwargs
            )
        return context.dashboard_url or None
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first})") from None


JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Where `ray job submit` hands its driver the job's runtime_env (as JSON, under "runtime_env")."""


def working_folder_modules() -> list[str]:
    """The modules this driver imported from its working folder, as paths for Ray's `py_modules`.

    `resolve_target` imports a `target` from the working folder (the sweep's checks, before `connect`,
    build the model and load the data), and Ray puts the driver's folder on every worker's path, which
    only serves nodes that share the folder. On a cluster these modules travel with the job instead:
    each single-file module or package that lies directly in the working folder, initsweep excepted
    (the nodes have their own). Empty when `ray job submit` already shipped the code (a `working_dir` or
    `py_modules` of its own, which a second one would conflict with).
    """
    try:
        job_env = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}").get("runtime_env") or {}
    except (ValueError, AttributeError):
        job_env = {}
    if job_env.get("working_dir") or job_env.get("py_modules"):
        return []
    folder = Path.cwd().resolve()
    own = Path(__file__).resolve().parents[1]  # the initsweep package
    found: set[str] = set()
    for name, module in list(sys.modules.items()):
        if "." in name or name == "__main__" or module is None:
            continue
        package = list(getattr(module, "__path__", None) or [])
        paths = package if package else [getattr(module, "__file__", None)]
        for path in paths:
            if not path:
                continue
            resolved = Path(path).resolve()
            if resolved.parent != folder or resolved == own or not (package or resolved.suffix == ".py"):
                continue
            found.add(str(resolved))
    return sorted(found)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (ray.init would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({err})") from None


def check_cluster(local_tracking: bool, tracking_uri: str, storage: Path) -> None:
    """On a multi-node cluster, refuse stores that the other nodes or the user's UI cannot share."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) < 2:
        return
    if local_tracking:
        raise ConfigError(
            f"--tracking-uri {tracking_uri}: a multi-node cluster needs an MLflow tracking server "
            "(e.g. --tracking-uri http://HEAD_IP:5000), not a local file or SQLite store"
        )
    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".initsweep-shared-{uuid.uuid4().hex}"
    marker.write_text("shared?")
    exists = ray.remote(num_cpus=0)(os.path.exists)
    try:
        seen = ray.get(
            [
                exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                    str(marker)
                )
                for n in nodes
            ]
        )
    finally:
        marker.unlink(missing_ok=True)
    blind = [n["NodeManagerAddress"] for n, ok in zip(nodes, seen, strict=True) if not ok]
    if blind:
        raise ConfigError(
            f"--storage-path {storage}: not visible from node {blind[0]}; multi-node sweeps need a folder "
            "every node shares (an NFS mount)"
        )


_KEY_OF = {
    "CPU": "resources.cpus_per_trial",
    "GPU": "resources.gpus_per_trial",
    "memory": "resources.memory_gb_per_trial",
}


def _fits(ask: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in ask.items())


def check_resources(resources: ResourcesConfig, printer=print) -> None:
    """Refuse (`ConfigError`) a trial request that no alive node of the connected cluster can hold, unless
    the cluster's autoscaler can add a node type that holds it (then one line says so and the sweep waits)."""
    import ray

    ask = trial_request(resources)
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(_fits(ask, node) for node in nodes):
        return
    types = {name: res for name, res in autoscaler_node_types().items() if _fits(ask, res)}
    if types:
        printer(
            f"resources: no node holds a trial yet ({describe(ask)}); the autoscaler can add node type "
            f"{', '.join(sorted(types))}: waiting for it",
            flush=True,
        )
        return
    # Name the first resource no single node has enough of; else the combination is what no node holds.
    short = next((k for k in ask if not any(node.get(k, 0.0) >= ask[k] for node in nodes)), None)
    by = short or "CPU"
    largest = max(nodes, key=lambda n: (n.get(by, 0.0), n.get("CPU", 0.0), n.get("GPU", 0.0), n.get("memory", 0.0)))
    shown = ["CPU", "GPU", "memory", *[k for k in ask if k not in ("CPU", "GPU", "memory")]]
    node_text = f"largest node: {describe(largest, shown)}" if nodes else "no node is alive"
    if short is None:
        raise ConfigError(
            f"resources: a trial asks for {describe(ask)}, but no node has all of that at once ({node_text})"
        )
    key = _KEY_OF.get(short, f"resources.custom.{short}")
    raise ConfigError(
        f"{key}: a trial asks for {describe({short: ask[short]})}, but no node has that many ({node_text})"
    )


def autoscaler_node_types() -> dict[str, dict[str, float]]:
    """The node types the cluster's autoscaler may add ({name: resources}), or {} when there is none.

    Ray 2.60's autoscalers do not publish their node types through a public API. Two sources, each
    optional: the cluster config the autoscaler reports to the GCS (`node_group_configs`, what Ray Data
    reads through `ray._private.state`), and on a `ray up` head, the launcher's bootstrap config. Node
    types that may not start (max_workers 0) are left out; so are types whose resources are not declared
    (Ray reads those from the instance, which only the cloud knows).
    """
    types: dict[str, dict[str, float]] = {}
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        for group in config.node_group_configs if config is not None else []:
            if group.max_count != 0:
                types[group.name] = dict(group.resources)
    except Exception:  # not published by this Ray, or by this autoscaler
        pass
    if types:
        return types
    path = Path(os.environ.get("INITSWEEP_AUTOSCALING_CONFIG", BOOTSTRAP_CONFIG)).expanduser()
    try:
        import yaml

        config = yaml.safe_load(path.read_text())
        head_type = config.get("head_node_type")
        for name, node_type in (config.get("available_node_types") or {}).items():
            if name == head_type or node_type.get("max_workers", config.get("max_workers", 0)) == 0:
                continue
            # `ray up` fills in CPU, GPU and memory (bytes) of known instance types; custom ones are declared.
            types[name] = {k: float(v) for k, v in (node_type.get("resources") or {}).items()}
    except (OSError, AttributeError, TypeError, ValueError, yaml.YAMLError):
        pass
    return types
