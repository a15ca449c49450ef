"""Roles (which module of a transformer does what) and the role-aware init schemes.

Models: the built-in gpt and vit (roles declared by `init_role`), and three of a user's own with no
`init_role`, found by the default name patterns: HF GPT-2 naming with GPT-2's transposed `Conv1D`
weights, nanoGPT naming with `nn.Linear`, and torch's `nn.TransformerEncoder` (`nn.MultiheadAttention`'s
fused `in_proj_weight`).

Statistical tolerance (as tests/test_schemes.py): over N >= 100,000 weights of a role pooled across the
blocks, drawn i.i.d., the sample mean lies within 5 standard errors (5 sigma / sqrt(N)) of 0 and the
sample std within 5 / sqrt(2N) relative of the formula's (under 1.2%, so the variance within 2.4%;
the normal-kurtosis bound, which also covers uniform draws); uniform bounds are checked exactly.
"""

from __future__ import annotations

import math
import sys
import uuid

import pytest
import torch
from torch import nn

from initsweep.catalog.models import GPTConfig, ViTConfig
from initsweep.catalog.roles import DEFAULT_PATTERNS, QKV_PARTS, RESIDUAL_ROLES, ROLES
from initsweep.catalog.schemes import SCHEMES, Range, SchemeError, resolve_search
from initsweep.config import ConfigError, InitConfig, apply_override, parse_config
from initsweep.engine.data import Data, Split
from initsweep.engine.diagnostics import init_diagnostics
from initsweep.engine.models import BUILDERS, build_model, check_buildable
from initsweep.engine.roles import roles_of, weight_of
from initsweep.engine.schemes import (
    ROLE_SCHEMES,
    RULES,
    Depth,
    apply_scheme,
    deepnorm_alpha,
    deepnorm_beta,
    plan_init,
    qkv_parts,
    residual_alphas,
    t_fixup_scale,
)
from initsweep.engine.train import run_trial

ROLE_AWARE = [name for name, s in SCHEMES.items() if s.needs_roles]
D, DEPTH, VOCAB, CONTEXT = 256, 3, 512, 64


# --- models -------------------------------------------------------------------------------------------


def gpt(width=D, depth=DEPTH, **cfg) -> nn.Module:
    return BUILDERS["gpt"](GPTConfig(width=width, depth=depth, heads=4, **cfg), (CONTEXT,), VOCAB)


class Conv1D(nn.Module):
    """HF transformers' GPT-2 `Conv1D`: a linear layer whose weight is stored (in, out), transposed."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        return x @ self.weight + self.bias


class _Attention(nn.Module):
    def __init__(self, d, linear):
        super().__init__()
        self.c_attn, self.c_proj = linear(d, 3 * d), linear(d, d)
        self.heads = 4

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class _MLP(nn.Module):
    def __init__(self, d, linear):
        super().__init__()
        self.c_fc, self.c_proj = linear(d, 4 * d), linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(nn.functional.gelu(self.c_fc(x)))


class _GPT2Block(nn.Module):
    def __init__(self, d, linear):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = (
            nn.LayerNorm(d),
            _Attention(d, linear),
            nn.LayerNorm(d),
            _MLP(d, linear),
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class UserGPT2(nn.Module):
    """HF GPT-2's (`conv1d=True`: its transposed Conv1D) or nanoGPT's (nn.Linear) module names, no init_role."""

    def __init__(self, d=64, depth=2, vocab=100, context=16, conv1d=True):
        super().__init__()
        linear = (lambda i, o: Conv1D(o, i)) if conv1d else nn.Linear
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, d),
                "wpe": nn.Embedding(context, d),
                "h": nn.ModuleList(_GPT2Block(d, linear) for _ in range(depth)),
                "ln_f": nn.LayerNorm(d),
            }
        )
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[-1]))
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))


class TorchEncoder(nn.Module):
    """torch's nn.TransformerEncoder: nn.MultiheadAttention (fused in_proj_weight), linear1/2, norm1/2."""

    def __init__(self, d=32, depth=2, vocab=50, classes=10):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, idx):
        return self.head(self.encoder(self.embed_tokens(idx)).mean(1))


