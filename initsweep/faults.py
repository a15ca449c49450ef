"""Fault injection for the reliability tests: make chosen trials raise, for real, inside Ray.

`INITSWEEP_FAULTS="uniform_fan_in:once,constant:always"` (in the environment the Ray workers inherit)
makes every trial of scheme `uniform_fan_in` (a registry name or a row's label) raise once, after its
first epoch's checkpoint, so its retry resumes from that checkpoint; trials of `constant` raise on every
attempt before they train. Unset, nothing happens: the trainable calls `maybe_fail` and it returns.
"""

from __future__ import annotations

import os

__all__ = ["ENV", "InjectedFault", "maybe_fail", "planned"]

ENV = "INITSWEEP_FAULTS"


class InjectedFault(RuntimeError):
    """The error an injected fault raises (its text names the trial and the fault)."""


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


def maybe_fail(names: tuple[str, ...], *, resumed: bool, epoch: int | None) -> None:
    """Raise if a fault is planned for this trial at this point: `epoch` None is the attempt's start,
    an int the end of that (checkpointed) epoch; `resumed` tells whether the attempt started from one."""
    kind = planned(names)
    if kind == "always" and epoch is None:
        raise InjectedFault(f"injected fault: {names[0]} fails on every attempt")
    if kind == "once" and epoch == 1 and not resumed:
        raise InjectedFault(f"injected fault: {names[0]} fails once, after its first epoch")
