"""The built-in transformers: `gpt` (a GPT-2-style causal language model) and `vit` (a Vision Transformer).

`build_gpt(cfg, input_shape, num_classes)` takes its context and vocabulary from the data: `input_shape`
is `(context,)`, `num_classes` the vocabulary; token ids (B, T) int64, T <= context -> next-token logits
(B, T, vocab). `build_vit(cfg, input_shape, num_classes)` takes images `(C, H, W)` cut into `cfg.patch`
square patches -> logits (B, classes). Their configs are `GPTConfig` and `ViTConfig` in
`initsweep.catalog.models`.

Both are the same stack: embeddings, `depth` blocks of multi-head self-attention (causal for gpt) then an
MLP (Linear d -> mlp_ratio*d, the activation, Linear back), then a readout. The modules' names, for
`init.overrides` and `init.layers` globs (`blocks.*.attn.qkv`, ...):

- `tok_emb` (role `embedding`): gpt `Embedding(vocab, d)`; vit `Linear(C*patch*patch, d)`, one token per
  flattened patch.
- `pos_emb` (`embedding`): `Embedding(context or patches, d)`, learned positions added to the tokens.
- `drop`: `Dropout` on the embeddings' sum (only when `dropout` > 0, as every `drop` here).
- `blocks.N.ln1`, `blocks.N.ln2` (`norm`): `LayerNorm(d)` on the attention's / MLP's input (pre) or after
  each residual sum (post); absent for `norm: none`.
- `blocks.N.attn.qkv` (`attention.qkv`): `Linear(d, 3d)`, q, k and v fused, output rows in q, k, v order
  (GPT-2's `c_attn`); head i of q is rows i*d/heads to (i+1)*d/heads.
- `blocks.N.attn.out` (`attention.out`): `Linear(d, d)`, the heads back onto the residual stream;
  `blocks.N.attn.drop`: `Dropout` on it.
- `blocks.N.mlp.fc_in` (`mlp.in`): `Linear(d, round(mlp_ratio*d))`; `blocks.N.mlp.act`: the activation;
  `blocks.N.mlp.fc_out` (`mlp.out`): `Linear(round(mlp_ratio*d), d)`; `blocks.N.mlp.drop`: `Dropout` on it.
- `ln_f` (`norm`): the final `LayerNorm(d)`, for `norm: pre` only.
- `head` (`readout`): gpt `Linear(d, vocab, bias=False)`, vit `Linear(d, classes)`; absent when tied.

**Roles.** Every `Linear`, `Embedding` and `LayerNorm` here carries a string attribute `init_role`, one of
`ROLES`, so that a scheme or a parametrization (muP, DeepNet, T-Fixup) can find "the readout" or "every
attention output" by role rather than by name. With `tie_embeddings: true` (gpt only) there is no `head`
module and no `readout`-role module at all: the logits are `F.linear(x, tok_emb.weight)`, the token
embedding's own parameter (one tensor, one gradient), so `tok_emb` plays both roles (`model.tie_embeddings`
says so). Attention and MLP Linears have biases (GPT-2's do); the gpt readout has none (GPT-2's `lm_head`).

**Residual alpha.** Every block has a persistent float buffer `residual_alpha` (shape (), 1.0) that
multiplies the skip path: pre-LN `x = alpha*x + f(ln(x))`, post-LN `x = ln(alpha*x + f(x))`, none
`x = alpha*x + f(x)`. DeepNet's alpha is a scheme setting it (`block.residual_alpha.fill_(a)`); as a buffer
it is saved, restored and stacked per seed with the weights. `attn.scale` (None: SDPA's 1/sqrt(head
dim)) is the attention logits' scale, for a parametrization to set (muP: 1/head dim) before training.

**Packing.** Both models train packed (`initsweep.engine.vmapped.VmappedModel`, one vmapped call for all
seeds): attention is `F.scaled_dot_product_attention` (`is_causal=True` for gpt, no mask tensor), and all
control flow is static. Dropout is only `nn.Dropout` modules, each called once per forward (the packed
trainer swaps each for a per-seed mask), never dropout on the attention probabilities: SDPA's
`dropout_p` would draw from the global RNG, so a seed's masks would depend on its trial-mates. Tied
weights are one parameter used twice (no second module holding it), so `stack_module_state` stacks it
once and `functional_call` needs no tying.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from initsweep.catalog.models import GPTConfig, ViTConfig
from initsweep.catalog.parametrizations import PARAMETRIZATIONS, attention_scale, branch_scale
from initsweep.config import ConfigError

__all__ = ["GPT", "MLP", "ROLES", "Attention", "Block", "ViT", "build_gpt", "build_vit"]

ROLES = ("embedding", "attention.qkv", "attention.out", "mlp.in", "mlp.out", "readout", "norm")
"""Every `init_role` a module of these models carries (each Linear, Embedding and LayerNorm has one)."""

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}
"""The config's activations (`initsweep.engine.models.ACTIVATION_MODULES`, which imports this module)."""

