"""Connecting to Ray: an embedded one of our own on 127.0.0.1, or a cluster; and what a cluster must share.

Ray reads some settings from the environment once, when it is imported, so `connect` sets them and only
then imports Ray: call it before anything else in the process imports Ray.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from initsweep.config import ConfigError

__all__ = ["check_cluster", "connect"]

LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, an embedded Ray binds its node services (GCS, raylet, workers, agents)
to 127.0.0.1: Ray uses the machine's outward address as the node IP unless it believes it runs alone."""


def connect(address: str | None, verbose: bool = False, listen: str | None = None) -> str | None:
    """Start an embedded Ray or join a cluster; returns the dashboard URL.

    The embedded Ray's dashboard, Jobs API (which runs whatever code it is sent) and node services
    listen on 127.0.0.1 unless `listen` names another address of this machine, or 0.0.0.0 for all of
    them. Ray's token authentication stays on either way. `ConfigError` when the cluster cannot be reached.
    """
    if not address and not listen:
        if "ray" in sys.modules and os.environ.get(LOOPBACK_ONLY_ENV) != "0":
            raise RuntimeError("connect() must run before Ray is imported, or the embedded Ray is not loopback-only")
        os.environ[LOOPBACK_ONLY_ENV] = "0"
    import ray  # after the environment above

    if ray.is_initialized():
        return None
    kwargs: dict[str, Any] = {"logging_level": "INFO" if verbose else "ERROR", "log_to_driver": verbose}
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            context = ray.init(address=address, **kwargs)
        else:
            if listen not in (None, "0.0.0.0"):
                kwargs["_node_ip_address"] = listen
            # "local": a new Ray of our own, even where another one runs on this machine (`ray start`, or
            # a second sweep): without it ray.init() would join that one.
            context = ray.init(address="local", dashboard_host=listen or "127.0.0.1", include_dashboard=True, **kwargs)
        return context.dashboard_url or None
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first})") from None


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