# --- roles --------------------------------------------------------------------------------------------


def test_the_built_in_gpt_declares_every_role_by_init_role():
    roles = roles_of(gpt(width=32, depth=2))
    assert roles["tok_emb"] == roles["pos_emb"] == "embedding" and roles["head"] == "readout"
    assert roles["blocks.1.attn.qkv"] == "attention.qkv" and roles["blocks.1.attn.out"] == "attention.out"
    assert roles["blocks.0.mlp.fc_in"] == "mlp.in" and roles["blocks.0.mlp.fc_out"] == "mlp.out"
    assert [n for n, r in roles.items() if r == "norm"] == [
        "blocks.0.ln1",
        "blocks.0.ln2",
        "blocks.1.ln1",
        "blocks.1.ln2",
        "ln_f",
    ]
    tied = roles_of(gpt(width=32, depth=2, tie_embeddings=True))
    assert "readout" not in tied.values() and tied["tok_emb"] == "embedding"  # tok_emb plays both
    vit = BUILDERS["vit"](ViTConfig(width=32, depth=1, heads=4), (1, 28, 28), 10)
    assert roles_of(vit)["tok_emb"] == "embedding" and roles_of(vit)["head"] == "readout"


@pytest.mark.parametrize("conv1d", [True, False])
def test_default_patterns_find_hf_gpt2_and_nanogpt(conv1d):
    roles = roles_of(UserGPT2(conv1d=conv1d))
    assert roles == {
        "transformer.wte": "embedding",
        "transformer.wpe": "embedding",
        **{
            f"transformer.h.{i}.{name}": role
            for i in range(2)
            for name, role in [
                ("ln_1", "norm"),
                ("attn.c_attn", "attention.qkv"),
                ("attn.c_proj", "attention.out"),
                ("ln_2", "norm"),
                ("mlp.c_fc", "mlp.in"),
                ("mlp.c_proj", "mlp.out"),
            ]
        },
        "transformer.ln_f": "norm",
        "lm_head": "readout",
    }


def test_torch_multihead_attention_is_qkv_and_its_out_proj_attention_out():
    roles = roles_of(TorchEncoder())
    assert roles["encoder.layers.0.self_attn"] == "attention.qkv"  # its in_proj_weight (3d, d)
    assert roles["encoder.layers.0.self_attn.out_proj"] == "attention.out"
    assert roles["encoder.layers.1.linear1"] == "mlp.in" and roles["encoder.layers.1.linear2"] == "mlp.out"
    assert roles["encoder.layers.0.norm1"] == roles["encoder.layers.0.norm2"] == "norm"
    assert roles["embed_tokens"] == "embedding" and roles["head"] == "readout"


def test_a_model_without_transformer_names_has_no_roles():
    assert roles_of(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))) == {}


def test_init_roles_replace_that_roles_defaults_and_win_over_init_role():
    model = UserGPT2(conv1d=False)
    init = InitConfig(roles={"readout": [], "attention.out": ["transformer.h.0.attn.c_proj"]})
    roles = roles_of(model, init)
    assert "lm_head" not in roles  # readout: [] says no module is one
    assert roles["transformer.h.0.attn.c_proj"] == "attention.out"
    assert "transformer.h.1.attn.c_proj" not in roles  # the role's defaults are replaced
    assert roles["transformer.h.1.mlp.c_proj"] == "mlp.out"  # other roles keep theirs
    built_in = roles_of(gpt(width=32, depth=1), InitConfig(roles={"mlp.in": ["head"]}))
    assert built_in["head"] == "mlp.in" and built_in["blocks.0.mlp.fc_in"] == "mlp.in"


def _config(**init) -> dict:
    return {"name": "r", "seeds": [0], "schemes": ["xavier_uniform"], "init": init}