_Config = GPTConfig | ViTConfig


def _role(module: nn.Module, role: str) -> nn.Module:
    module.init_role = role
    return module


def _dropout(p: float) -> nn.Module | None:
    return nn.Dropout(p) if p > 0 else None


def _maybe(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


class Attention(nn.Module):
    """Multi-head self-attention: one fused `qkv` Linear(d, 3d) (rows q, k, v), SDPA, an `out` Linear(d, d)."""

    def __init__(self, width: int, heads: int, causal: bool, dropout: float, scale: float | None = None):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.scale = scale
        """The attention logits' scale; None is SDPA's 1/sqrt(head dim) (muP's is 1/head dim)."""
        self.qkv = _role(nn.Linear(width, 3 * width), "attention.qkv")
        self.out = _role(nn.Linear(width, width), "attention.out")
        self.drop = _dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=self.scale)  # (b, heads, t, dh)
        return _maybe(self.drop, self.out(y.transpose(1, 2).reshape(b, t, d)))


class MLP(nn.Module):
    """`fc_in` Linear(d, h), the activation, `fc_out` Linear(h, d)."""

    def __init__(self, width: int, hidden: int, activation: str, dropout: float):
        super().__init__()
        self.fc_in = _role(nn.Linear(width, hidden), "mlp.in")
        self.act = _ACTIVATIONS[activation]()
        self.fc_out = _role(nn.Linear(hidden, width), "mlp.out")
        self.drop = _dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _maybe(self.drop, self.fc_out(self.act(self.fc_in(x))))


class Block(nn.Module):
    """Attention then MLP on the residual stream, LayerNorm placed by `norm`; `residual_alpha` scales the skip."""

    def __init__(self, cfg: _Config, causal: bool):
        super().__init__()
        d = cfg.width
        self.norm = cfg.norm
        self.ln1 = None if cfg.norm == "none" else _role(nn.LayerNorm(d), "norm")
        scale = attention_scale(cfg.parametrization, cfg.head_dim, (cfg.base_width or cfg.width) // cfg.heads)
        self.attn = Attention(d, cfg.heads, causal, cfg.dropout, scale)
        self.ln2 = None if cfg.norm == "none" else _role(nn.LayerNorm(d), "norm")
        self.mlp = MLP(d, cfg.mlp_width, cfg.activation, cfg.dropout)
        self.register_buffer("residual_alpha", torch.ones(()))
        self.branch_scale = branch_scale(cfg.residual_scaling, cfg.depth)
        """Each branch's multiplier: 1, or Depth-muP's 1/sqrt(depth) (`model.residual_scaling`)."""

    def _branch(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.branch_scale == 1.0 else self.branch_scale * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, f = self.residual_alpha, self._branch
        if self.norm == "pre":
            x = alpha * x + f(self.attn(self.ln1(x)))
            return alpha * x + f(self.mlp(self.ln2(x)))
        if self.norm == "post":
            x = self.ln1(alpha * x + f(self.attn(x)))
            return self.ln2(alpha * x + f(self.mlp(x)))
        x = alpha * x + f(self.attn(x))
        return alpha * x + f(self.mlp(x))


class _Transformer(nn.Module):
    """Embeddings, blocks and the final norm, shared by `GPT` and `ViT` (each adds its readout)."""

    def __init__(self, cfg: _Config, causal: bool, tok_emb: nn.Module, pos_emb: nn.Module):
        super().__init__()
        self.tok_emb = _role(tok_emb, "embedding")
        self.pos_emb = _role(pos_emb, "embedding")
        self.drop = _dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, causal) for _ in range(cfg.depth))
        self.ln_f = _role(nn.LayerNorm(cfg.width), "norm") if cfg.norm == "pre" else None

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = _maybe(self.drop, x)
        for block in self.blocks:
            x = block(x)
        return _maybe(self.ln_f, x)


