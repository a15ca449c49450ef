"""Dotted key paths into a raw config: shared by grid axes (each trial's settings) and `--set` overrides."""

from __future__ import annotations

from typing import Any

from initsweep.config.errors import ConfigError


def set_path(raw: dict, key: str, value: Any) -> None:
    """Set the dotted `key` (list items by index: `schemes.0.c`) of a raw config in place; under
    `grid` the rest of the key is one axis name (`grid.model.depth`)."""
    parts = key.split(".")
    if parts[0] == "grid" and len(parts) > 2:
        parts = ["grid", ".".join(parts[1:])]
    if "" in parts:
        raise ConfigError(f"{key}: not a dotted key path (an empty part)")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(node):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: no such list item (has {len(node)})")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:i]) or 'config'}: is not a mapping, cannot set {key}")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]
