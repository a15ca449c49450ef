"""Which role each module of a model plays (`initsweep.catalog.roles`): `roles_of(model, init)`.

A role comes from `init.roles` (globs in the config), else the module's `init_role` attribute (the
built-in gpt and vit), else, for a model that declares none, the default name patterns. Only modules
that hold a weight get one: a Linear, Embedding, LayerNorm, ..., or an `nn.MultiheadAttention`, whose
q, k, v weight is its own `in_proj_weight` parameter (see `weight_of`).
"""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from initsweep.catalog.roles import DEFAULT_PATTERNS, ROLES
from initsweep.config import ConfigError, InitConfig

__all__ = ["bias_of", "modules_with_weights", "roles_of", "some_names", "weight_of", "weights_of"]

_ATTENTION_WEIGHTS = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
"""An `nn.MultiheadAttention`'s separate q, k, v weights, when its kdim or vdim differ from embed_dim."""


def weight_of(module: nn.Module) -> torch.Tensor | None:
    """The module's weight: `weight`, or an `nn.MultiheadAttention`'s fused `in_proj_weight` (3d, d), or
    its `q_proj_weight` when q, k and v are apart (kdim or vdim differ); None when it has none."""
    for name in ("weight", "in_proj_weight", "q_proj_weight"):
        w = getattr(module, name, None)
        if isinstance(w, torch.Tensor):
            return w
    return None


def weights_of(module: nn.Module) -> list[torch.Tensor]:
    """Every weight tensor of the module that an init draws: `weight_of`, or a MultiheadAttention's
    separate q, k and v weights."""
    w = weight_of(module)
    if w is None:
        return []
    if w is getattr(module, "q_proj_weight", None):
        return [getattr(module, name) for name in _ATTENTION_WEIGHTS]
    return [w]


def bias_of(module: nn.Module) -> torch.Tensor | None:
    """The module's bias: `bias`, or a MultiheadAttention's `in_proj_bias`; None when it has none."""
    for name in ("bias", "in_proj_bias"):
        b = getattr(module, name, None)
        if isinstance(b, torch.Tensor):
            return b
    return None


def modules_with_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module that has a weight tensor (`weight_of`), by qualified name, in definition order (the
    model itself, named "", when it is a single layer)."""
    return [(name, m) for name, m in model.named_modules() if name and weight_of(m) is not None] or (
        [("", model)] if weight_of(model) is not None else []
    )


def some_names(names: list[str]) -> str:
    """The first 8 names, then how many in all: `a, b, ... (12 in all)`; `none` for none."""
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return shown or "none"


def roles_of(model: nn.Module, init: InitConfig | None = None) -> dict[str, str]:
    """Qualified module name -> role, in definition order, for every module with a weight that has one.

    First found wins: `init.roles` (a role given there replaces its default patterns; a glob that
    matches no module with a weight, or a module two roles claim, is a `ConfigError` naming the key),
    then the module's `init_role` attribute, then `initsweep.catalog.roles.DEFAULT_PATTERNS` (only for a
    model none of whose modules has an `init_role`; for each module the first role whose pattern matches).
    """
    init = init or InitConfig()
    named = modules_with_weights(model)
    names = [name for name, _ in named]
    roles: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for role, globs in init.roles.items():
        for i, glob in enumerate(globs):
            key = f"init.roles.{role}.{i}"
            matched = [name for name in names if fnmatch.fnmatchcase(name, glob)]
            if not matched:
                raise ConfigError(f"{key}: {glob!r} matches no module with weights ({some_names(names)})")
            for name in matched:
                if roles.get(name, role) != role:
                    raise ConfigError(f"{key}: {glob!r} matches {name}, which {claimed[name]} names {roles[name]}")
                roles[name], claimed[name] = role, key
    declared = {name: m.init_role for name, m in model.named_modules() if hasattr(m, "init_role")}
    for name, role in declared.items():
        if role not in ROLES:
            raise ConfigError(
                f"model: module {name or '(the model)'} has init_role {role!r}, not a role (valid: {', '.join(ROLES)})"
            )
    if declared:
        for name in names:
            if name in declared:
                roles.setdefault(name, declared[name])
    else:
        for name in names:
            if name in roles:
                continue
            role = next(
                (
                    r
                    for r, globs in DEFAULT_PATTERNS.items()
                    if r not in init.roles and any(fnmatch.fnmatchcase(name, g) for g in globs)
                ),
                None,
            )
            if role is not None:
                roles[name] = role
    return {name: roles[name] for name in names if name in roles}
