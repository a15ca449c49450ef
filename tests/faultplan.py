"""Fault plans for the reliability tests: make chosen trials raise, for real, inside Ray.

Wired in through the trainable's hook seam: `INITSWEEP_TRIAL_HOOK=faultplan:inject` (with `tests/` on the
workers' PYTHONPATH) and `INITSWEEP_FAULTS="uniform_fan_in:once,constant:always"` make every trial of
scheme `uniform_fan_in` (a registry name or a row's label) raise once, after its first epoch's
checkpoint, so its retry resumes from that checkpoint; trials of `constant` raise on every attempt
before they train. `INITSWEEP_PAUSE_S=1.5` pauses every trial that long after each epoch's checkpoint, so
a test can act while trials are mid-way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["ENV", "InjectedFault", "env", "inject", "planned"]

ENV = "INITSWEEP_FAULTS"
PAUSE_ENV = "INITSWEEP_PAUSE_S"


class InjectedFault(RuntimeError):
    """The error an injected fault raises (its text names the trial and the fault)."""


def env(plan: str, pause_s: float = 0.0) -> dict[str, str]:
    """The environment Ray workers need for `plan` (and a pause after each epoch) to reach them."""
    here = str(Path(__file__).parent)
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    return {ENV: plan, PAUSE_ENV: str(pause_s), "INITSWEEP_TRIAL_HOOK": "faultplan:inject", "PYTHONPATH": path}


def planned(names: tuple[str, ...], spec: str | None = None) -> str | None:
    """The fault ("once" or "always") planned for a trial known by any of `names`, or None."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, kind = item.rpartition(":")
        if kind not in ("once", "always"):
            raise ValueError(f"{ENV}: {item!r} (expected NAME:once or NAME:always)")
        if name in names:
            return kind
    return None


def inject(event) -> None:
    """The trial hook: raise if a fault is planned for this trial at this point of its attempt."""
    trial = event.trial
    names = (trial.name, trial.row.name, trial.row.scheme)
    kind = planned(names)
    if kind == "always" and event.epoch is None:
        raise InjectedFault(f"injected fault: {names[0]} fails on every attempt")
    if kind == "once" and event.epoch == 1 and not event.resumed:
        raise InjectedFault(f"injected fault: {names[0]} fails once, after its first epoch")
    if event.epoch is not None:
        time.sleep(float(os.environ.get(PAUSE_ENV) or 0))
