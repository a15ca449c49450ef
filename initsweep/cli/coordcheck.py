"""`initsweep coord-check [CONFIG] [--set KEY=VALUE ...] [--out DIR]` (also `python sweeps/coord_check.py`):
muP's coord check for a sweep config's model.

Trains the config's first `schemes` row at each `coord_check.widths` under each
`coord_check.parametrizations` for `coord_check.steps` steps on its `seeds`, in this process (no Ray, no
MLflow), and writes DIR/coord_check.csv (each module's mean |activation| per step) and DIR/coord_check.png.
Bad input: exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from initsweep.cli import add_config_arguments
from initsweep.cli.run import EXIT_BAD_INPUT

HELP = "muP's coord check: activation size per layer against width"
DESCRIPTION = (
    "Train a sweep config's model a few steps at several widths under sp and muP, and plot each layer's\n"
    "mean |activation| against width: flat lines mean the parametrization is width-stable (muP's coord check)."
)
DEFAULT_CONFIG = Path(__file__).parents[2] / "sweeps" / "coord_check.yaml"
EPILOG = """examples:
  initsweep coord-check                                    # the MLP on FashionMNIST, widths 64..2048
  initsweep coord-check --out docs                         # docs/coord_check.csv and docs/coord_check.png
  initsweep coord-check sweeps/coord_check.yaml --set coord_check.steps=3 --set seeds=[0]
the config needs a `coord_check: {widths: [...], steps: 5, parametrizations: [sp, mup]}` section
(`python sweeps/coord_check.py ARGS` is the same command, for a clone without the package installed)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, str(DEFAULT_CONFIG), "coord_check.steps=3")
    p.add_argument(
        "--out",
        default="coord-check",
        metavar="DIR",
        help="folder for coord_check.csv and coord_check.png (default: %(default)s, under the current folder)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from initsweep.config import ConfigError, load_config

    try:
        sweep = load_config(args.config, args.overrides)
        return run(sweep, Path(args.out), args.device)
    except ConfigError as err:  # bad input or a missing dataset
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run(sweep, out: Path, device: str) -> int:
    from initsweep.engine.coordcheck import coord_check, coord_trials
    from initsweep.engine.data import load_configured
    from initsweep.report.coordcheck import last_step_readout, write_csv, write_figure

    check = sweep.coord_check
    coord_trials(sweep)  # bad input fails before the data loads
    print(
        f"coord check {sweep.name!r}: widths {check.widths} x {check.parametrizations} x {len(sweep.seeds)} seeds, "
        f"{check.steps} steps, on {device}",
        flush=True,
    )
    start = time.perf_counter()
    rows = coord_check(sweep, load_configured(sweep.data, sweep.task), device)
    title = f"coord check: {sweep.name} ({sweep.model.name}, {sweep.schemes[0].name}, lr {sweep.train.lr:g})"
    csv_path, png_path = write_csv(rows, out / "coord_check.csv"), write_figure(rows, out / "coord_check.png", title)
    for parametrization, by_width in last_step_readout(rows).items():
        (w0, l0), (w1, l1) = min(by_width.items()), max(by_width.items())
        print(
            f"{parametrization}: readout l1 at step {check.steps}: {l0:.3g} at width {w0}, {l1:.3g} at width {w1} "
            f"({l1 / l0:.2g}x)"
        )
    print(f"{len(rows)} rows in {time.perf_counter() - start:.1f} s: {csv_path}, {png_path}")
    return 0