@pytest.mark.parametrize(
    "init,message",
    [
        (
            {"roles": {"attention.foo": ["*"]}},
            "init.roles.attention.foo: unknown role 'attention.foo' (valid: embedding,",
        ),
        ({"roles": {"attention": {"outt": ["*"]}}}, "init.roles.attention.outt: unknown role"),
        ({"roles": {"norm": [""]}}, "init.roles.norm.0: string should have at least 1 character"),
        ({"overrides": [{"role": "attn.out", "scheme": "constant"}]}, "init.overrides.0.role: unknown role 'attn.out'"),
        ({"overrides": [{"scheme": "constant"}]}, "init.overrides.0.match: missing (a rule is {match: GLOB,"),
        ({"overrides": [{"role": "norm", "scheme": "gpt2"}]}, "init.overrides.0.scheme: gpt2 works on the whole model"),
    ],
)
def test_bad_roles_in_the_config_are_one_line_naming_the_key(init, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_config(**init))
    assert str(err.value).startswith(message), str(err.value)


def test_set_reaches_a_dotted_role_name():
    raw = _config()
    apply_override(raw, "init.roles.attention.out=['*.c_proj']")
    assert parse_config(raw).init.roles == {"attention.out": ["*.c_proj"]}


@pytest.mark.parametrize(
    "init,message",
    [
        (
            {"roles": {"attention.out": ["*.nope"]}},
            "init.roles.attention.out.0: '*.nope' matches no module with weights (transformer.wte, transformer.wpe,",
        ),
        (
            {"roles": {"mlp.out": ["*.mlp.c_proj"], "mlp.in": ["*.c_*"]}},
            "init.roles.mlp.in.0: '*.c_*' matches transformer.h.0.mlp.c_proj, which init.roles.mlp.out.0 names mlp.out",
        ),
        (
            {"overrides": [{"role": "attention.q", "scheme": "constant"}]},
            "init.overrides.0.role: no module has role 'attention.q' (the model's roles: embedding 2, norm 5,",
        ),
        (
            {"overrides": [{"match": "lm_head", "role": "norm", "scheme": "constant"}]},
            "init.overrides.0.role: no module among the layers 'lm_head' matches has role 'norm'",
        ),
    ],
)
def test_roles_that_find_nothing_are_one_line_naming_the_key(init, message):
    with pytest.raises(ConfigError) as err:
        plan_init(UserGPT2(), InitConfig.model_validate(init))
    assert str(err.value).startswith(message), str(err.value)


def test_a_bad_init_role_attribute_names_the_module():
    model = nn.Sequential(nn.Linear(4, 4))
    model[0].init_role = "attn"
    with pytest.raises(ConfigError, match=r"^model: module 0 has init_role 'attn', not a role \(valid: embedding"):
        roles_of(model)


def test_default_patterns_name_only_roles():
    assert set(DEFAULT_PATTERNS) <= set(ROLES)
    assert set(RESIDUAL_ROLES) | set(QKV_PARTS) <= set(ROLES)


# --- rules by role ------------------------------------------------------------------------------------


def test_an_override_by_role_zeroes_every_attention_out():
    model = gpt(width=32, depth=2)
    init = InitConfig.model_validate({"overrides": [{"role": "attention.out", "scheme": "constant", "value": 0}]})
    plan = plan_init(model, init)
    assert sorted(plan.overrides) == ["blocks.0.attn.out", "blocks.1.attn.out"]
    assert init.overrides[0].summary() == "[attention.out]=constant(value=0)"
    apply_scheme(model, "xavier_uniform", seed=0, activation="gelu", init=init)
    for block in model.blocks:
        assert torch.all(block.attn.out.weight == 0) and torch.all(block.attn.out.bias == 0)
        assert block.mlp.fc_out.weight.std() > 0  # the scheme's
    assert (
        "blocks.0.attn.out Linear (attention.out) weight (32, 32): init.overrides.0 [attention.out]=constant(value=0)"
        in (plan.describe())
    )


