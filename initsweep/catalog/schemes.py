"""The init-scheme registry: one plain dict, name -> `Scheme` (its parameters; no torch here).

Each scheme lists its parameters with a default, the domain a value must lie in, and the range a search
explores (the `y` of uniform[-y, y], a gain). Gains and He init's nonlinearity default to "auto": the value
matching the model's activation, as `torch.nn.init.calculate_gain` gives it (relu sqrt(2), tanh 5/3),
resolved for each trial. The weight rule that draws each scheme is in `initsweep.engine.schemes`.

Add a scheme: one `Scheme(...)` here, its rule in `initsweep.engine.schemes.RULES`, its expected moments
in `tests/test_schemes.py`; the registry-wide tests then check it. A role-aware scheme (a transformer's
init, by the role each module plays: `initsweep.catalog.roles`) lists the roles it needs in `needs_roles`
and has its role -> rule table in `initsweep.engine.schemes.ROLE_SCHEMES` instead (tests in
`tests/test_roles.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from initsweep.catalog.roles import RESIDUAL_ROLES

__all__ = [
    "AUTO",
    "BIAS_MODES",
    "NONLINEARITIES",
    "SCHEMES",
    "Param",
    "Range",
    "Scheme",
    "SchemeError",
    "get_scheme",
    "matching_gain",
    "matching_nonlinearity",
    "resolve_auto",
    "resolve_search",
    "typed_params",
    "validate_params",
]

NONLINEARITIES = ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu")
BIAS_MODES = ("zeros", "constant", "normal", "default")
AUTO = "auto"
"""A gain or nonlinearity that follows the model's activation (`torch.nn.init.calculate_gain`)."""


class SchemeError(ValueError):
    """An unknown scheme or parameter, or a value outside its domain; `key` names the parameter."""

    def __init__(self, problem: str, key: str | None = None):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Param:
    """One scheme parameter: a number with a domain and a search range, or a choice among strings."""

    default: float | str
    domain: tuple[float, float] = (-math.inf, math.inf)
    search: tuple[float, float] | None = None
    log: bool = False
    choices: tuple[str, ...] = ()
    open_low: bool = False
    """True when the domain's low end is excluded (a std or a bound must be > 0)."""
    integer: bool = False
    auto: bool = False
    """Also takes "auto": the value that matches the model's activation, resolved per trial."""
    auto_from_theory: bool = False
    """Its "auto" is mean-field theory's (the edge of chaos), which `initsweep.config` resolves, not a gain."""

    def check(self, name: str, value: object) -> float | str:
        if self.auto and value == AUTO:
            return AUTO
        if self.choices:
            if value not in self.choices:
                raise SchemeError(f"{value!r} is not one of {', '.join(self.choices)}", name)
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemeError(f"{value!r} is not a number", name)
        lo, hi = self.domain
        if not math.isfinite(value) or value < lo or value > hi or (self.open_low and value == lo):
            low_bracket = "(" if self.open_low else "["
            raise SchemeError(f"{value!r} is outside its domain {low_bracket}{lo}, {hi}]", name)
        if self.integer and value != int(value):
            raise SchemeError(f"{value!r} is not a whole number", name)
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Scheme:
    name: str
    description: str
    params: Mapping[str, Param] = field(default_factory=dict)
    check: Callable[[Mapping[str, float | str]], str | None] | None = None
    """Cross-parameter check (low < high); returns the problem, or None."""
    whole_model: bool = False
    """Works on the whole model (lsuv, pytorch_default, the role-aware schemes) rather than by one rule per weight."""
    needs_roles: tuple[str, ...] = ()
    """A role-aware scheme: it draws each module by its role, and the model needs a module of one of these."""


def _low_below_high(p: Mapping[str, float | str]) -> str | None:
    return None if p["low"] < p["high"] else f"low ({p['low']}) must be below high ({p['high']})"


