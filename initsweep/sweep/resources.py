"""A trial's resource request in Ray's names, and how amounts read in messages (no Ray needed): shared by
the cluster checks, the stall line and the Tuner."""

from __future__ import annotations

from initsweep.config import ResourcesConfig

__all__ = ["GIB", "describe", "trial_request"]

GIB = 2**30


def trial_request(resources: ResourcesConfig) -> dict[str, float]:
    """What one trial asks Ray for, in Ray's resource names (memory in bytes); zero amounts left out."""
    ask = {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}
    if resources.memory_gb_per_trial:
        ask["memory"] = resources.memory_gb_per_trial * GIB
    ask.update(resources.custom)
    return {k: v for k, v in ask.items() if v > 0}


def describe(amounts: dict[str, float], keys: list[str] | None = None) -> str:
    """`2 CPU, 1 GPU, 9.8 GiB memory, 1 accelerator_type:H100`: the given keys (default: those in `amounts`)."""
    parts = []
    for key in keys if keys is not None else list(amounts):
        value = amounts.get(key, 0.0)
        if key == "memory":
            parts.append(f"{value / GIB:.3g} GiB memory")
        else:
            parts.append(f"{value:g} {key}")
    return ", ".join(parts)
