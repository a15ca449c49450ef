"""The built-in transformers `gpt` and `vit`: shapes, causality, tied embeddings, the `init_role` and
`residual_alpha` contract init schemes rely on, LayerNorm placement, config errors, and seeds packed with
vmap giving each seed's own outputs and gradients."""

from __future__ import annotations

import copy
import fnmatch
import re

import pytest
import torch
from torch import nn

from initsweep.catalog.models import ACTIVATIONS, GPTConfig, ViTConfig
from initsweep.config import ConfigError, parse_config
from initsweep.engine.models import ACTIVATION_MODULES, BUILDERS
from initsweep.engine.tasks import TASKS
from initsweep.engine.transformers import _ACTIVATIONS, ROLES, Block, build_gpt, build_vit
from initsweep.engine.vmapped import VmappedModel, vmap_failure

CONTEXT, VOCAB = 12, 37
NORMS = ("pre", "post", "none")


def gpt(**kw) -> nn.Module:
    return BUILDERS["gpt"](GPTConfig(**{"width": 32, "depth": 2, "heads": 4} | kw), (CONTEXT,), VOCAB)


def vit(input_shape=(1, 28, 28), classes=10, **kw) -> nn.Module:
    return BUILDERS["vit"](ViTConfig(**{"width": 32, "depth": 2, "heads": 4} | kw), input_shape, classes)