def test_norms_are_addressable_by_role_and_with_a_glob():
    model = gpt(width=32, depth=2)
    rules = [
        {"role": "norm", "scheme": "constant", "value": 2.0},
        {"match": "blocks.1.*", "role": "norm", "scheme": "constant", "value": 3.0},  # a later rule wins
    ]
    init = InitConfig.model_validate({"overrides": rules})
    apply_scheme(model, "normal", {"std": 0.01}, seed=0, init=init)
    assert torch.all(model.blocks[0].ln1.weight == 2.0) and torch.all(model.ln_f.weight == 2.0)
    assert torch.all(model.blocks[1].ln2.weight == 3.0) and torch.all(model.blocks[1].ln2.bias == 0.0)
    assert init.overrides[1].summary() == "blocks.1.*[norm]=constant(value=3)"


def test_an_override_on_multihead_attention_draws_its_in_proj_weight():
    model = TorchEncoder()
    init = InitConfig.model_validate({"overrides": [{"role": "attention.qkv", "scheme": "constant", "value": 0.5}]})
    apply_scheme(model, "xavier_uniform", seed=0, activation="relu", init=init)
    attn = model.encoder.layers[0].self_attn
    assert torch.all(attn.in_proj_weight == 0.5) and torch.all(attn.in_proj_bias == 0)


def test_per_layer_schemes_keep_drawing_every_linear_of_a_transformer():
    """A per-layer scheme on a transformer draws its Linear layers as before (the fused qkv as one
    (3d, d) matrix); the embeddings keep PyTorch's default, the norms 1 and 0."""
    model = apply_scheme(gpt(width=64, depth=1), "xavier_uniform", {"gain": 1.0}, seed=3)
    default = apply_scheme(gpt(width=64, depth=1), "pytorch_default", seed=3)
    qkv = model.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= math.sqrt(6 / (64 + 192)) and qkv.abs().max() > 0.95 * math.sqrt(6 / (64 + 192))
    assert torch.equal(model.tok_emb.weight, default.tok_emb.weight)
    assert torch.all(model.blocks[0].attn.qkv.bias == 0) and torch.all(model.ln_f.weight == 1)
    plan = plan_init(gpt(width=64, depth=1))
    assert [n for n, _ in plan.layers] == [
        "blocks.0.attn.qkv",
        "blocks.0.attn.out",
        "blocks.0.mlp.fc_in",
        "blocks.0.mlp.fc_out",
        "head",
    ]


# --- the role-aware schemes: formulas -----------------------------------------------------------------


def _pooled(model: nn.Module, role: str, part: str | None = None) -> torch.Tensor:
    """Every weight of `role`, or of one part of every fused qkv, flattened into one vector."""
    roles = roles_of(model)
    pieces = []
    for name, m in model.named_modules():
        if roles.get(name) == role:
            w = qkv_parts(m)[part] if part else weight_of(m)
            pieces.append(w.detach().double().flatten())
    return torch.cat(pieces)


def _check(w: torch.Tensor, std: float, bound: float | None = None) -> None:
    n = w.numel()
    assert n >= 100_000 or bound is not None or std == 0
    assert abs(w.mean().item()) <= 5 * std / math.sqrt(n) + 1e-9
    assert w.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * n))
    if bound is not None:
        assert w.abs().max().item() <= bound + 1e-7


def _uniform(bound: float) -> dict:
    return {"std": bound / math.sqrt(3), "bound": bound}


N = DEPTH  # the blocks; 2N residual branches
XAVIER_D_D = math.sqrt(6 / (2 * D))  # Xavier-uniform bound of a (d, d) matrix
XAVIER_MLP = math.sqrt(6 / (5 * D))  # of the MLP's (4d, d) and (d, 4d)

