"""The `init` section and the `schemes` rows: which layers a scheme initializes, per-layer overrides, the
biases, and each scheme's parameters checked (and "auto" resolved) against the scheme registry."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from initsweep.catalog.roles import ROLES
from initsweep.catalog.schemes import AUTO, SchemeError, get_scheme, resolve_auto, validate_params
from initsweep.config.base import _Strict
from initsweep.config.errors import shown

LAYER_TYPES = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Embedding",
)
"""The `torch.nn` layer types a scheme may initialize (`init.layers.types`)."""
DEFAULT_LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
LayerType = Literal[LAYER_TYPES]


class LayersConfig(_Strict):
    """Which layers the trial's scheme initializes: by type, then by name (`fnmatch` globs on the
    module's qualified name, as `model.named_modules()` gives it: `layer1.0.conv2`)."""

    types: list[LayerType] = Field(default=list(DEFAULT_LAYER_TYPES), min_length=1)
    """The layer types the scheme initializes (names of `torch.nn` classes)."""
    include: list[Annotated[str, Field(min_length=1)]] = []
    """Only layers whose name matches one of these globs; empty: every layer of those types."""
    exclude: list[Annotated[str, Field(min_length=1)]] = []
    """Leave out layers whose name matches one of these globs (they keep their own default init)."""

    @property
    def default(self) -> bool:
        return tuple(self.types) == DEFAULT_LAYER_TYPES and not self.include and not self.exclude

    def summary(self) -> str:
        """`Linear,Conv2d include=layer* exclude=fc` (what MLflow and the dry run show)."""
        text = ",".join(self.types)
        text += f" include={','.join(self.include)}" if self.include else ""
        return text + (f" exclude={','.join(self.exclude)}" if self.exclude else "")


_RULE_FORM = "a rule is {match: GLOB, scheme: NAME, PARAM: VALUE}, role: ROLE beside or instead of match"


def _role_problem(role: object) -> str | None:
    return None if role in ROLES else f"unknown role {shown(role)} (valid: {', '.join(ROLES)})"


class OverrideRule(_Strict):
    """A scheme for the layers whose name matches `match`, or that play `role`, or both. In YAML a flat
    mapping: `{match: "*.bn2", scheme: constant, value: 0}`, `{role: attention.out, scheme: constant}`."""

    match: str | None = Field(default=None, min_length=1)
    """An `fnmatch` glob on the module's qualified name (`*.bn2`, `fc`); it must match a layer with weights."""
    role: str | None = None
    """A role (`attention.out`, `norm`, ...: `initsweep.catalog.roles`); with `match`, the modules that have both."""
    scheme: str
    """A per-layer scheme from the registry (not lsuv); pytorch_default keeps the layer's own init."""
    params: dict[str, int | float | str] = {}
    """The scheme's parameters, given flat beside `scheme` (`value: 0`); defaults filled in."""

    @model_validator(mode="before")
    @classmethod
    def _flat_to_params(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "params" in raw:
            return raw
        for key in ("match", "scheme"):
            if key not in raw and not (key == "match" and "role" in raw):
                raise ValueError(f"{key}: missing ({_RULE_FORM})")
        given = {k: v for k, v in raw.items() if k not in ("match", "role", "scheme")}
        for key, value in given.items():  # checked here, so that the message names the parameter
            if not isinstance(key, str):
                raise SchemeError("not a parameter name (a string)", shown(key))
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise SchemeError(f"{shown(value)} is not a number or a name", key)
        return {k: raw[k] for k in ("match", "role", "scheme") if k in raw} | {"params": given}

    @model_validator(mode="after")
    def _params_fit_scheme(self) -> OverrideRule:
        if self.match is None and self.role is None:
            raise ValueError(f"match: missing ({_RULE_FORM})")
        if self.role is not None and _role_problem(self.role):
            raise SchemeError(_role_problem(self.role), "role")
        if get_scheme(self.scheme).whole_model and self.scheme != "pytorch_default":
            raise SchemeError(f"{self.scheme} works on the whole model; a rule takes a per-layer scheme", "scheme")
        object.__setattr__(self, "params", validate_params(self.scheme, self.params))
        return self

    @property
    def target(self) -> str:
        """What the rule names: `*.bn2`, `[attention.out]`, or both: `blocks.0.*[norm]`."""
        return (self.match or "") + (f"[{self.role}]" if self.role else "")

    def summary(self) -> str:
        params = ",".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.target}={self.scheme}({params})" if params else f"{self.target}={self.scheme}"


