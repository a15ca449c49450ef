"""Packed seeds for any model: S initialized copies of one `nn.Module` trained as one vectorized model
with `torch.func` (`stack_module_state`, `functional_call`, `vmap(randomness="different")`).

Every parameter and buffer is stacked along a leading seed axis. The stacked parameters are ordinary leaf
tensors of shape (S, ...), so one fused Adam/SGD over them is S independent optimizers (both are
elementwise). Buffers are vmapped too: a BatchNorm in training mode updates each seed's own running
statistics in place (its slice of the stacked buffer). A seed whose loss is masked out of the backward
gets no gradient, and a seed with NaN weights fills only its own slice with NaN.

Dropout: every `nn.Dropout` (exactly that class) is swapped for `SeedDropout`, whose masks are drawn
outside vmap from each seed's own generator (the bits `PackedMLP` draws, in the same order), so a seed's
dropout masks do not depend on its trial-mates, and an MLP gets the very masks `PackedMLP` gives it.
Any other randomness inside the model (`Dropout2d`, `F.dropout` in a custom forward, ...) draws from the
global RNG under `randomness="different"`: the caller seeds that from a per-trial stream, so such a seed's
result is reproducible but depends on which seeds share its trial.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from initsweep.engine.packed import apply_dropout, dropout_bits

if TYPE_CHECKING:
    from initsweep.engine.tasks import Task

__all__ = ["SeedDropout", "VmappedModel", "vmap_failure"]

# vmap runs the CPU's flash attention seed by seed (no batching rule yet) and says so on every call; the
# results are right, and bench/ measures what it costs.
warnings.filterwarnings("ignore", message=r".*_scaled_dot_product_flash_attention_for_cpu", category=UserWarning)


class SeedDropout(nn.Module):
    """`nn.Dropout(p)` whose mask comes in as `bits` (per seed, under vmap), drawn by `VmappedModel`."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("bits", torch.empty(0, dtype=torch.int16), persistent=False)
        self.shapes: list | None = None  # set while `VmappedModel` records input shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shapes is not None:
            self.shapes.append((self, x.shape))
            return x
        if not self.training or self.p == 0:
            return x
        return apply_dropout(x, self.p, self.bits)


