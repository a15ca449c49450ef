"""The `initsweep` command: `initsweep run | ui | report | coord-check ...`.

Each subcommand is a module here with `HELP`, `add_arguments(parser)` and `main(args) -> exit code`; the
`sweeps/` scripts call the same modules (`script_main`). Only argparse loads before a subcommand runs, so
`initsweep --help` answers at once; each command imports what it needs inside `main`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "add_config_arguments", "main", "script_main"]

COMMANDS = {
    "run": "initsweep.cli.run",
    "ui": "initsweep.cli.ui",
    "report": "initsweep.cli.report",
    "coord-check": "initsweep.cli.coordcheck",
}
"""Subcommand -> its module (`HELP`, `DESCRIPTION`, `EPILOG`, `add_arguments`, `main`)."""


def add_config_arguments(p: argparse.ArgumentParser, default: str, example: str) -> None:
    """The sweep YAML (positional, optional) and `--set KEY=VALUE` overrides that the commands share."""
    p.add_argument("config", nargs="?", default=default, help="sweep YAML (default: %(default)s)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key by its dotted path (repeatable), e.g. {example}",
    )


def _parser(module, prog: str, subparsers=None) -> argparse.ArgumentParser:
    options = {
        "description": module.DESCRIPTION,
        "epilog": getattr(module, "EPILOG", None),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    if subparsers is None:
        parser = argparse.ArgumentParser(prog=prog, **options)
    else:
        parser = subparsers.add_parser(prog, help=module.HELP, **options)
    module.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`initsweep COMMAND ...` (the console script)."""
    parser = argparse.ArgumentParser(
        prog="initsweep",
        description="Which weight initialization trains your network best, and how sure are we across seeds? "
        "Sweeps init schemes over replicate seeds with Ray Tune, Optuna and MLflow.",
        epilog="`initsweep COMMAND --help` shows each command's options.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = {name: importlib.import_module(path) for name, path in COMMANDS.items()}
    for name, module in modules.items():
        _parser(module, name, subparsers)
    args = parser.parse_args(argv)
    return _run(modules[args.command], args)


def script_main(command: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """One subcommand as its own script (`python sweeps/run.py ...` is `initsweep run ...`)."""
    module = importlib.import_module(COMMANDS[command])
    parser = _parser(module, prog or f"python sweeps/{command}.py")
    return _run(module, parser.parse_args(argv))


def _run(module, args: argparse.Namespace) -> int:
    try:
        return module.main(args)
    finally:
        # Done: at exit Python would otherwise collect every object torch, Ray and MLflow made (a second or
        # more; the OS takes the memory back at once). Exit handlers, Ray's shutdown among them, still run.
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
