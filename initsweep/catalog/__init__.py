"""What exists, without torch: the init schemes and their parameters, the model configs, the datasets' facts.

The config validates against these registries in milliseconds (a config error never waits for torch or
Ray to load); `initsweep.engine` holds the torch code behind each entry.

Your own networks and datasets join by an import path (`target: "package.module:factory"`), by
`initsweep.register_model` / `initsweep.register_dataset`, or by a Python entry point of an installed
package (groups `initsweep.models`, `initsweep.datasets`). Only names and paths are known here; the code
behind them is imported by the engine, where torch may load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = ["IMPORT", "Registered", "check_target", "entry_point_targets", "import_path"]

IMPORT = "import"
"""The model name or dataset that takes its code from `target`."""
_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Registered:
    """A name registered in this process: the callable behind it, and where a fresh process finds it."""

    function: Callable[..., Any]
    target: str | None
    """`module:qualname` of `function` when a fresh process can import it (a module-level function), else None."""
    config_class: type | None = None


def check_target(target: Any) -> str:
    """`target` if it reads `package.module:attribute`, else `ValueError` (nothing is imported here)."""
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"{target!r} is not an import path of the form package.module:function")
    return target


def import_path(function: Callable[..., Any]) -> str | None:
    """`module:qualname` of a module-level function or class, else None (a lambda, a local function)."""
    module, qualname = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    return path if _TARGET.match(path) else None


def entry_point_targets(group: str) -> dict[str, str]:
    """name -> `module:attribute` of the installed packages' entry points in `group` (none is loaded)."""
    return {ep.name: f"{ep.module}:{ep.attr}" if ep.attr else ep.value for ep in entry_points(group=group)}
