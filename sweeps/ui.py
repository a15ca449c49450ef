"""Open a sweep store in the MLflow UI: `python sweeps/ui.py [--tracking-uri URI] [--port 5000]`, the
same as `initsweep ui` (`initsweep/cli/ui.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's initsweep (ray job working dirs)

from initsweep.cli import script_main


def main(argv: list[str] | None = None) -> int:
    return script_main("ui", argv)


if __name__ == "__main__":
    sys.exit(main())