# scheme -> params, {(role, part): expected}, what the others are
EXPECTED = {
    "gpt2": (
        {"std": 0.03},
        {
            ("embedding", None): {"std": 0.03},
            ("attention.qkv", None): {"std": 0.03},
            ("mlp.in", None): {"std": 0.03},
            ("readout", None): {"std": 0.03},
            ("attention.out", None): {"std": 0.03 / math.sqrt(2 * N)},
            ("mlp.out", None): {"std": 0.03 / math.sqrt(2 * N)},
        },
    ),
    "t_fixup": (
        {},
        {
            ("embedding", None): {"std": (9 * N) ** -0.25 / math.sqrt(D)},
            ("attention.qkv", "attention.q"): _uniform(XAVIER_D_D),
            ("attention.qkv", "attention.k"): _uniform(XAVIER_D_D),
            ("attention.qkv", "attention.v"): _uniform((9 * N) ** -0.25 * XAVIER_D_D),
            ("attention.out", None): _uniform((9 * N) ** -0.25 * XAVIER_D_D),
            ("mlp.in", None): _uniform((9 * N) ** -0.25 * XAVIER_MLP),
            ("mlp.out", None): _uniform((9 * N) ** -0.25 * XAVIER_MLP),
            ("readout", None): _uniform(math.sqrt(6 / (D + VOCAB))),
        },
    ),
    "deepnorm": (
        {},
        {
            ("attention.qkv", "attention.q"): {"std": math.sqrt(2 / (2 * D))},
            ("attention.qkv", "attention.k"): {"std": math.sqrt(2 / (2 * D))},
            ("attention.qkv", "attention.v"): {"std": (8 * N) ** -0.25 * math.sqrt(2 / (2 * D))},
            ("attention.out", None): {"std": (8 * N) ** -0.25 * math.sqrt(2 / (2 * D))},
            ("mlp.in", None): {"std": (8 * N) ** -0.25 * math.sqrt(2 / (5 * D))},
            ("mlp.out", None): {"std": (8 * N) ** -0.25 * math.sqrt(2 / (5 * D))},
        },
    ),
    "zero_residual": ({}, {("attention.out", None): {"std": 0.0}, ("mlp.out", None): {"std": 0.0}}),
    "small_embedding": ({"scale": 1e-3}, {("embedding", None): _uniform(1e-3)}),
}


def test_every_role_aware_scheme_has_a_table_and_an_expectation():
    assert set(ROLE_AWARE) == set(ROLE_SCHEMES) == set(EXPECTED)
    assert not set(ROLE_SCHEMES) & set(RULES)
    for name in ROLE_AWARE:
        assert SCHEMES[name].whole_model and set(SCHEMES[name].needs_roles) <= set(ROLES)
        assert ROLE_SCHEMES[name].formula  # the paper and the exact rule


@pytest.fixture(scope="module")
def default_gpt() -> nn.Module:
    return apply_scheme(gpt(), "pytorch_default", seed=11)


@pytest.mark.parametrize("scheme", ROLE_AWARE)
def test_role_scheme_moments_match_the_formula(scheme, default_gpt):
    """Each role's pooled weights (>= 100k; the embeddings: 147k, the smallest, attention.out: 197k)
    against the formula; what the table leaves out is PyTorch's default, bit for bit, under the same seed."""
    params, expected = EXPECTED[scheme]
    model = apply_scheme(gpt(), scheme, params, seed=11)
    for (role, part), want in expected.items():
        _check(_pooled(model, role, part), want["std"], want.get("bound"))
    drawn = {r for r, _ in expected} | ({"attention.qkv"} if any(p for _, p in expected) else set())
    roles = roles_of(model)
    for name, m in model.named_modules():
        role = roles.get(name)
        if role == "norm":
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        elif role in drawn and getattr(m, "bias", None) is not None:
            assert torch.all(m.bias == 0)  # init.bias: zeros
        elif role is not None and role not in drawn:
            assert torch.equal(m.weight, dict(default_gpt.named_modules())[name].weight), (scheme, name)


def test_deepnorm_sets_every_residual_alpha_and_other_schemes_leave_it_at_one():
    model = apply_scheme(gpt(width=32, depth=5), "deepnorm", seed=0)
    alphas = residual_alphas(model)
    assert len(alphas) == 5 and all(a.item() == pytest.approx(10**0.25) for _, a in alphas)  # (2N)^(1/4)
    apply_scheme(model, "gpt2", seed=0)  # a fresh init: the skip is plain again
    assert all(a.item() == 1.0 for _, a in residual_alphas(model))