def _swap_dropout(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if type(child) is nn.Dropout:
            setattr(model, name, SeedDropout(child.p))
        else:
            _swap_dropout(child)
    return model


def _dropout_train_only(model: nn.Module, train_mode: bool) -> None:
    """Eval mode, with the dropout modules on when `train_mode` (BatchNorm keeps its running stats)."""
    model.eval()
    if train_mode:
        for m in model.modules():
            if isinstance(m, (SeedDropout, nn.modules.dropout._DropoutNd)):
                m.train()


class VmappedModel:
    """S models of one architecture as stacked tensors; `forward` runs all seeds in one vmapped call.

    `models` are consumed (their `nn.Dropout`s are replaced); pass freshly built, initialized copies."""

    def __init__(self, models: list[nn.Module], device: torch.device | str = "cpu"):
        models = [_swap_dropout(m) for m in models]
        params, buffers = stack_module_state(models)
        self.n_seeds = len(models)
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items() if not k.endswith(".bits")}
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; its tensors come from the stacks
        self.dropouts = {name: m for name, m in self.base.named_modules() if isinstance(m, SeedDropout)}
        self._shapes: dict[tuple, list[tuple[str, int]]] = {}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def named_sources(self) -> list[tuple[str, torch.Tensor]]:
        """Each stacked parameter with the name of the per-seed parameter it holds."""
        return list(self.params.items())

    def _stacks(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def eval(self, train_mode: bool = False) -> None:
        """Eval mode; `train_mode` turns dropout on (BatchNorm still uses its running statistics)."""
        _dropout_train_only(self.base, train_mode)

    def _dropout_sizes(self, x: torch.Tensor) -> list[tuple[str, int]]:
        """(dropout module, elements per seed) in call order for a per-seed input shaped like `x`: one
        forward of the architecture on the meta device per new shape."""
        key = (tuple(x.shape), x.dtype)
        if key not in self._shapes:
            calls: list[tuple[SeedDropout, torch.Size]] = []
            for m in self.dropouts.values():
                m.shapes = calls
            try:
                with torch.no_grad():
                    try:  # shapes only: no arithmetic
                        tensors = {k: torch.empty_like(v[0], device="meta") for k, v in self._stacks().items()}
                        functional_call(self.base, tensors, (torch.empty(x.shape, device="meta", dtype=x.dtype),))
                    except Exception:  # an op without a meta kernel: on copies of seed 0's real tensors
                        calls.clear()
                        tensors = {k: v[0].detach().clone() for k, v in self._stacks().items()}
                        functional_call(self.base, tensors, (x,))
            finally:
                for m in self.dropouts.values():
                    m.shapes = None
            names = {id(m): name for name, m in self.dropouts.items()}
            if len({id(m) for m, _ in calls}) != len(calls):
                raise RuntimeError("a dropout module called more than once per forward cannot take per-seed masks")
            self._shapes[key] = [(names[id(m)], shape.numel()) for m, shape in calls]
        return self._shapes[key]

    def _bits(self, x_per_seed: torch.Tensor, generators: list[torch.Generator] | None) -> dict[str, torch.Tensor]:
        if generators is None or not self.dropouts:
            return {}
        active = [(n, size) for n, size in self._dropout_sizes(x_per_seed) if self.dropouts[n].training]
        return {
            f"{name}.bits": dropout_bits(size, generators, x_per_seed.device)
            for name, size in active
            if self.dropouts[name].p > 0
        }

    def forward(
        self,
        x: torch.Tensor,
        generators: list[torch.Generator] | None = None,
        *,
        shared: bool = False,
        params: dict[str, torch.Tensor] | None = None,
        buffers: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (S, B, ...) per-seed batches, or (B, ...) one batch for every seed when `shared`;
        -> logits (S, B, classes). Dropout masks come from `generators` (one per seed) when the
        model's dropout is on."""
        bits = self._bits(x if shared else x[0], generators)
        params = self.params if params is None else params
        return self._run(params, self.buffers if buffers is None else buffers, bits, x, shared)

    __call__ = forward

    def _run(self, params: dict, buffers: dict, bits: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """All seeds' logits (S, B, classes) from the stacks: one vmapped call of the architecture."""

        def one(p, b, d, xs):
            return functional_call(self.base, (p, b, d), (xs,))

        return vmap(one, in_dims=(0, 0, 0, None if shared else 0), randomness="different")(params, buffers, bits, x)

    def state_dict(self) -> dict:
        return {"params": dict(self.params), "buffers": dict(self.buffers)}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for mine, saved in ((self.params, state["params"]), (self.buffers, state["buffers"])):
                if mine.keys() != saved.keys():
                    raise ValueError(f"resume: state for {sorted(saved)}, this model has {sorted(mine)}")
                for k, v in saved.items():
                    mine[k].copy_(v)

    def unpack(self, template: nn.Module, seed_index: int) -> nn.Module:
        """Seed `seed_index`'s weights and buffers, copied back into a plain model shaped like `template`."""
        model = copy.deepcopy(template)
        state = {k: v[seed_index].detach() for k, v in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state, strict=False)
        return model


def vmap_failure(model: VmappedModel, x: torch.Tensor, y: torch.Tensor, task: Task) -> str | None:
    """Why `model` cannot train vmapped (one forward and backward of the task's loss on the batch `x`,
    `y` shared by every seed, on copies: nothing of the model changes), or None when it can."""
    params = {k: v.detach().clone().requires_grad_() for k, v in model.params.items()}
    buffers = {k: v.clone() for k, v in model.buffers.items()}
    gens = [torch.Generator(x.device).manual_seed(s) for s in range(model.n_seeds)]
    model.train()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            logits = model(x, gens, shared=True, params=params, buffers=buffers)
            task.loss(logits, y.unsqueeze(0).expand(model.n_seeds, *y.shape)).sum().backward()
    except Exception as e:  # vmap's refusals are RuntimeErrors, unsupported ops may raise others
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return None
