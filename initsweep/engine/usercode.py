"""Your code, reached by import path: a `target` resolved to its callable, and what it raised as one
phrase. Here, not in models or data, which both need it (and models names data's `Data`)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from initsweep.config import ConfigError

__all__ = ["problem_of", "resolve_target"]


def problem_of(err: BaseException) -> str:
    """An exception as one short phrase: `ValueError: bad width`."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def resolve_target(target: str, key: str) -> Callable[..., Any]:
    """The callable at `package.module:attribute`, imported from the working folder or the installed
    packages; a `ConfigError` naming `key` when it does not import, lacks the attribute or is not callable."""
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:  # `python sweeps/run.py` puts sweeps/ on the path, not the working folder
        sys.path.append(os.getcwd())
    importlib.invalidate_caches()
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name) and module_name.split(".")[0] == err.name.split(".")[0]:
            raise ConfigError(
                f"{key}: no module named {err.name!r} (looked in {os.getcwd()} and the installed packages)"
            ) from None
        raise ConfigError(f"{key}: importing {module_name!r} fails: {problem_of(err)}") from None
    except Exception as err:  # a syntax error or an exception while the module runs
        raise ConfigError(f"{key}: importing {module_name!r} fails: {problem_of(err)}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}: {target} is a {type(obj).__name__}, not a function")
    return obj