def test_the_constants_follow_the_papers():
    depth = Depth(branches=2 * 6)  # 6 blocks
    assert depth.n == 6
    assert deepnorm_alpha(depth) == pytest.approx(12**0.25) and deepnorm_beta(depth) == pytest.approx(48**-0.25)
    assert t_fixup_scale(depth) == pytest.approx(54**-0.25)


def test_the_branches_are_counted_from_the_roles():
    """gpt2's residual std is std / sqrt(branches), the count of attention.out and mlp.out modules; a user
    GPT-2 with 4 blocks has 8. Tolerance: the module's (std within 5 / sqrt(2N))."""
    model = apply_scheme(UserGPT2(d=128, depth=4, conv1d=False), "gpt2", seed=0)
    w = _pooled(model, "mlp.out")
    assert w.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=5 / math.sqrt(2 * w.numel()))


def test_the_value_third_of_a_transposed_conv1d_is_its_last_columns():
    """HF GPT-2's Conv1D c_attn weight is (d, 3d): q, k, v are column thirds; T-Fixup scales the last."""
    model = apply_scheme(UserGPT2(d=64, depth=2), "t_fixup", seed=0)
    c_attn = model.transformer.h[0].attn.c_attn.weight
    s, bound = t_fixup_scale(Depth(4)), math.sqrt(6 / 128)
    assert c_attn[:, 128:].abs().max() <= s * bound and c_attn[:, :128].abs().max() > s * bound
    assert c_attn[:, :128].abs().max() <= bound


def test_torch_encoder_draws_by_role_through_in_proj_weight():
    model = apply_scheme(TorchEncoder(d=32, depth=2), "t_fixup", seed=0)
    attn = model.encoder.layers[0].self_attn
    s, bound = t_fixup_scale(Depth(4)), math.sqrt(6 / 64)
    assert attn.in_proj_weight[64:].abs().max() <= s * bound < attn.in_proj_weight[:64].abs().max()
    assert torch.all(attn.in_proj_bias == 0)
    zeroed = apply_scheme(TorchEncoder(d=32, depth=2), "zero_residual", seed=0)
    for layer in zeroed.encoder.layers:
        assert torch.all(layer.self_attn.out_proj.weight == 0) and torch.all(layer.linear2.weight == 0)
        assert torch.all(layer.linear2.bias == 0) and layer.linear1.weight.std() > 0


def test_a_role_scheme_draws_a_linear_without_a_role_as_its_table_says():
    """gpt2 and t_fixup draw every Linear (GPT-2: and Embedding) the roles leave out; the others leave it."""
    model = UserGPT2(d=64, depth=1, conv1d=False)
    model.extra = nn.Linear(64, 64)  # no role
    default = apply_scheme(UserGPT2(d=64, depth=1, conv1d=False), "pytorch_default", seed=0)
    apply_scheme(model, "gpt2", {"std": 0.5}, seed=0)
    assert 0.45 < model.extra.weight.std() < 0.55
    apply_scheme(model, "zero_residual", seed=0)
    assert model.extra.weight.abs().max() <= 1 / 8 and torch.equal(model.lm_head.weight, default.lm_head.weight)


