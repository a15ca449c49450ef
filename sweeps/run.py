"""Run an init-scheme sweep: `python sweeps/run.py [CONFIG] [--set KEY=VALUE ...]`.

Until the Ray Tune sweep lands, trials run in this process one after another (what `--no-ray` will
keep doing as the debug mode). Exit code 2 with one line on stderr for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from initsweep.config import ConfigError, load_config
from initsweep.data import DataError
from initsweep.report import format_table, summarize
from initsweep.runner import default_device, run_in_process

DEFAULT_CONFIG = Path(__file__).with_name("seed_table.yaml")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sweep weight-init schemes over replicate seeds and print a result table.",
        epilog="examples:\n"
        "  python sweeps/run.py                                  # the founding seed table, 5 seeds\n"
        "  python sweeps/run.py sweeps/smoke.yaml --no-ray       # seconds, in this process\n"
        "  python sweeps/run.py --set train.epochs=1 --set data.limit=6000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="sweep YAML (default: %(default)s)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key by its dotted path (repeatable), e.g. train.lr=3e-4",
    )
    parser.add_argument(
        "--no-ray",
        action="store_true",
        help="run trials in this process one after another (debug mode; currently the only mode)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sweep = load_config(args.config, args.overrides)
        n_trials = len(sweep.schemes)
        print(
            f"sweep {sweep.name!r}: {n_trials} trials x {len(sweep.seeds)} seeds, in-process "
            f"on {args.device or default_device()}",
            flush=True,
        )
        start = time.perf_counter()

        def progress(i: int, total: int, result) -> None:
            s = summarize(result)
            print(
                f"[{i}/{total}] {result.config.scheme.name}: val acc {s['val_accuracy_mean']:.2f}% "
                f"± {s['val_accuracy_std']:.2f} ({result.seconds:.1f} s)",
                flush=True,
            )

        results = run_in_process(sweep, device=args.device, on_trial=progress)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(results))
    print(f"\n{n_trials} trials, {n_trials * len(sweep.seeds)} trained models in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
