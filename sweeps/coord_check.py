"""muP's coord check: `python sweeps/coord_check.py [CONFIG] [--set KEY=VALUE ...] [--out DIR]`, the same as
`initsweep coord-check` (`initsweep/cli/coordcheck.py`) for a clone without the package installed."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's initsweep

from initsweep.cli import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("coord-check", argv, prog="python sweeps/coord_check.py")


if __name__ == "__main__":
    sys.exit(main())