@pytest.mark.parametrize("scheme", ROLE_AWARE)
def test_role_schemes_same_seed_same_weights_other_seed_other_weights(scheme):
    params = EXPECTED[scheme][0]
    a = apply_scheme(gpt(width=32, depth=2), scheme, params, seed=7).state_dict()
    b = apply_scheme(gpt(width=32, depth=2), scheme, params, seed=7).state_dict()
    c = apply_scheme(gpt(width=32, depth=2), scheme, params, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_role_schemes_do_not_touch_the_global_rng():
    model = gpt(width=32, depth=1)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for scheme in ROLE_AWARE:
        apply_scheme(model, scheme, EXPECTED[scheme][0], seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("scheme", ROLE_AWARE)
def test_a_model_without_the_roles_is_refused_in_one_line(scheme):
    with pytest.raises(ConfigError) as err:
        apply_scheme(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), scheme, seed=0)
    needs = " or ".join(SCHEMES[scheme].needs_roles)
    assert str(err.value) == (
        f"init.roles: scheme {scheme} draws a transformer by role and needs a module of role {needs}; this model "
        "has none (its roles: none); a model of your own names its modules' roles in init.roles"
    )


def test_deepnorm_refuses_a_model_without_residual_alpha():
    with pytest.raises(ConfigError, match=r"^scheme deepnorm: sets each block's residual_alpha buffer"):
        apply_scheme(UserGPT2(), "deepnorm", seed=0)


def test_a_sweep_of_a_role_scheme_on_an_mlp_stops_at_the_check(small_data):
    trial = parse_config({"name": "r", "seeds": [0], "schemes": ["gpt2"], "data": {"limit": 300}}).trials()[0]
    with pytest.raises(ConfigError, match=r"^init.roles: scheme gpt2 draws a transformer by role"):
        check_buildable(trial, small_data)


def test_the_searched_parameters_have_ranges():
    assert resolve_search("gpt2", {}) == {"std": Range(0.002, 0.2, log=True)}
    assert resolve_search("small_embedding", {}) == {"scale": Range(1e-6, 1e-1, log=True)}
    assert resolve_search("t_fixup", {}) == {} == resolve_search("deepnorm", {})
    with pytest.raises(SchemeError, match=r"gpt2\.std: 0\.0 is outside its domain"):
        resolve_search("gpt2", {"std": 0.0})


# --- what the plan and the diagnostics say ------------------------------------------------------------


def test_the_plan_of_a_role_scheme_lists_what_its_table_draws():
    plan = plan_init(gpt(width=32, depth=1), InitConfig(), "zero_residual")
    assert [n for n, _ in plan.layers] == [
        "blocks.0.attn.out",
        "blocks.0.mlp.fc_out",
    ] and plan.by_role == "zero_residual"
    assert plan.describe() == [
        "blocks.0.attn.out Linear (attention.out) weight (32, 32): the scheme",
        "blocks.0.mlp.fc_out Linear (mlp.out) weight (32, 128): the scheme",
    ]
    full = plan_init(gpt(width=32, depth=1), InitConfig(), "gpt2")
    assert [n for n, _ in full.layers] == [
        "tok_emb",
        "pos_emb",
        "blocks.0.attn.qkv",
        "blocks.0.attn.out",
        "blocks.0.mlp.fc_in",
        "blocks.0.mlp.fc_out",
        "head",
    ]


def test_diagnostics_give_the_role():
    model = apply_scheme(gpt(width=32, depth=1), "gpt2", seed=0)
    x = torch.randint(0, VOCAB, (4, 16))
    rows = init_diagnostics(model, x, x, InitConfig(), "gpt2")
    assert [(r["layer"], r["role"]) for r in rows] == [
        ("tok_emb:Embedding", "embedding"),
        ("pos_emb:Embedding", "embedding"),
        ("blocks.0.attn.qkv:Linear", "attention.qkv"),
        ("blocks.0.attn.out:Linear", "attention.out"),
        ("blocks.0.mlp.fc_in:Linear", "mlp.in"),
        ("blocks.0.mlp.fc_out:Linear", "mlp.out"),
        ("head:Linear", "readout"),
    ]
    assert rows[0]["weight_std"] == pytest.approx(0.02, rel=0.1)
    mlp = init_diagnostics(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), torch.rand(4, 784), torch.zeros(4, dtype=torch.long)
    )
    assert "role" not in mlp[0]


# --- end to end ---------------------------------------------------------------------------------------


def _vit_trial(scheme: str, **more):
    model = {"name": "vit", "width": 32, "depth": 2, "heads": 4, "patch": 7, "norm": "post"}
    cfg = {"name": "r", "seeds": [0, 1], "data": {"limit": 300}, "train": {"epochs": 1}, "model": model}
    return parse_config(cfg | {"schemes": [{"scheme": scheme, **more}]}).trials()[0]


