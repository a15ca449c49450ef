"""The roles a transformer's modules play, and the default name patterns that find them (no torch here).

A role names what a module does, so that an init rule can say "every attention output" or "the
readout" whatever the model calls it: `init.overrides` rules by `role:`, and the role-aware schemes
(`gpt2`, `t_fixup`, `deepnorm`, `zero_residual`, `small_embedding`), which draw each module by its role.

Where a module's role comes from (`initsweep.engine.roles.roles_of`), first found wins:

1. `init.roles` in the config: `{ROLE: [glob, ...]}`, `fnmatch` globs on qualified module names (as
   `init.overrides.match`); a role given there replaces that role's default patterns.
2. The module's own `init_role` attribute: the built-in `gpt` and `vit` set one on every Linear,
   Embedding and LayerNorm.
3. The default patterns below, which recognize common naming (HF GPT-2 and nanoGPT, torch's
   `nn.TransformerEncoderLayer`/`DecoderLayer`, timm's ViT, LLaMA-style q/k/v/o projections). They apply
   only to a model none of whose modules has an `init_role`: a model that declares roles is taken at its
   word.

Only modules that hold a weight get a role (a glob that matches a container alone is ignored by the
defaults and refused in `init.roles`). torch's `nn.MultiheadAttention` holds q, k and v fused in its own
`in_proj_weight` (3d, d), rows q, k, v, a parameter of the attention module, not a submodule: the
`MultiheadAttention` module itself takes the role `attention.qkv` (its `in_proj_weight`, or its
`q_proj_weight`/`k_proj_weight`/`v_proj_weight` when kdim or vdim differ, and `in_proj_bias`), and its
`out_proj` Linear is `attention.out`.
"""

from __future__ import annotations

__all__ = ["BLOCK_ROLES", "DEFAULT_PATTERNS", "QKV_PARTS", "RESIDUAL_ROLES", "ROLES", "ROLE_MEANINGS"]

ROLE_MEANINGS: dict[str, str] = {
    "embedding": "a token or position embedding (an Embedding; ViT's patch projection, a Linear)",
    "attention.qkv": "the fused q, k, v projection: one Linear(d, 3d), output rows q, k, v (GPT-2's c_attn)",
    "attention.q": "an unfused query projection (LLaMA's q_proj), for models of your own",
    "attention.k": "an unfused key projection (k_proj), for models of your own",
    "attention.v": "an unfused value projection (v_proj), for models of your own",
    "attention.out": "the attention's output projection back onto the residual stream (c_proj, out_proj)",
    "mlp.in": "the MLP's input projection(s): d -> hidden (c_fc, linear1; a gated MLP's gate and up)",
    "mlp.out": "the MLP's output projection back onto the residual stream (hidden -> d)",
    "readout": "the LM head or classifier (absent when the head is tied to the token embedding)",
    "norm": "a LayerNorm (or another normalization layer)",
}
"""Every role, with what it means."""
ROLES = tuple(ROLE_MEANINGS)
"""The role names `init.roles` and `init.overrides.role` take. The built-in models use all but the unfused
`attention.q`, `attention.k`, `attention.v`."""
QKV_PARTS = ("attention.q", "attention.k", "attention.v")
"""What a fused `attention.qkv` weight splits into: its first, second and last third of output rows."""
RESIDUAL_ROLES = ("attention.out", "mlp.out")
"""The out-projections of the residual branches: one per branch, so their count is GPT-2's 2 * n_layer."""
BLOCK_ROLES = ("attention.qkv", *QKV_PARTS, "attention.out", "mlp.in", "mlp.out")
"""The roles inside a transformer block."""

DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "embedding": (
        "wte",
        "*.wte",
        "wpe",
        "*.wpe",  # GPT-2 (HF, nanoGPT)
        "embed_tokens",
        "*.embed_tokens",  # LLaMA, fairseq
        "*patch_embed.proj",  # timm ViT's patch projection
    ),
    "attention.qkv": (
        "*.c_attn",  # GPT-2
        "self_attn",
        "*.self_attn",
        "*.multihead_attn",  # nn.TransformerEncoderLayer/DecoderLayer: nn.MultiheadAttention
        "*.attn.qkv",  # timm ViT
    ),
    "attention.q": ("*.q_proj",),
    "attention.k": ("*.k_proj",),
    "attention.v": ("*.v_proj",),
    "attention.out": (
        "*.attn.c_proj",  # GPT-2
        "self_attn.out_proj",
        "*.self_attn.out_proj",
        "*.multihead_attn.out_proj",  # torch's MultiheadAttention
        "*.o_proj",  # LLaMA
        "*.attn.proj",  # timm ViT
    ),
    "mlp.in": ("*.mlp.c_fc", "linear1", "*.linear1", "*.gate_proj", "*.up_proj", "*.mlp.fc1"),
    "mlp.out": ("*.mlp.c_proj", "linear2", "*.linear2", "*.down_proj", "*.mlp.fc2"),
    "readout": ("lm_head", "*.lm_head", "head"),
    "norm": (
        "ln_*",
        "*.ln_*",  # GPT-2's ln_1, ln_2, ln_f
        "norm",
        "*.norm",
        "norm[0-9]",
        "*.norm[0-9]",  # torch's norm1, norm2, norm3; timm
        "*layernorm",  # LLaMA's input_layernorm, post_attention_layernorm
    ),
}
"""Role -> the `fnmatch` globs that find it in a model that declares no `init_role` (first role wins)."""