class GPT(_Transformer):
    """Token ids (B, T), T <= context -> next-token logits (B, T, vocab); causal attention."""

    def __init__(self, cfg: GPTConfig, context: int, vocab: int):
        super().__init__(cfg, True, nn.Embedding(vocab, cfg.width), nn.Embedding(context, cfg.width))
        self.tie_embeddings = cfg.tie_embeddings
        """The readout is `tok_emb.weight` itself (no `head` module)."""
        self.head = None if cfg.tie_embeddings else _role(nn.Linear(cfg.width, vocab, bias=False), "readout")
        moves = cfg.tie_embeddings and not PARAMETRIZATIONS[cfg.parametrization].width_free
        self.readout_scale = (cfg.base_width or cfg.width) / cfg.width if moves else 1.0
        """The tied readout's logits multiplier: 1, or muP's base_width / width (Tensor Programs V's Table 8
        form: one matrix cannot take both an embedding's and a readout's init and lr, so the tied matrix
        is an embedding and the width factor multiplies the logits)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[-1], device=idx.device)
        x = self._trunk(self.tok_emb(idx) + self.pos_emb(positions))
        if self.head is not None:
            return self.head(x)
        logits = F.linear(x, self.tok_emb.weight)
        return logits if self.readout_scale == 1.0 else self.readout_scale * logits


class ViT(_Transformer):
    """Images (B, C, H, W) -> logits (B, classes): patch tokens, non-causal attention, the mean token's readout.

    The readout reads the tokens' mean (global average pooling), not a class token: every parameter
    then lives in a Linear, Embedding or LayerNorm with a role (a class token would be a bare
    parameter no role names), and for small ViTs it trains as well or better (Beyer, Zhai and
    Kolesnikov 2022, "Better plain ViT baselines for ImageNet-1k")."""

    def __init__(self, cfg: ViTConfig, input_shape: tuple[int, int, int], classes: int):
        channels, height, width = input_shape
        p = cfg.patch
        super().__init__(
            cfg, False, nn.Linear(channels * p * p, cfg.width), nn.Embedding((height // p) * (width // p), cfg.width)
        )
        self.patch = p
        self.head = _role(nn.Linear(cfg.width, classes), "readout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        positions = torch.arange(patches.shape[1], device=x.device)
        x = self._trunk(self.tok_emb(patches) + self.pos_emb(positions))
        return self.head(x.mean(1))


def build_gpt(cfg: GPTConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The `gpt` of `cfg` for windows of `input_shape == (context,)` token ids over a `num_classes`-token
    vocabulary; weights left for a scheme to set."""
    if len(input_shape) != 1:
        raise ConfigError(f"model.name: gpt takes token ids (context,); these inputs are {tuple(input_shape)}")
    return GPT(cfg, input_shape[0], num_classes)


def build_vit(cfg: ViTConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The `vit` of `cfg` for images of `input_shape` (C, H, W), `num_classes` classes; `model.patch` must
    tile the image."""
    problem = cfg.patch_problem(tuple(input_shape))
    if problem:
        raise ConfigError(problem)
    return ViT(cfg, tuple(input_shape), num_classes)
