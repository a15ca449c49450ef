"""From a file or a raw mapping to a `SweepConfig`: YAML read, `--set` applied, the raw values bounded before
pydantic walks them, every failure one `ConfigError`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from initsweep.config.errors import ConfigError, _one_line, shown
from initsweep.config.paths import set_path
from initsweep.config.sweep import SweepConfig

MAX_VALUES = 100_000
"""The most values (mappings, lists and scalars) a raw config may hold, each YAML alias counted where it is
used: a cycle or an alias bomb is refused before validation walks it."""
_INT64 = (-(2**63), 2**63 - 1)


def _check_values(raw: dict) -> None:
    """Every number in a raw config finite and within 64 bits (what torch, NumPy and MLflow store), and
    no more than `MAX_VALUES` values in all; walked without recursion, so nesting depth does not matter."""
    stack: list[tuple[Any, Any]] = [(None, raw)]  # (path as (parent path, key) links, value)
    count = 0
    while stack:
        path, value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"config: more than {MAX_VALUES} values (each YAML alias counted where it is used)")
        if isinstance(value, dict):
            stack.extend(((path, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(((path, i), v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{_dotted(path)}: {value!r} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            raise ConfigError(f"{_dotted(path)}: {shown(value)} is out of range (numbers here fit in 64 bits)")


def _dotted(path: Any) -> str:
    """`a.b.0` from the (parent path, key) links `_check_values` keeps; very deep paths cut short."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(str(key))
    parts.reverse()
    return ".".join(parts if len(parts) <= 12 else [*parts[:12], "..."]) or "config"


def parse_config(raw: Any) -> SweepConfig:
    """Validate a raw config (a mapping, as YAML gives it); `ConfigError` on any problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of keys, got {type(raw).__name__}")
    _check_values(raw)
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None
    except RecursionError:  # junk nested thousands deep, which no config key takes
        raise ConfigError("config: values nested too deeply") from None


def _read_yaml(text: str) -> Any:
    """`yaml.safe_load`, with the errors it raises besides `YAMLError` turned into one: an integer of
    over 4300 digits (`ValueError`) and nesting deeper than Python's recursion limit."""
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as err:
        problem = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]
        raise yaml.YAMLError(problem) from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """Where and what: ` at line 3: expected ',' or ']'`."""
    if isinstance(err, yaml.reader.ReaderError):
        return f" at character {err.position}: {err.reason} (#x{err.character:04x})"
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}" if mark else ""
        return f"{where}: {err.problem or err.context}"
    return f": {err}"


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set a.b.c=VALUE` (VALUE read as YAML) to the raw config in place."""
    if not isinstance(assignment, str):
        raise ConfigError(f"--set {shown(assignment)}: expected a KEY=VALUE string")
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=1")
    if "" in key.split("."):
        raise ConfigError(f"--set {assignment}: {key!r} is not a dotted key path (an empty part)")
    try:
        value = _read_yaml(text)
    except yaml.YAMLError:
        raise ConfigError(f"{key}: cannot read {shown(text)} as a value") from None
    set_path(raw, key, value)


def load_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read a YAML sweep config, apply `--set` overrides, validate; `ConfigError` on any problem."""
    try:
        path = Path(path)
    except TypeError:
        raise ConfigError(f"config: {shown(path)} is not a file path") from None
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason}: byte {err.start})") from None
    try:
        raw = _read_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(err)}") from None
    if raw is None:
        raise ConfigError(f"{path}: empty config file (no keys)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    return parse_config(raw)