def tokens(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_the_documented_ones():
    g, v = GPTConfig(), ViTConfig()
    for cfg in (g, v):
        assert (cfg.width, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.norm, cfg.activation) == (
            128,
            4,
            4,
            4.0,
            0.0,
            "pre",
            "gelu",
        )
    assert g.name == "gpt" and g.tie_embeddings is False
    assert v.name == "vit" and v.patch == 7
    assert next(iter(GPTConfig.model_fields)) == "name" and next(iter(ViTConfig.model_fields)) == "name"
    assert GPTConfig.model_validate(g.model_dump()) == g and ViTConfig.model_validate(v.model_dump()) == v
    assert _ACTIVATIONS == ACTIVATION_MODULES and set(_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("tie", [False, True])
def test_gpt_maps_token_ids_to_next_token_logits(norm, tie):
    model = gpt(norm=norm, tie_embeddings=tie)
    out = model(tokens(3, CONTEXT))
    assert out.shape == (3, CONTEXT, VOCAB) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model(tokens(2, 5)).shape == (2, 5, VOCAB)  # a window shorter than the context


def test_vit_maps_images_to_class_logits():
    assert vit()(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    wide = vit((3, 16, 24), classes=5, patch=8, norm="post")  # colour, not square: 2x3 patches
    assert wide.pos_emb.num_embeddings == 6 and wide.tok_emb.in_features == 3 * 8 * 8
    assert wide(torch.rand(2, 3, 16, 24)).shape == (2, 5)


def test_vit_patches_are_the_images_squares():
    model = vit((1, 4, 4), patch=2)
    image = torch.arange(16.0).view(1, 1, 4, 4)
    seen = []
    model.tok_emb.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    model(image)
    assert seen[0][0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("tie", [False, True])
def test_gpt_is_causal(norm, tie):
    model = gpt(norm=norm, tie_embeddings=tie, depth=3).eval()
    x = tokens(2, CONTEXT)
    for t in (0, 5, CONTEXT - 1):
        changed = x.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        with torch.no_grad():
            a, b = model(x), model(changed)
        assert torch.equal(a[:, :t], b[:, :t]), f"token {t} changed an earlier logit"
        assert not torch.allclose(a[:, t], b[:, t]), f"token {t} does not reach its own logit"


def test_vit_attention_is_not_causal():
    model = vit().eval()
    x = torch.rand(1, 1, 28, 28)
    changed = x.clone()
    changed[..., 21:, 21:] += 1.0  # the last patch only
    with torch.no_grad():
        seen = []
        model.blocks[0].register_forward_hook(lambda _m, _i, out: seen.append(out))
        model(x), model(changed)
    assert not torch.allclose(seen[0][0, 0], seen[1][0, 0])  # the first token sees the last patch


def test_tied_embeddings_are_one_parameter_for_both_ends():
    tied, untied = gpt(tie_embeddings=True), gpt(tie_embeddings=False)
    assert tied.head is None and not any(isinstance(m, nn.Linear) and m.out_features == VOCAB for m in tied.modules())
    assert isinstance(untied.head, nn.Linear) and untied.head.bias is None and untied.head.weight.shape == (VOCAB, 32)
    assert tied.tie_embeddings and not untied.tie_embeddings
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters()) == VOCAB * 32
    assert "head.weight" not in dict(tied.named_parameters())
    # The readout is the embedding matrix itself: changing it changes the logits of every position.
    with torch.no_grad():
        x = torch.randint(0, 5, (1, 4))
        before = tied(x)
        tied.tok_emb.weight[VOCAB - 1].mul_(2.0)  # a token not in the input: it reaches only the readout
        after = tied(x)
    assert not torch.allclose(before[..., VOCAB - 1], after[..., VOCAB - 1])
    torch.testing.assert_close(before[..., : VOCAB - 1], after[..., : VOCAB - 1])
    # Its gradient gets the readout's part: rows of tokens that never appear as inputs.
    x = torch.randint(0, 5, (2, CONTEXT))
    nn.functional.cross_entropy(tied(x).flatten(0, 1), tokens(2 * CONTEXT, seed=1)).backward()
    assert tied.tok_emb.weight.grad[5:].abs().sum(1).gt(0).all()


def documented_roles(model: nn.Module) -> dict[str, str]:
    """The module names and roles the module docstring of `initsweep.engine.transformers` lists."""
    patterns = {
        "tok_emb": "embedding",
        "pos_emb": "embedding",
        "blocks.*.ln1": "norm",
        "blocks.*.ln2": "norm",
        "blocks.*.attn.qkv": "attention.qkv",
        "blocks.*.attn.out": "attention.out",
        "blocks.*.mlp.fc_in": "mlp.in",
        "blocks.*.mlp.fc_out": "mlp.out",
        "ln_f": "norm",
        "head": "readout",
    }
    roles = {}
    for name, _ in model.named_modules():
        match = [role for pattern, role in patterns.items() if fnmatch.fnmatchcase(name, pattern)]
        if match:
            roles[name] = match[0]
    return roles


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("kind", ["gpt", "gpt_tied", "vit"])
def test_every_weight_bearing_module_has_its_documented_role(kind, norm):
    model = (
        vit(norm=norm, dropout=0.1) if kind == "vit" else gpt(norm=norm, tie_embeddings=kind == "gpt_tied", dropout=0.1)
    )
    weighted = (nn.Linear, nn.Embedding, nn.LayerNorm)
    roles = {name: m.init_role for name, m in model.named_modules() if isinstance(m, weighted)}
    assert roles == documented_roles(model)
    assert all(not hasattr(m, "init_role") for m in model.modules() if not isinstance(m, weighted))
    # Every parameter lives in a module with a role (no bare parameters a role cannot name).
    owners = {name.rsplit(".", 1)[0] for name, _ in model.named_parameters()}
    assert owners == set(roles)
    expected = set(ROLES) - ({"norm"} if norm == "none" else set()) - ({"readout"} if kind == "gpt_tied" else set())
    assert set(roles.values()) == expected
    assert sum(r == "norm" for r in roles.values()) == {"pre": 2 * 2 + 1, "post": 2 * 2, "none": 0}[norm]
    assert sum(r == "embedding" for r in roles.values()) == 2 and list(roles)[:2] == ["tok_emb", "pos_emb"]
    for name, m in model.named_modules():
        if getattr(m, "init_role", "").startswith(("attention", "mlp")):
            assert m.bias is not None, name


def test_qkv_is_one_fused_linear_with_rows_in_q_k_v_order():
    model = gpt(depth=1).eval()
    attn = model.blocks[0].attn
    assert attn.qkv.weight.shape == (3 * 32, 32) and attn.out.weight.shape == (32, 32)
    x = torch.randn(2, 6, 32)
    with torch.no_grad():  # attention computed by hand from the rows q = 0:d, k = d:2d, v = 2d:3d
        q, k, v = (
            nn.functional.linear(x, w, b)
            for w, b in zip(attn.qkv.weight.split(32), attn.qkv.bias.split(32), strict=True)
        )
        heads = [t.view(2, 6, 4, 8).transpose(1, 2) for t in (q, k, v)]
        scores = heads[0] @ heads[1].transpose(-1, -2) / 8**0.5
        scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
        by_hand = attn.out((scores.softmax(-1) @ heads[2]).transpose(1, 2).reshape(2, 6, 32))
        torch.testing.assert_close(attn(x), by_hand, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_residual_alpha_scales_the_skip_path(norm):
    model = gpt(norm=norm, depth=2)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert len(blocks) == 2
    state = model.state_dict()
    for i, block in enumerate(blocks):
        alpha = block.residual_alpha
        assert alpha.shape == () and alpha.dtype == torch.float32 and alpha.item() == 1.0
        assert f"blocks.{i}.residual_alpha" in state  # persistent: saved and restored with the weights
    block = blocks[0]
    block.residual_alpha.fill_(0.5)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        if norm == "pre":
            h = 0.5 * x + block.attn(block.ln1(x))
            want = 0.5 * h + block.mlp(block.ln2(h))
        elif norm == "post":
            h = block.ln1(0.5 * x + block.attn(x))
            want = block.ln2(0.5 * h + block.mlp(h))
        else:
            h = 0.5 * x + block.attn(x)
            want = 0.5 * h + block.mlp(h)
        torch.testing.assert_close(block(x), want)
        block.residual_alpha.fill_(1.0)
        assert not torch.allclose(block(x), want)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_places_layer_norm(norm):
    for model in (gpt(norm=norm), vit(norm=norm)):
        names = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
        want = {
            "pre": ["blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2", "ln_f"],
            "post": ["blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2"],
            "none": [],
        }[norm]
        assert names == want
    if norm == "post":  # each block's output is the LayerNorm of its last residual sum
        block = gpt(norm="post").blocks[0]
        out = block(torch.randn(2, 5, 32) * 10)
        torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_dropout_is_modules_on_the_embeddings_and_each_branch():
    names = [n for n, m in gpt(dropout=0.1).named_modules() if isinstance(m, nn.Dropout)]
    assert names == ["drop", "blocks.0.attn.drop", "blocks.0.mlp.drop", "blocks.1.attn.drop", "blocks.1.mlp.drop"]
    assert not any(isinstance(m, nn.Dropout) for m in gpt(dropout=0.0).modules())
    model = gpt(dropout=0.5).eval()
    x = tokens(2, CONTEXT)
    assert torch.equal(model(x), model(x))  # eval: no dropout, and none hidden in the attention


def test_every_parameter_learns():
    for model, x, y in (
        (gpt(tie_embeddings=True), tokens(4, CONTEXT), tokens(4 * CONTEXT, seed=1)),
        (gpt(norm="post"), tokens(4, CONTEXT), tokens(4 * CONTEXT, seed=1)),
        (vit(norm="none"), torch.rand(4, 1, 28, 28), torch.arange(4)),
    ):
        out = model(x)
        nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


BASE = {"name": "t", "seeds": [0], "schemes": [{"scheme": "uniform_fan_in", "c": 1}]}


@pytest.mark.parametrize(
    "model,message",
    [
        ({"name": "gpt", "heads": 3}, "model.heads: width 128 does not split into 3 heads (width must be a multiple"),
        ({"name": "vit", "width": 48, "heads": 5}, "model.heads: width 48 does not split into 5 heads"),
        ({"name": "gpt", "heads": 0}, "model.heads: input should be greater than 0 (got 0)"),
        ({"name": "gpt", "norm": "sandwich"}, "model.norm: input should be 'pre', 'post' or 'none' (got 'sandwich')"),
        ({"name": "vit", "patch": 0}, "model.patch: input should be greater than 0 (got 0)"),
        ({"name": "vit", "tie_embeddings": True}, "model.tie_embeddings: unknown key"),
        ({"name": "gpt", "patch": 4}, "model.patch: unknown key"),
        ({"name": "gpt", "mlp_ratio": 0}, "model.mlp_ratio: input should be greater than 0 (got 0)"),
        ({"name": "gpt", "dropout": 1.0}, "model.dropout: input should be less than 1 (got 1.0)"),
        ({"name": "vit", "activation": "swish"}, "model.activation: input should be 'relu', 'tanh', 'gelu'"),
    ],
)
def test_bad_transformer_keys_are_one_line_naming_the_key(model, message):
    with pytest.raises(ConfigError) as err:
        parse_config(BASE | {"model": model})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_patch_that_does_not_tile_the_image_is_one_line():
    problem = "model.patch: 5 does not divide the 28x28 images into whole patches (patch sizes that do: 1, 2, 4, 7"
    assert ViTConfig(patch=5).patch_problem((1, 28, 28)).startswith(problem)
    assert ViTConfig(patch=7).patch_problem((1, 28, 28)) is None
    assert "(patch sizes that do: 1, 2, 4, 8)" in ViTConfig(patch=16).patch_problem((3, 32, 24))
    with pytest.raises(ConfigError, match=rf"^{re.escape(problem)}"):
        build_vit(ViTConfig(patch=5), (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"^model.name: vit takes images \(channels, height, width\); these"):
        build_vit(ViTConfig(), (784,), 10)
    with pytest.raises(ConfigError, match=r"^model.name: gpt takes token ids \(context,\); these inputs are \(1, 28"):
        build_gpt(GPTConfig(), (1, 28, 28), 10)


# Packing: S seeds as one VmappedModel give each seed its own model's outputs and gradients.
S = 3


def packed_and_alone(build) -> tuple[VmappedModel, list[nn.Module]]:
    torch.manual_seed(0)
    models = [build() for _ in range(S)]
    for i, m in enumerate(models):  # distinct, non-default residual alphas: the buffers are stacked per seed
        for block in m.blocks:
            block.residual_alpha.fill_(1.0 - 0.1 * i)
    return VmappedModel(copy.deepcopy(models)), models


def assert_packed_is_alone(vm: VmappedModel, models: list[nn.Module], x: torch.Tensor, y: torch.Tensor, task: str):
    vm.train()
    out = vm(x)
    loss = TASKS[task].loss(out, y)
    loss.sum().backward()
    for i, model in enumerate(models):
        model.train()
        alone = model(x[i])
        torch.testing.assert_close(out[i], alone, atol=1e-5, rtol=1e-5)
        TASKS[task].loss(alone.unsqueeze(0), y[i].unsqueeze(0)).sum().backward()
        params = dict(model.named_parameters())
        assert set(params) == set(vm.params)
        for name, p in params.items():
            torch.testing.assert_close(vm.params[name].grad[i], p.grad, atol=1e-5, rtol=1e-5, msg=name)
        unpacked = vm.unpack(model, i)
        for name, t in unpacked.state_dict().items():
            assert torch.equal(t, model.state_dict()[name]), name


SDPA_LOOPS = "ignore:There is a performance drop:UserWarning"
"""torch's note that SDPA on the CPU has no vmap batching rule (vmap loops over the seeds)."""


@pytest.mark.filterwarnings(SDPA_LOOPS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("tie", [False, True])
def test_gpt_seeds_packed_with_vmap_are_each_seeds_own_model(norm, tie):
    vm, models = packed_and_alone(lambda: gpt(norm=norm, tie_embeddings=tie))
    if tie:  # the shared matrix is stacked once, and no readout of its own appears
        assert "tok_emb.weight" in vm.params and not any(k.startswith("head") for k in vm.params)
    x = torch.stack([tokens(4, CONTEXT, seed=i) for i in range(S)])
    y = torch.stack([tokens(4, CONTEXT, seed=10 + i) for i in range(S)])
    assert_packed_is_alone(vm, models, x, y, "language_model")


@pytest.mark.filterwarnings(SDPA_LOOPS)
def test_vit_seeds_packed_with_vmap_are_each_seeds_own_model():
    vm, models = packed_and_alone(lambda: vit(patch=4))
    x = torch.rand(S, 4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert_packed_is_alone(vm, models, x, torch.randint(0, 10, (S, 4)), "classification")


@pytest.mark.filterwarnings(SDPA_LOOPS)
@pytest.mark.parametrize(
    "build,x,y,task",
    [
        (
            lambda: gpt(dropout=0.1, tie_embeddings=True),
            tokens(4, CONTEXT),
            tokens(4, CONTEXT, seed=1),
            "language_model",
        ),
        (lambda: gpt(dropout=0.1, norm="post"), tokens(4, CONTEXT), tokens(4, CONTEXT, seed=1), "language_model"),
        (lambda: vit(dropout=0.1, norm="none"), torch.rand(4, 1, 28, 28), torch.arange(4), "classification"),
    ],
    ids=["gpt-tied", "gpt-post", "vit-none"],
)
def test_the_trainers_vmap_probe_accepts_both(build, x, y, task):
    vm = VmappedModel([build() for _ in range(S)])
    assert vmap_failure(vm, x, y, TASKS[task]) is None
    # Each dropout module is one per-seed mask: seeds given the same batch get different outputs.
    vm.train()
    out = vm(x, [torch.Generator().manual_seed(s) for s in range(S)], shared=True)
    assert not torch.allclose(out[0], out[1])
