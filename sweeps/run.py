"""Run an init-scheme sweep: `python sweeps/run.py [CONFIG] [--set KEY=VALUE ...]`, the same as
`initsweep run` (`initsweep/cli/run.py`) for a clone without the package installed, and for `ray job submit`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's initsweep (ray job working dirs)

from initsweep.cli import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("run", argv)


if __name__ == "__main__":
    sys.exit(main())