_GAIN = Param(AUTO, domain=(0.0, math.inf), open_low=True, search=(0.1, 10.0), log=True, auto=True)
_FAN_C = Param(1.0, domain=(0.0, math.inf), open_low=True, search=(0.1, 10.0), log=True)
_STD = Param(0.05, domain=(0.0, math.inf), open_low=True, search=(1e-3, 1.0), log=True)
_KAIMING = {
    "a": Param(0.0, domain=(0.0, math.inf), search=(0.0, 1.0)),
    "mode": Param("fan_in", choices=("fan_in", "fan_out")),
    "nonlinearity": Param(AUTO, choices=NONLINEARITIES, auto=True),
}

SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme(
            "constant",
            "every weight = value (the seed's all-zeros and all-ones rows)",
            {"value": Param(0.0, search=(-1.0, 1.0))},
        ),
        Scheme(
            "uniform",
            "U(low, high) (the seed's [0, 1) and [-0.5, 0.5) rows)",
            {"low": Param(0.0, search=(-1.0, 1.0)), "high": Param(1.0, search=(-1.0, 1.0))},
            check=_low_below_high,
        ),
        Scheme(
            "uniform_symmetric",
            "U(-y, y) with a fixed y, whatever the layer's size",
            {"y": Param(0.05, domain=(0.0, math.inf), open_low=True, search=(1e-3, 1.0), log=True)},
        ),
        Scheme(
            "normal",
            "N(mean, std^2) with a fixed std, whatever the layer's size",
            {"mean": Param(0.0, search=(-0.1, 0.1)), "std": _STD},
        ),
        Scheme("uniform_fan_in", "U(-y, y), y = c / sqrt(fan_in) (the seed's 'general rule' at c = 1)", {"c": _FAN_C}),
        Scheme("normal_fan_in", "N(0, y^2), y = c / sqrt(fan_in) (the seed's normal row at c = 1)", {"c": _FAN_C}),
        Scheme("xavier_uniform", "Glorot: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))", {"gain": _GAIN}),
        Scheme("xavier_normal", "Glorot: N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))", {"gain": _GAIN}),
        Scheme("kaiming_uniform", "He: U(-b, b), b = gain(nonlinearity, a) * sqrt(3 / fan)", _KAIMING),
        Scheme("kaiming_normal", "He: N(0, s^2), s = gain(nonlinearity, a) / sqrt(fan)", _KAIMING),
        Scheme("orthogonal", "a (semi-)orthogonal matrix times gain (Saxe et al.)", {"gain": _GAIN}),
        Scheme(
            "trunc_normal",
            "N(0, std^2) truncated to [-bound * std, bound * std]",
            {
                "std": Param(0.02, domain=(0.0, math.inf), open_low=True, search=(1e-3, 1.0), log=True),
                "bound": Param(2.0, domain=(0.0, math.inf), open_low=True, search=(0.5, 4.0)),
            },
        ),
        Scheme(
            "sparse",
            "N(0, std^2) with a fraction `sparsity` of each column set to zero (Martens)",
            {
                "sparsity": Param(0.1, domain=(0.0, 1.0), search=(0.0, 0.99)),
                "std": Param(0.01, domain=(0.0, math.inf), open_low=True, search=(1e-3, 1.0), log=True),
            },
        ),
        Scheme(
            "lsuv",
            "orthogonal, then each layer rescaled to unit output variance on one batch (Mishkin & Matas)",
            {
                "tol": Param(0.1, domain=(0.0, 1.0), open_low=True, search=(0.01, 0.5), log=True),
                "max_iter": Param(10, domain=(1, 100), search=(1, 20), integer=True),
            },
            whole_model=True,
        ),
        Scheme("pytorch_default", "the layers' own reset_parameters(), bias included", whole_model=True),
        Scheme(
            "critical",
            "N(0, s^2), s^2 = weight_variance / fan_in; 'auto': the edge of chaos (chi1 = 1) for the model's "
            "activation and bias variance (mean-field theory, Schoenholz et al. 2017)",
            {
                "weight_variance": Param(
                    AUTO,
                    domain=(0.0, math.inf),
                    open_low=True,
                    search=(0.5, 8.0),
                    log=True,
                    auto=True,
                    auto_from_theory=True,
                )
            },
        ),
        # The role-aware schemes: a transformer's init by the role each module plays (initsweep.catalog.roles);
        # papers and formulas in full at initsweep.engine.schemes.ROLE_SCHEMES. N: the residual branches / 2.
        Scheme(
            "gpt2",
            "GPT-2 (Radford et al. 2019; HF/nanoGPT code): every Linear and Embedding N(0, std^2), the residual "
            "out-projections (attention.out, mlp.out) N(0, (std / sqrt(2N))^2), 2N their count; biases 0, norms 1",
            {"std": Param(0.02, domain=(0.0, math.inf), open_low=True, search=(0.002, 0.2), log=True)},
            whole_model=True,
            needs_roles=RESIDUAL_ROLES,
        ),
        Scheme(
            "t_fixup",
            "T-Fixup (Huang et al. 2020), decoder form, s = (9N)^(-1/4): Xavier-uniform on every Linear, gain s "
            "on the value (qkv's last third), attention.out, mlp.in, mlp.out; embeddings N(0, s^2 / d); biases 0",
            whole_model=True,
            needs_roles=RESIDUAL_ROLES,
        ),
        Scheme(
            "deepnorm",
            "DeepNet (Wang et al. 2022), decoder-/encoder-only: every residual_alpha = (2N)^(1/4); Xavier-normal, "
            "gain (8N)^(-1/4) on value, attention.out, mlp.in, mlp.out, gain 1 on q, k; the rest PyTorch's default",
            whole_model=True,
            needs_roles=RESIDUAL_ROLES,
        ),
        Scheme(
            "zero_residual",
            "every residual branch's out-projection (attention.out, mlp.out) zero, its bias by init.bias (Fixup, "
            "SkipInit, ReZero; Goyal et al.'s zero gamma); everything else PyTorch's default",
            whole_model=True,
            needs_roles=RESIDUAL_ROLES,
        ),
        Scheme(
            "small_embedding",
            "embeddings U(-scale, scale) (BlinkDL's SmallInitEmb, in RWKV); everything else PyTorch's default",
            {"scale": Param(1e-4, domain=(0.0, math.inf), open_low=True, search=(1e-6, 1e-1), log=True)},
            whole_model=True,
            needs_roles=("embedding",),
        ),
    ]
}


