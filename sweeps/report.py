"""Rebuild a sweep's report from MLflow alone: `python sweeps/report.py --experiment NAME`, the same as
`initsweep report` (`initsweep/cli/report.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's initsweep (ray job working dirs)

from initsweep.cli import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("report", argv)


if __name__ == "__main__":
    sys.exit(main())