class InitConfig(_Strict):
    bias: Literal["zeros", "constant", "normal", "default"] = "zeros"
    """Bias init for every scheme but `pytorch_default`: zeros (the seed), a constant, N(0, bias_std^2)
    (mean-field theory's sigma_b), or the layer's own."""
    bias_value: float = 0.0
    """The bias when `bias` is `constant`."""
    bias_std: float = Field(default=0.0, ge=0.0)
    """The biases' standard deviation sigma_b when `bias` is `normal` (drawn per layer from the init seed)."""
    layers: LayersConfig = LayersConfig()
    """Which layers a per-layer scheme initializes; default: every Linear and Conv1d/2d/3d (role-aware: by role)."""
    overrides: list[OverrideRule] = []
    """Rules `{match: GLOB and/or role: ROLE, scheme: NAME, PARAM: VALUE}` (norm layers too); the last match wins."""
    roles: dict[str, list[Annotated[str, Field(min_length=1)]]] = {}
    """Role -> `fnmatch` globs on qualified module names: which modules of your own model play each role
    (`attention.out: ["*.attn.c_proj"]`); a role given here replaces its default patterns (HF GPT-2,
    nanoGPT, torch's TransformerEncoderLayer). The built-in gpt and vit declare their own."""

    @field_validator("roles", mode="before")
    @classmethod
    def _nested_roles(cls, raw: Any) -> Any:
        """`{attention: {out: [...]}}` (what `--set init.roles.attention.out=[...]` builds) reads as
        `{attention.out: [...]}`; a role name must be one of `ROLES`."""
        if not isinstance(raw, dict):
            return raw
        flat: dict[Any, Any] = {}
        for key, value in raw.items():
            if isinstance(value, dict) and isinstance(key, str):
                flat |= {f"{key}.{k}": v for k, v in value.items()}
            else:
                flat[key] = value
        for role in flat:
            if _role_problem(role):
                raise ValueError(f"{role}: {_role_problem(role)}" if isinstance(role, str) else _role_problem(role))
        return flat

    @model_validator(mode="after")
    def _value_needs_constant(self) -> InitConfig:
        if self.bias_value != 0.0 and self.bias != "constant":
            raise ValueError(f"bias_value: only used with bias: constant, not {self.bias}")
        if self.bias_std != 0.0 and self.bias != "normal":
            raise ValueError(f"bias_std: only used with bias: normal, not {self.bias}")
        return self

    @property
    def bias_variance(self) -> float | None:
        """sigma_b^2, the biases' mean square (what mean-field theory needs); None for the layers' own,
        whose variance, 1 / (3 fan_in), differs from layer to layer."""
        return {"zeros": 0.0, "constant": self.bias_value**2, "normal": self.bias_std**2}.get(self.bias)


def resolve_scheme(
    name: str, params: dict[str, Any], activation: str | None, init: InitConfig
) -> dict[str, float | int | str]:
    """The scheme's parameters with every "auto" resolved: a gain or nonlinearity for `activation`
    (`resolve_auto`), and `critical`'s weight variance to the edge of chaos for `activation` and the
    biases' variance (imported only then: mean-field theory needs NumPy, which nothing else here does)."""
    full = resolve_auto(name, params, activation)
    theory_keys = [k for k, p in get_scheme(name).params.items() if p.auto_from_theory and full[k] == AUTO]
    for key in theory_keys:
        from initsweep.theory import ACTIVATIONS, critical_weight_variance

        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise SchemeError(f"'auto' needs a model activation mean-field theory knows ({known})", key)
        if init.bias_variance is None:
            raise SchemeError("'auto' needs init.bias zeros, constant or normal (the layers' own differ by layer)", key)
        try:
            full[key] = critical_weight_variance(activation, init.bias_variance)
        except ValueError as err:
            raise SchemeError(f"'auto' has no edge of chaos here: {err}", key) from None
    return full


class SchemeRow(_Strict):
    """One init scheme and its parameters. In YAML a flat mapping: `{scheme: uniform, low: -0.5, high: 0.5}`."""

    scheme: str
    """A name from the scheme registry."""
    params: dict[str, int | float | str] = {}
    """Every parameter of the scheme, defaults filled in."""
    label: str | None = None
    """Name for tables and run names; default: the scheme and its parameters."""

    @model_validator(mode="before")
    @classmethod
    def _flat_to_params(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            raw = {"scheme": raw}
        if not isinstance(raw, dict) or "params" in raw:
            return raw
        if "scheme" not in raw:
            raise ValueError("scheme: missing (each row needs a scheme name)")
        given = {k: v for k, v in raw.items() if k not in ("scheme", "label")}
        for key, value in given.items():  # checked here, so that the message names the parameter
            if not isinstance(key, str):
                raise SchemeError("not a parameter name (a string)", shown(key))
            if isinstance(value, float) and not math.isfinite(value):
                raise SchemeError(f"{value!r} is not a finite number", key)
            if not isinstance(value, int | float | str):
                raise SchemeError(f"{shown(value)} is not a number or a name", key)
        row = {"scheme": raw["scheme"], "params": given}
        return row | ({"label": raw["label"]} if "label" in raw else {})

    @model_validator(mode="after")
    def _params_fit_scheme(self) -> SchemeRow:
        object.__setattr__(self, "params", validate_params(self.scheme, self.params))
        return self

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.scheme}({shown})" if shown else self.scheme
