"""The weight rules behind the scheme registry (`initsweep.catalog.schemes`), and `apply_scheme`.

A rule draws the weights of the selected layers (`init.layers`: by default every `Linear` and `Conv`
layer) from an explicit `torch.Generator`, so the same init seed always gives the same network;
`init.overrides` give named layers (normalization layers too), or the modules of a role, a scheme of
their own. The role-aware schemes (`ROLE_SCHEMES`: gpt2, t_fixup, deepnorm, zero_residual,
small_embedding) draw a transformer's modules by the role each plays (`initsweep.engine.roles`).

Fans follow torch's `nn.init._calculate_fan_in_and_fan_out`, the convention `xavier_*` and `kaiming_*`
use: a weight's dim 1 times the kernel size is its fan-in, dim 0 times the kernel size its fan-out. For
Linear and Conv that is in_features (in_channels/groups x kernel) and out_features; a ConvTranspose
weight is (in, out/groups, kernel...), so its fan-in is out_channels/groups x kernel (the fan-in of the
convolution it transposes); an Embedding weight (num_embeddings, dim) has fan-in dim, fan-out
num_embeddings (as a Linear from dim to num_embeddings).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from initsweep.catalog.roles import QKV_PARTS, RESIDUAL_ROLES
from initsweep.catalog.schemes import SchemeError, get_scheme
from initsweep.config import ConfigError, InitConfig, OverrideRule, resolve_scheme
from initsweep.engine.roles import bias_of, modules_with_weights, roles_of, some_names, weight_of, weights_of

__all__ = [
    "INIT_LAYERS",
    "LAYER_CLASSES",
    "ROLE_SCHEMES",
    "RULES",
    "Depth",
    "InitPlan",
    "RoleScheme",
    "apply_scheme",
    "fan_in",
    "init_layers",
    "plan_init",
    "qkv_parts",
    "residual_alphas",
]

INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layer types a scheme initializes by default (`init.layers.types`)."""
LAYER_CLASSES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear,
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "ConvTranspose1d": nn.ConvTranspose1d,
    "ConvTranspose2d": nn.ConvTranspose2d,
    "ConvTranspose3d": nn.ConvTranspose3d,
    "Embedding": nn.Embedding,
}
"""`init.layers.types` names -> the `torch.nn` classes (subclasses match too)."""