def get_scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise SchemeError(f"unknown scheme {name!r} (valid: {', '.join(SCHEMES)})", "scheme") from None


def validate_params(name: str, params: Mapping[str, object]) -> dict[str, float | int | str]:
    """The scheme's full parameter set: defaults filled in, every value checked against its domain."""
    scheme = get_scheme(name)
    unknown = sorted(set(params) - set(scheme.params))
    if unknown:
        valid = ", ".join(scheme.params) or "none"
        raise SchemeError(f"not a parameter of scheme {name!r} (valid: {valid})", unknown[0])
    full = {k: p.check(k, params.get(k, p.default)) for k, p in scheme.params.items()}
    problem = scheme.check(full) if scheme.check else None
    if problem:
        raise SchemeError(problem)
    return full


def typed_params(name: str, text: Mapping[str, str]) -> dict[str, float | int | str]:
    """A scheme's parameters read back from strings (MLflow params) to the registry's types."""
    out: dict[str, float | int | str] = {}
    for key, p in get_scheme(name).params.items():
        if key in text:
            value = text[key]
            out[key] = value if p.choices or value == AUTO else int(float(value)) if p.integer else float(value)
    return out


# calculate_gain's name for each model activation; it has no GELU, which is ReLU-like and takes ReLU's.
_NONLINEARITY_OF = {"relu": "relu", "tanh": "tanh", "selu": "selu", "identity": "linear", "gelu": "relu"}
# torch.nn.init.calculate_gain for each nonlinearity (leaky_relu at its default slope 0.01).
_GAIN_OF = {
    "linear": 1.0,
    "sigmoid": 1.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)),
    "tanh": 5.0 / 3,
    "selu": 3.0 / 4,
}