def test_a_role_scheme_passes_the_check_on_a_transformer(small_data):
    lines = check_buildable(_vit_trial("gpt2", std=0.05), small_data)
    assert any("blocks.1.attn.out Linear (attention.out) weight (32, 32)" in line for line in lines)


def test_deepnorm_trains_packed_as_each_seed_alone(small_data):
    """The residual_alpha buffers travel with each seed's weights into the packed (vmapped) model: each
    seed's metrics packed equal its own run's (float rounding: 1e-4 relative)."""
    cut = lambda s, n: Split(s.x[:n], s.y[:n])  # noqa: E731
    data = Data(cut(small_data.train, 300), cut(small_data.val, 100), cut(small_data.test, 100), 10)
    trial = _vit_trial("deepnorm")
    packed, alone = run_trial(trial, data, pack=True), run_trial(trial, data, pack=False)
    for p, a in zip(packed.seeds, alone.seeds, strict=True):
        assert not p.diverged and p.epochs[-1] == pytest.approx(a.epochs[-1], rel=1e-4)
    assert packed.seeds[0].epochs[-1] != packed.seeds[1].epochs[-1]


@pytest.fixture
def user_transformer(tmp_path, monkeypatch) -> str:
    """tests/user_modules.py's TRANSFORMERS as a module of a user's own, importable from tmp_path."""
    from user_modules import TRANSFORMERS

    name = f"transformers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TRANSFORMERS)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    return f"{name}:image_transformer"


USER_ROLES = {
    "embedding": ["patches"],
    "attention.qkv": ["*.attention"],  # nn.MultiheadAttention: its in_proj_weight
    "attention.out": ["*.attention.out_proj"],
    "mlp.in": ["*.ff_up"],
    "mlp.out": ["*.ff_down"],
    "norm": ["*.pre_*"],
    "readout": ["classify"],
}


def _user_trial(target: str, scheme: str, roles: dict | None = None):
    cfg = {"name": "u", "seeds": [0], "data": {"limit": 300}, "model": {"name": "import", "target": target}}
    return parse_config(cfg | {"schemes": [scheme], "init": {"roles": roles or {}}}).trials()[0]


def test_a_users_own_transformer_names_its_roles_in_the_config(user_transformer, small_data):
    with pytest.raises(ConfigError, match=r"^init.roles: scheme zero_residual draws a transformer by role .* none"):
        check_buildable(_user_trial(user_transformer, "zero_residual"), small_data)
    trial = _user_trial(user_transformer, "t_fixup", USER_ROLES)
    check_buildable(trial, small_data)  # builds, initializes, runs a batch forward and backward
    model = build_model(trial.model, small_data.input_shape, small_data.num_classes)
    lines = plan_init(model, trial.init, "t_fixup").describe()
    assert "stack.1.attention MultiheadAttention (attention.qkv) weight (96, 32): the scheme" in lines
    apply_scheme(model, "t_fixup", seed=0, init=trial.init)
    attention = model.stack[0].attention
    s, bound = t_fixup_scale(Depth(4)), math.sqrt(6 / 64)
    assert attention.in_proj_weight[64:].abs().max() <= s * bound < attention.in_proj_weight[:64].abs().max()
    zeroed = apply_scheme(model, "zero_residual", seed=0, init=trial.init)
    assert torch.all(zeroed.stack[1].attention.out_proj.weight == 0) and torch.all(zeroed.stack[1].ff_down.weight == 0)


def test_a_qkv_that_does_not_split_in_thirds_is_one_line():
    model = UserGPT2(d=64, depth=1, conv1d=False)
    init = InitConfig(roles={"attention.qkv": ["*.c_fc"], "mlp.in": []})  # (256, 64): no thirds
    with pytest.raises(ConfigError) as err:
        apply_scheme(model, "t_fixup", seed=0, init=init)
    assert str(err.value).startswith("scheme t_fixup on transformer.h.0.mlp.c_fc (attention.qkv): its weight of shape")