WeightRule = Callable[..., None]
"""`rule(weight, generator, **params)` fills `weight` in place."""


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output unit, torch's convention: in_features for Linear, in_channels/groups * kernel size
    for Conv, out_channels/groups * kernel size for ConvTranspose, embedding_dim for Embedding. Read through
    torch's fan function, which a parametrization points at the base model's fans while a scheme draws
    (`initsweep.engine.parametrizations`)."""
    return nn.init._calculate_fan_in_and_fan_out(weight)[0]


def _uniform_fan_in(w: torch.Tensor, g: torch.Generator, c: float) -> None:
    y = c / math.sqrt(fan_in(w))
    nn.init.uniform_(w, -y, y, generator=g)


def _normal_fan_in(w: torch.Tensor, g: torch.Generator, c: float) -> None:
    nn.init.normal_(w, 0.0, c / math.sqrt(fan_in(w)), generator=g)


def _sparse(w: torch.Tensor, g: torch.Generator, sparsity: float, std: float) -> None:
    """As `nn.init.sparse_`, whose zero positions ignore its generator (torch 2.14 draws them from the
    global RNG); a conv weight is viewed as (out, in * kernel)."""
    w2 = w.view(w.shape[0], -1)
    w2.normal_(0.0, std, generator=g)
    rows_per_column = torch.rand(w2.shape, generator=g, device=w.device).argsort(dim=0)
    w2.scatter_(0, rows_per_column[: math.ceil(sparsity * w2.shape[0])], 0.0)


RULES: dict[str, WeightRule] = {
    "constant": lambda w, g, value: nn.init.constant_(w, value),
    "uniform": lambda w, g, low, high: nn.init.uniform_(w, low, high, generator=g),
    "uniform_symmetric": lambda w, g, y: nn.init.uniform_(w, -y, y, generator=g),
    "normal": lambda w, g, mean, std: nn.init.normal_(w, mean, std, generator=g),
    "uniform_fan_in": _uniform_fan_in,
    "normal_fan_in": _normal_fan_in,
    "xavier_uniform": lambda w, g, gain: nn.init.xavier_uniform_(w, gain, generator=g),
    "xavier_normal": lambda w, g, gain: nn.init.xavier_normal_(w, gain, generator=g),
    "kaiming_uniform": lambda w, g, a, mode, nonlinearity: nn.init.kaiming_uniform_(
        w, a, mode, nonlinearity, generator=g
    ),
    "kaiming_normal": lambda w, g, a, mode, nonlinearity: nn.init.kaiming_normal_(
        w, a, mode, nonlinearity, generator=g
    ),
    "orthogonal": lambda w, g, gain: nn.init.orthogonal_(w, gain, generator=g),
    "trunc_normal": lambda w, g, std, bound: nn.init.trunc_normal_(w, 0.0, std, -bound * std, bound * std, generator=g),
    "sparse": _sparse,
    "critical": lambda w, g, weight_variance: _normal_fan_in(w, g, math.sqrt(weight_variance)),
}
"""Scheme name -> its weight rule; the whole-model schemes (lsuv, pytorch_default) have none."""


@dataclass(frozen=True)
class Depth:
    """What a role rule may scale by: the model's residual branches, counted as its `attention.out` and
    `mlp.out` modules (each branch ends in one). A GPT-2 or ViT block has two, so `n`, half the count,
    is the number of blocks (GPT-2's n_layer, the N of T-Fixup and DeepNet)."""

    branches: int

    @property
    def n(self) -> float:
        return self.branches / 2


PartRule = Callable[[torch.Tensor, torch.Generator, Mapping[str, Any], Depth, nn.Module], None]
"""`rule(weight, generator, params, depth, module)` fills `weight` (a module's weight, or one third of a
fused qkv weight) in place; `module` is the layer it belongs to."""


@dataclass(frozen=True)
class RoleScheme:
    """A whole-model scheme that draws each module by the role it plays.

    `parts` maps a role to its rule; a fused `attention.qkv` weight is drawn as three parts,
    `attention.q`, `attention.k`, `attention.v` (`qkv_parts`), so that a rule may treat the value apart.
    `others` maps an `init.layers.types` name (Linear, Embedding) to the rule for modules of that type
    with no role. A module the table does not name keeps PyTorch's default (its `reset_parameters()`),
    bias included; one it names gets `init.bias` on its bias, as every scheme's layers. Norms are left
    at weight 1, bias 0 by every role scheme. `residual_alpha`, when given, is the value every
    `residual_alpha` buffer of the model is set to (a model without one is refused)."""

    parts: Mapping[str, PartRule]
    others: Mapping[str, PartRule] = field(default_factory=dict)
    residual_alpha: Callable[[Mapping[str, Any], Depth], float] | None = None
    formula: str = ""
    """The paper and the exact rule (for the reader; `initsweep.catalog.schemes` has the one-line form)."""

    def rule_for(self, role: str | None, module: nn.Module) -> bool:
        """Whether this scheme draws a module of `role` (None: no role)."""
        if role is None:
            return any(isinstance(module, LAYER_CLASSES[t]) for t in self.others)
        if role == "attention.qkv":
            return any(part in self.parts for part in QKV_PARTS)
        return role in self.parts


def qkv_parts(module: nn.Module) -> dict[str, torch.Tensor]:
    """A fused q, k, v projection's weight as its three parts (views, in place): `attention.q`,
    `attention.k`, `attention.v`. A MultiheadAttention's `in_proj_weight` (3d, d) splits into thirds of
    rows (its separate `q_proj_weight`, ... when kdim or vdim differ); any other weight along the axis
    that is three times the other (a Linear(d, 3d)'s (3d, d) rows, GPT-2's Conv1D (d, 3d) columns), else
    a Linear's rows when their count divides by 3. `ValueError` when there is no such split."""
    separate = [getattr(module, name, None) for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight")]
    if getattr(module, "in_proj_weight", None) is None and all(isinstance(w, torch.Tensor) for w in separate):
        return dict(zip(QKV_PARTS, separate, strict=True))
    w = weight_of(module)
    if w is None or w.dim() != 2:
        raise ValueError(f"a weight of shape {tuple(w.shape) if w is not None else ()} is not a q, k, v projection")
    rows, cols = w.shape
    linear = isinstance(module, nn.Linear | nn.MultiheadAttention)
    if rows == 3 * cols or (linear and rows % 3 == 0):
        axis = 0
    elif cols == 3 * rows:
        axis = 1
    else:
        raise ValueError(
            f"its weight of shape ({rows}, {cols}) does not split into q, k, v thirds; give unfused projections "
            "the roles attention.q, attention.k, attention.v in init.roles"
        )
    return dict(zip(QKV_PARTS, w.chunk(3, dim=axis), strict=True))


def residual_alphas(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every `residual_alpha` buffer of the model (one per transformer block: DeepNet's skip multiplier)."""
    return [
        (f"{name}.residual_alpha" if name else "residual_alpha", buf)
        for name, m in model.named_modules()
        for bname, buf in m.named_buffers(recurse=False)
        if bname == "residual_alpha"
    ]


def _embedding_width(module: nn.Module, w: torch.Tensor) -> int:
    """d, the width an embedding writes: an Embedding's embedding_dim, a Linear's (or Conv's) outputs."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)  # an Embedding's fan_in is its width
    return int(fan_in if isinstance(module, nn.Embedding) else fan_out)


# GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", sec. 2.3: "We scale
# the weights of residual layers at initialization by a factor of 1/sqrt(N) where N is the number of
# residual layers"), as HF's GPT2PreTrainedModel._init_weights and nanoGPT's GPT._init_weights write it.
def _gpt2(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.normal_(w, 0.0, p["std"], generator=g)


def _gpt2_residual(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.normal_(w, 0.0, p["std"] / math.sqrt(depth.branches), generator=g)


# T-Fixup (Huang, Perez, Ba and Volkovs 2020, "Improving Transformer Optimization Through Better
# Initialization", ICML; Algorithm 1, decoder; code: layer6ai-labs/T-Fixup).
def t_fixup_scale(depth: Depth) -> float:
    """T-Fixup's decoder factor (9N)^(-1/4), N the blocks."""
    return (9 * depth.n) ** -0.25


def _xavier_uniform(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.xavier_uniform_(w, 1.0, generator=g)


def _t_fixup_scaled(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.xavier_uniform_(w, t_fixup_scale(depth), generator=g)  # = (9N)^(-1/4) x Xavier-uniform


def _t_fixup_embedding(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.normal_(w, 0.0, t_fixup_scale(depth) / math.sqrt(_embedding_width(m, w)), generator=g)


# DeepNet (Wang, Ma, Dong, Huang, Zhang and Wei 2022, "DeepNet: Scaling Transformers to 1,000 Layers";
# Figure 2's pseudocode and its table of alpha and beta; code: microsoft/torchscale).
def deepnorm_alpha(depth: Depth) -> float:
    """DeepNet's alpha for an encoder-only or decoder-only model of N blocks: (2N)^(1/4)."""
    return (2 * depth.n) ** 0.25


def deepnorm_beta(depth: Depth) -> float:
    """DeepNet's beta for an encoder-only or decoder-only model of N blocks: (8N)^(-1/4)."""
    return (8 * depth.n) ** -0.25


def _xavier_normal(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.xavier_normal_(w, 1.0, generator=g)


def _deepnorm_scaled(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.xavier_normal_(w, deepnorm_beta(depth), generator=g)


def _zero(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    w.zero_()


def _small_uniform(w: torch.Tensor, g: torch.Generator, p: Mapping[str, Any], depth: Depth, m: nn.Module) -> None:
    nn.init.uniform_(w, -p["scale"], p["scale"], generator=g)


ROLE_SCHEMES: dict[str, RoleScheme] = {
    "gpt2": RoleScheme(
        parts={
            "embedding": _gpt2,
            **dict.fromkeys(QKV_PARTS, _gpt2),
            "mlp.in": _gpt2,
            "readout": _gpt2,
            "attention.out": _gpt2_residual,
            "mlp.out": _gpt2_residual,
        },
        others={"Linear": _gpt2, "Embedding": _gpt2},
        formula="""GPT-2 (Radford et al. 2019, sec. 2.3; the HF transformers and nanoGPT code): every Linear
        and Embedding weight ~ N(0, std^2), std = 0.02 by default, token and position embeddings alike
        (the original TF code drew the position embedding at std 0.01); the out-projection of every
        residual branch (attention.out, mlp.out) ~ N(0, (std / sqrt(2 n_layer))^2), where 2 n_layer is the
        number of residual branches, counted as the model's attention.out + mlp.out modules; norms weight
        1, bias 0; biases by `init.bias` (0, GPT-2's).""",
    ),
    "t_fixup": RoleScheme(
        parts={
            "embedding": _t_fixup_embedding,
            "attention.q": _xavier_uniform,
            "attention.k": _xavier_uniform,
            "attention.v": _t_fixup_scaled,
            "attention.out": _t_fixup_scaled,
            "mlp.in": _t_fixup_scaled,
            "mlp.out": _t_fixup_scaled,
            "readout": _xavier_uniform,
        },
        others={"Linear": _xavier_uniform},
        formula="""T-Fixup (Huang et al. 2020, Algorithm 1, the decoder's constants, N = the blocks): Xavier-
        uniform for every weight but the input embeddings, U(-b, b), b = gain sqrt(6 / (fan_in + fan_out));
        the embeddings (token and position) ~ N(0, d^-1) (the paper's N(0, d^-1/2) is its code's std,
        d^-1/2, d the embedding width), scaled by (9N)^(-1/4): std (9N)^(-1/4) / sqrt(d); the value
        projection v (the fused qkv's last third of rows, each third drawn as its own (d, d) matrix),
        the attention's output projection w and both MLP weights: gain (9N)^(-1/4); q and k: gain 1; the
        readout and any Linear without a role: gain 1; biases by `init.bias` (0, the code's); norms
        weight 1, bias 0 (T-Fixup trains without them). The reference code (fairseq) draws q, k and v at
        gain 1/sqrt(2) and multiplies v by sqrt(2), which is v at gain 1 before the (9N)^(-1/4): the same
        v; its q and k stay at 1/sqrt(2), Algorithm 1's at 1 (what this follows). The encoder form, gain
        0.67 N^(-1/4), is for an encoder-decoder's encoder and not used here.""",
    ),
    "deepnorm": RoleScheme(
        parts={
            "attention.q": _xavier_normal,
            "attention.k": _xavier_normal,
            "attention.v": _deepnorm_scaled,
            "attention.out": _deepnorm_scaled,
            "mlp.in": _deepnorm_scaled,
            "mlp.out": _deepnorm_scaled,
        },
        residual_alpha=lambda p, depth: deepnorm_alpha(depth),
        formula="""DeepNet (Wang et al. 2022, Figure 2): x_{l+1} = LN(alpha x_l + G(x_l)) with every block's
        `residual_alpha` buffer set to alpha, and `deepnorm_init`: Xavier-normal, N(0, s^2), s = gain
        sqrt(2 / (fan_in + fan_out)), gain beta for the value (qkv's last third of rows, as its own (d, d)
        matrix), the attention's output projection and the MLP's weights ("ffn, v_proj, out_proj"), gain
        1 for q and k. The paper's table: encoder-only (N layers) alpha = (2N)^(1/4), beta = (8N)^(-1/4);
        decoder-only (M layers) alpha = (2M)^(1/4), beta = (8M)^(-1/4); encoder-decoder: encoder alpha =
        0.81 (N^4 M)^(1/16), beta = 0.87 (N^4 M)^(-1/16), decoder alpha = (3M)^(1/4), beta = (12M)^(-1/4).
        The built-in gpt (decoder-only) and vit (encoder-only) take the first two rows, the same formula,
        N their blocks. Embeddings, the readout and everything else keep PyTorch's default (the paper
        says nothing of them). DeepNorm is a post-LN rule (`model.norm: post`); with pre-LN the alpha
        multiplies the skip all the same.""",
    ),
    "zero_residual": RoleScheme(
        parts={"attention.out": _zero, "mlp.out": _zero},
        formula="""The out-projection of every residual branch (attention.out, mlp.out) zero, its bias by
        `init.bias` (0 by default: each branch then adds exactly nothing and every block starts as the
        identity); everything else PyTorch's default, so that against `pytorch_default` it isolates the
        zeroing. The practice: Fixup (Zhang, Dauphin and Ma 2019) zeroes each branch's last layer;
        SkipInit (De and Smith 2020) and ReZero (Bachlechner et al. 2020) a scalar on each branch; Goyal et
        al. 2017 the last BatchNorm's gamma of each residual block.""",
    ),
    "small_embedding": RoleScheme(
        parts={"embedding": _small_uniform},
        formula="""Embeddings (token and position) ~ U(-scale, scale), scale = 1e-4 by default (BlinkDL's
        SmallInitEmb, used in RWKV: `nn.init.uniform_(emb.weight, a=-1e-4, b=1e-4)`, with a LayerNorm
        after the embedding, which a pre-LN block's ln1 is; the name after Nguyen and Salazar 2019,
        "Transformers without Tears", whose SmallInit draws a transformer's weights small); everything
        else PyTorch's default.""",
    ),
}
"""Role-aware scheme name -> its role table (`initsweep.catalog.schemes` lists their parameters and the
roles they need)."""


@dataclass(frozen=True)
class InitPlan:
    """Which layers a trial's init touches: `layers` get the trial's scheme, `overrides` a rule's."""

    layers: list[tuple[str, nn.Module]]
    """(qualified name, module) the scheme initializes, in definition order (rules' layers apart)."""
    overrides: dict[str, tuple[int, OverrideRule]]
    """qualified name -> (rule index, rule): the last rule in `init.overrides` that matches it."""
    named: list[tuple[str, nn.Module]]
    """Every module with a weight, in definition order."""
    roles: dict[str, str] = field(default_factory=dict)
    """qualified name -> role (`initsweep.engine.roles.roles_of`), for the modules that have one."""
    by_role: str | None = None
    """The role-aware scheme whose table chose `layers` (None: `init.layers` chose them)."""

    @property
    def touched(self) -> list[tuple[str, nn.Module]]:
        """The layers the scheme or a rule initializes, in definition order."""
        chosen = {name for name, _ in self.layers} | set(self.overrides)
        return [(name, m) for name, m in self.named if name in chosen]

    def describe(self) -> list[str]:
        """One line per touched layer, `bn2 BatchNorm2d weight (16): init.overrides.0 *.bn2=constant(value=0)`,
        its role after the type where it has one: `blocks.0.attn.out Linear (attention.out) weight (64, 64): ...`."""
        lines = []
        for name, m in self.touched:
            shape = ", ".join(str(n) for n in weight_of(m).shape)
            rule = self.overrides.get(name)
            what = "the scheme" if rule is None else f"init.overrides.{rule[0]} {rule[1].summary()}"
            role = f" ({self.roles[name]})" if name in self.roles else ""
            lines.append(f"{name or '(model)'} {type(m).__name__}{role} weight ({shape}): {what}")
        return lines

    def summary(self) -> str:
        """`12 layers: 10 by the scheme (conv1, layer1.0.conv1, ...), 2 by init.overrides (layer1.0.bn2, ...)`."""
        text = f"{len(self.touched)} layers: {len(self.layers)} by the scheme ({_some([n for n, _ in self.layers])})"
        return text + (
            f", {len(self.overrides)} by init.overrides ({_some(list(self.overrides))})" if self.overrides else ""
        )


_some = some_names


def _role_counts(roles: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for role in roles.values():
        counts[role] = counts.get(role, 0) + 1
    return ", ".join(f"{role} {n}" for role, n in counts.items()) or "none"


def _by_role(model: nn.Module, named, roles: dict[str, str], scheme: str) -> list[tuple[str, nn.Module]]:
    """The modules role-aware `scheme` draws; a model without the roles (or the buffers) it needs is a
    one-line `ConfigError`."""
    needs = get_scheme(scheme).needs_roles
    if not any(role in needs for role in roles.values()):
        raise ConfigError(
            f"init.roles: scheme {scheme} draws a transformer by role and needs a module of role "
            f"{' or '.join(needs)}; this model has none (its roles: {_role_counts(roles)}); "
            "a model of your own names its modules' roles in init.roles"
        )
    table = ROLE_SCHEMES[scheme]
    if table.residual_alpha is not None and not residual_alphas(model):
        raise ConfigError(
            f"scheme {scheme}: sets each block's residual_alpha buffer (x * alpha + f(x)), and this model has "
            "none (the built-in gpt and vit do)"
        )
    return [(name, m) for name, m in named if table.rule_for(roles.get(name), m)]


def plan_init(model: nn.Module, init: InitConfig | None = None, scheme: str | None = None) -> InitPlan:
    """The layers `init.layers` selects (or, for a role-aware `scheme`, the modules its role table names)
    and the rules `init.overrides` give named layers or roles. A glob that matches no layer, a role no
    module has, or a selection of nothing, is a `ConfigError` naming the key."""
    init = init or InitConfig()
    named = modules_with_weights(model)
    names = [name for name, _ in named]
    roles = roles_of(model, init)
    types = tuple(LAYER_CLASSES[t] for t in init.layers.types)
    typed = [(name, m) for name, m in named if isinstance(m, types)]
    sel = init.layers
    for key, globs in (("include", sel.include), ("exclude", sel.exclude)):
        for i, glob in enumerate(globs):
            if not any(fnmatch.fnmatchcase(name, glob) for name, _ in typed):
                raise ConfigError(
                    f"init.layers.{key}.{i}: {glob!r} matches no {'/'.join(sel.types)} layer "
                    f"(those are: {_some([n for n, _ in typed])})"
                )
    by_role = scheme if scheme in ROLE_SCHEMES else None
    if by_role:
        layers = _by_role(model, named, roles, by_role)
    else:
        layers = [
            (name, m)
            for name, m in typed
            if (not sel.include or any(fnmatch.fnmatchcase(name, g) for g in sel.include))
            and not any(fnmatch.fnmatchcase(name, g) for g in sel.exclude)
        ]
    overrides: dict[str, tuple[int, OverrideRule]] = {}
    for i, rule in enumerate(init.overrides):
        matched = names
        if rule.match is not None:
            matched = [name for name in names if fnmatch.fnmatchcase(name, rule.match)]
            if not matched:
                raise ConfigError(
                    f"init.overrides.{i}.match: {rule.match!r} matches no layer with weights ({_some(names)})"
                )
        if rule.role is not None:
            matched = [name for name in matched if roles.get(name) == rule.role]
            if not matched:
                where = f" among the layers {rule.match!r} matches" if rule.match is not None else ""
                raise ConfigError(
                    f"init.overrides.{i}.role: no module{where} has role {rule.role!r} "
                    f"(the model's roles: {_role_counts(roles)})"
                )
        overrides |= {name: (i, rule) for name in matched}  # a later rule wins
    if not layers and not overrides:
        raise ConfigError(
            f"init.layers: selects no layer of the model (its layers with weights: {_some(names)}); "
            "set init.layers.types, or give init.overrides"
        )
    layers = [(name, m) for name, m in layers if name not in overrides]
    return InitPlan(layers, overrides, named, roles, by_role)


def init_layers(model: nn.Module, init: InitConfig | None = None) -> list[nn.Module]:
    """The layers whose weights the trial's scheme initializes, in definition order (rules' layers apart)."""
    return [m for _, m in plan_init(model, init).layers]


def _problem(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _fill(module: nn.Module, rule: WeightRule | None, generator: torch.Generator, params, where: str) -> None:
    """Draw each weight of `module` (`weights_of`) by the per-layer `rule` (None: lsuv's orthogonal start)."""
    for weight in weights_of(module):
        try:
            if rule is None:  # lsuv starts from an orthogonal init
                nn.init.orthogonal_(weight, generator=generator)
            else:
                rule(weight, generator, **params)
        except (ValueError, RuntimeError) as err:  # e.g. a fan of a 1-d weight
            raise ConfigError(
                f"{where}: cannot initialize a weight of shape {tuple(weight.shape)} ({_problem(err)})"
            ) from None


def _draw_by_role(
    module: nn.Module, role: str | None, table: RoleScheme, generator, params, depth: Depth, where: str
) -> None:
    """Draw `module` by `table`'s rule for its role: a fused qkv weight third by third (q, k, v), a
    module without a role by its type's rule."""
    if role == "attention.qkv":
        try:
            pieces = [(table.parts.get(part), w) for part, w in qkv_parts(module).items()]
        except ValueError as err:
            raise ConfigError(f"{where} (attention.qkv): {err}") from None
    elif role is None:
        rule = next(r for t, r in table.others.items() if isinstance(module, LAYER_CLASSES[t]))
        pieces = [(rule, w) for w in weights_of(module)]
    else:
        pieces = [(table.parts[role], w) for w in weights_of(module)]
    for rule, w in pieces:
        if rule is None:  # a part the table leaves alone: PyTorch's default
            continue
        try:
            rule(w, generator, params, depth, module)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(
                f"{where}: cannot initialize a weight of shape {tuple(w.shape)} ({_problem(err)})"
            ) from None


@torch.no_grad()
def apply_scheme(
    model: nn.Module,
    name: str,
    params: Mapping[str, object] | None = None,
    *,
    seed: int,
    batch: torch.Tensor | None = None,
    activation: str | None = None,
    init: InitConfig | None = None,
) -> nn.Module:
    """Initialize `model` in place with scheme `name` from `seed`; returns the model.

    Every module is first reset with its own `reset_parameters()` under `seed` (that is the whole of
    `pytorch_default`; normalization layers start at weight 1, bias 0), and every `residual_alpha`
    buffer (a transformer block's skip multiplier) to 1; then the scheme overwrites the
    weight of each layer `init.layers` selects, and `init.bias` sets their biases: `zeros` (the seed's
    choice), `constant` (`init.bias_value`), `normal` (N(0, init.bias_std^2), from a stream of the seed
    apart from the weights') or `default` (the layer's own). A role-aware scheme (`ROLE_SCHEMES`) draws
    the modules its role table names instead, whatever `init.layers` says (the rest keep PyTorch's
    default), and may set each block's `residual_alpha`. A layer an `init.overrides` rule names takes that rule's
    scheme instead (with the same bias; `pytorch_default` keeps its own init). `lsuv` needs `batch`, a
    batch of inputs to measure each layer's output variance on. "auto" (the row's or a rule's) resolves
    for `activation`, the model's nonlinearity (`initsweep.config.resolve_scheme`).
    """
    init = init or InitConfig()
    full = resolve_scheme(name, params or {}, activation, init)
    plan = plan_init(model, init, name)
    rules = {
        i: (RULES.get(rule.scheme), resolve_scheme(rule.scheme, rule.params, activation, init))
        for i, rule in enumerate(init.overrides)
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    for _, buffer in residual_alphas(model):  # its default: the plain residual x + f(x)
        buffer.fill_(1.0)
    chosen = dict(plan.layers)
    if name == "pytorch_default":
        chosen = {}
    table = ROLE_SCHEMES.get(name)
    depth = Depth(sum(role in RESIDUAL_ROLES for role in plan.roles.values()))
    weights = [weight_of(m) for _, m in plan.touched]
    device = weights[0].device if weights else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    # Biases draw from a stream of their own, so a bias mode never changes the weights a seed gets.
    bias_seed = int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1)[0])
    bias_generator = torch.Generator(device=device).manual_seed(bias_seed)
    rule = RULES.get(name)
    for qualified, module in plan.touched:  # definition order: the same draws whatever the rules
        where = f"scheme {name} on {qualified or 'the model'}"
        if qualified in plan.overrides:
            index, override = plan.overrides[qualified]
            if override.scheme == "pytorch_default":
                continue
            where = f"init.overrides.{index} ({override.scheme} on {qualified or 'the model'})"
            _fill(module, rules[index][0], generator, rules[index][1], where)
        elif qualified in chosen and table is not None:
            _draw_by_role(module, plan.roles.get(qualified), table, generator, full, depth, where)
        elif qualified in chosen:
            _fill(module, rule, generator, full, where)
        else:
            continue
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()  # the padding row stays zero, as torch's init keeps it
        layer_bias = bias_of(module)
        if layer_bias is None or init.bias == "default":
            continue
        if init.bias == "normal":
            layer_bias.normal_(0.0, init.bias_std, generator=bias_generator)
        else:
            layer_bias.fill_(init.bias_value if init.bias == "constant" else 0.0)
    if table is not None and table.residual_alpha is not None:
        alpha = table.residual_alpha(full, depth)
        for _, buffer in residual_alphas(model):
            buffer.fill_(alpha)
    if name == "lsuv":
        if batch is None:
            raise SchemeError("lsuv needs a batch of inputs to measure output variance on")
        layers = [m for _, m in plan.layers]
        _lsuv_rescale(model, layers, batch, tol=float(full["tol"]), max_iter=int(full["max_iter"]))
    return model


def _lsuv_rescale(model: nn.Module, layers: list[nn.Module], batch: torch.Tensor, tol: float, max_iter: int) -> None:
    """Scale each layer's weight, first to last, until its output variance on `batch` is 1 +- tol."""
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    for layer in layers:
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(first_tensor(out)))
        try:
            for _ in range(max_iter):
                captured.clear()
                model(batch)
                if not captured or captured[0] is None:  # a layer this forward pass does not run
                    break
                var = captured[0].float().var().item()
                if not math.isfinite(var) or var == 0.0 or abs(var - 1.0) < tol:
                    break
                layer.weight.div_(math.sqrt(var))
        finally:
            hook.remove()
    model.train(was_training)


def first_tensor(output: object) -> torch.Tensor | None:
    """A module's output as a tensor: itself, or the first tensor of a tuple or list (an RNN's, say)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None
