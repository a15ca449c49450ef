"""A trial hook that records which initsweep a trial's worker runs: `INITSWEEP_TRIAL_HOOK=origin:record` (with
`tests/` on the workers' PYTHONPATH) appends the file of the worker's `initsweep` package, one line per
call, to the file `INITSWEEP_ORIGIN_FILE` names."""

from __future__ import annotations

import os

import initsweep

__all__ = ["FILE_ENV", "record"]

FILE_ENV = "INITSWEEP_ORIGIN_FILE"


def record(event) -> None:
    with open(os.environ[FILE_ENV], "a") as out:
        out.write(f"{initsweep.__file__}\n")