def matching_nonlinearity(activation: str) -> str:
    """The `calculate_gain` nonlinearity for a model activation (identity -> linear, gelu -> relu)."""
    try:
        return _NONLINEARITY_OF[activation]
    except KeyError:
        raise SchemeError(f"no matching gain for activation {activation!r}", "activation") from None


def matching_gain(activation: str) -> float:
    """The gain that keeps the signal's scale through `activation`: relu sqrt(2), tanh 5/3, identity 1."""
    return _GAIN_OF[matching_nonlinearity(activation)]


def resolve_auto(name: str, params: Mapping[str, object], activation: str | None) -> dict[str, float | int | str]:
    """The scheme's parameters with every "auto" replaced by the value matching `activation`:
    a gain by `matching_gain`, a nonlinearity (He init) by `matching_nonlinearity` (theory's "auto",
    `critical`'s weight variance, is `initsweep.config.resolve_scheme`'s)."""
    full = validate_params(name, params)
    scheme = get_scheme(name)
    auto = [k for k, v in full.items() if v == AUTO and not scheme.params[k].auto_from_theory]
    if auto and activation is None:
        raise SchemeError("'auto' needs the model's activation to resolve", auto[0])
    for key in auto:
        full[key] = matching_nonlinearity(activation) if scheme.params[key].choices else matching_gain(activation)
    return full


@dataclass(frozen=True)
class Range:
    """A searched parameter: numbers in [low, high] (log scale or not), or one of `choices`."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[str, ...] = ()


def resolve_search(name: str, spec: Mapping[str, object] | None) -> dict[str, Range | float | int | str]:
    """A scheme's search space: each parameter a `Range` to search or a fixed value.

    `spec` maps parameters to `[low, high]` (a range; log scale as the registry says), a list of
    choices, `null` (the registry's range) or a single value (fixed). An empty `spec` searches every
    parameter that has a registry range; otherwise unlisted parameters stay at their defaults.
    """
    scheme = get_scheme(name)
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(scheme.params))
    if unknown:
        valid = ", ".join(scheme.params) or "none"
        raise SchemeError(f"not a parameter of scheme {name!r} (valid: {valid})", f"{name}.{unknown[0]}")
    if not spec:
        spec = {k: None for k, p in scheme.params.items() if p.search is not None}
    space: dict[str, Range | float | int | str] = {}
    for key, p in scheme.params.items():
        where = f"{name}.{key}"
        value = spec.get(key, p.default)
        if key in spec and value is None:
            if p.search is None and not p.choices:
                raise SchemeError("has no default search range; give [low, high]", where)
            value = list(p.choices) if p.choices else list(p.search)
        if not isinstance(value, list):
            try:
                space[key] = p.check(key, value)
            except SchemeError as err:
                raise SchemeError(err.problem, where) from None
            continue
        if p.choices:
            bad = [v for v in value if v not in p.choices]
            if bad or not value:
                raise SchemeError(f"choices {value!r} are not among {', '.join(p.choices)}", where)
            space[key] = Range(choices=tuple(value))
            continue
        if len(value) != 2:
            raise SchemeError(f"expected [low, high], got {value!r}", where)
        try:
            low, high = (p.check(key, v) for v in value)
        except SchemeError as err:
            raise SchemeError(f"range {value!r}: {err.problem}", where) from None
        if not low < high:
            raise SchemeError(f"range {value!r}: low must be below high", where)
        if p.log and low <= 0:
            raise SchemeError(f"range {value!r}: a log-scale range must be above 0", where)
        space[key] = Range(low, high, log=p.log, integer=p.integer)
    return space
