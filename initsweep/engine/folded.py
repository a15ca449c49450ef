"""Packed seeds as one wide model: S copies of a network run side by side in the channel dimension.

A batch of S seeds' activations is laid out as (B, S*C, ...): seed s owns channels s*C..(s+1)*C-1. In that
layout every layer that acts per channel or per element needs nothing new (activations, pooling, global
average pooling, residual additions, `flatten(1)`), and each weighted layer becomes one call of its own
kind: a convolution with S times the groups, a BatchNorm over S*C channels (each seed's own batch
statistics and running statistics, exactly), a Linear as one batched matmul. On the CPU this trains 5
seeds of bench's small ResNet 1.37-1.39x as fast as one at a time, and the ResNet example's 1.13-1.20x,
where `torch.func.vmap` ran them at 0.81-0.89x and 0.55-0.68x (bench (G)): vmap cannot keep the channels-last layout
oneDNN's grouped convolutions want, and falls back to a per-seed loop for adaptive pooling.

The parameters and buffers are `VmappedModel`'s stacks (S, ...): state, optimizer, resume and `unpack`
are shared with it, and nn.Dropout draws the very masks `VmappedModel` draws, from each seed's generator.
Only whitelisted weighted layers fold; any other layer with weights, or a forward that mixes channels
across seeds (a mean over dim 1, a `view` that splits the channels, ...), is found by `fold_failure`
before training (the folded model's output is compared with each seed's own), and the caller uses vmap
instead. A softmax or a `cat` over dim 1 (a `log_softmax(dim=1)` at the end, DenseNet's concatenations)
is taken per seed.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from initsweep.engine.packed import apply_dropout
from initsweep.engine.vmapped import SeedDropout, VmappedModel

__all__ = ["FoldedModel", "fold_failure"]

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Folded(nn.Module):
    """A weighted layer of the wide model: the same parameter and buffer names as the layer it replaces,
    so `functional_call` hands it the (S, ...) stacks; `layer` is the original, for its settings."""

    def __init__(self, layer: nn.Module, n_seeds: int):
        super().__init__()
        object.__setattr__(self, "layer", layer)  # not a submodule: its tensors are the stacks, not its own
        self.n_seeds = n_seeds
        for name, p in layer._parameters.items():
            self.register_parameter(name, None if p is None else nn.Parameter(_stacked(p, n_seeds)))
        for name, b in layer._buffers.items():
            self.register_buffer(name, None if b is None else _stacked(b, n_seeds))


def _stacked(t: torch.Tensor, n_seeds: int) -> torch.Tensor:
    return torch.empty(n_seeds, *t.shape, device="meta", dtype=t.dtype)


def _flat(t: torch.Tensor | None) -> torch.Tensor | None:
    """(S, C, ...) -> (S*C, ...), the seeds' slices side by side."""
    return None if t is None else t.reshape(-1, *t.shape[2:])


def _channels_last_on_cpu(x: torch.Tensor) -> bool:
    """Whether the folded layers run `x` channels-last: 4-d activations on the CPU, where oneDNN's grouped
    convolutions are faster in that layout (not measured on a GPU, so left as they come there)."""
    return x.dim() == 4 and x.device.type == "cpu"


class _FoldedConv(_Folded):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.layer
        if _channels_last_on_cpu(x):
            x = x.contiguous(memory_format=torch.channels_last)
        groups = c.groups * self.n_seeds
        return _CONV[type(c)](x, _flat(self.weight), _flat(self.bias), c.stride, c.padding, c.dilation, groups)


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last (N, C, H, W) input with two-pass statistics.

    PyTorch's CPU kernel sums channels-last statistics naively: 3e-5 relative error on a (100, 80, 28, 28)
    batch, 30x the NCHW kernel's, and in this layout it is also slower (33-35 ms forward and backward there,
    against 19 ms here). The mean and variance are computed over the (N*H*W, C) view; the normalization
    and the backward are PyTorch's own kernels, given those statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # a view: channels last is (N*H*W, C)
        mean = rows.mean(0)
        var = (rows - mean).square_().mean(0)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps))
        ctx.eps = eps
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps), mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        grads = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(memory_format=torch.channels_last), x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        return *grads, None


class _FoldedBatchNorm(_Folded):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """nn.BatchNorm's forward over S*C channels; the running statistics update the stacks in place."""
        bn = self.layer
        tracked = bn.track_running_stats
        factor = 0.0 if bn.momentum is None else bn.momentum
        if self.training and tracked:
            self.num_batches_tracked.add_(1)
            if bn.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked[0])
        use_batch = self.training or not tracked
        running = (_flat(self.running_mean), _flat(self.running_var))  # None when not tracked
        weight, bias = _flat(self.weight), _flat(self.bias)  # None when not affine
        if use_batch and _channels_last_on_cpu(x) and x.is_contiguous(memory_format=torch.channels_last):
            out, mean, var = _ChannelsLastBatchNorm.apply(x, weight, bias, bn.eps)
            if running[0] is not None:
                with torch.no_grad():
                    n = x.numel() // x.shape[1]
                    running[0].lerp_(mean, factor)
                    running[1].lerp_(var * (n / max(n - 1, 1)), factor)
            return out
        return F.batch_norm(x, *running, weight, bias, use_batch, factor, bn.eps)


class _FoldedLinear(_Folded):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S*F) -> (B, S*O): one batched matmul over the seeds."""
        if x.dim() != 2:
            raise ValueError(f"a folded Linear takes (batch, seeds*features), got {tuple(x.shape)}")
        b, s = x.shape[0], self.n_seeds
        seeds_first = x.view(b, s, -1).transpose(0, 1)
        weight = self.weight.transpose(1, 2)
        if self.bias is None:
            out = torch.bmm(seeds_first, weight)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), seeds_first, weight)
        return out.transpose(0, 1).reshape(b, -1)


class _FoldedDropout(SeedDropout):
    """`SeedDropout` on the folded layout: each seed's draws, in its own element order, moved to its channels."""

    def __init__(self, p: float, n_seeds: int):
        super().__init__(p)
        self.n_seeds = n_seeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        draws = self.bits.view(self.n_seeds, x.shape[0], -1).transpose(0, 1).reshape(x.shape)
        return apply_dropout(x, self.p, draws)


def _fold_layer(layer: nn.Module, n_seeds: int) -> nn.Module | None:
    """The folded counterpart of a weighted layer, or None: the layer stays as it is (it has no tensors
    of its own and acts per element or per channel, or `fold_failure` finds out that it does not)."""
    kind = type(layer)
    if kind in _CONV and layer.padding_mode == "zeros":
        return _FoldedConv(layer, n_seeds)
    if kind in _NORM:
        return _FoldedBatchNorm(layer, n_seeds)
    if kind is nn.Linear:
        return _FoldedLinear(layer, n_seeds)
    if kind is SeedDropout:
        return _FoldedDropout(layer.p, n_seeds)
    return None


def _widen(base: nn.Module, n_seeds: int) -> nn.Module:
    """A copy of the (meta) architecture whose weighted layers are their folded counterparts; ValueError
    naming the first layer with tensors of its own and no folded form."""
    wide = copy.deepcopy(base)
    for module in list(wide.modules()):
        for child_name, child in list(module.named_children()):
            folded = _fold_layer(child, n_seeds)
            if folded is not None:
                setattr(module, child_name, folded)
    for name, module in wide.named_modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if own and not isinstance(module, (_Folded, SeedDropout)):  # a SeedDropout's bits come with each forward
            raise ValueError(f"layer {name or '(the model)'} ({type(module).__name__}) has no folded form")
    return wide


_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax}
_CAT = {torch.cat, torch.concat, torch.concatenate}


class _PerSeedOps(TorchFunctionMode):
    """Inside a folded forward, a softmax or a concatenation over dim 1 (the folded one) acts on each
    seed's channels: (B, S*C, ...) is seen as (B, S, C, ...) and the op runs over the seeds' own C."""

    def __init__(self, n_seeds: int):
        super().__init__()
        self.n_seeds = n_seeds

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SOFTMAX and len(args) >= 1 and (len(args) > 1 or "dim" in kwargs):
            x, rest = args[0], args[2:]
            dim = args[1] if len(args) > 1 else kwargs.pop("dim")
            if isinstance(x, torch.Tensor) and x.dim() >= 2 and dim is not None and dim % x.dim() == 1:
                return func(x.unflatten(1, (self.n_seeds, -1)), 2, *rest, **kwargs).flatten(1, 2)
            return func(x, dim, *rest, **kwargs)
        if func in _CAT and "out" not in kwargs:
            tensors = args[0] if args else kwargs.pop("tensors")
            dim = args[1] if len(args) > 1 else kwargs.pop("dim", 0)
            if tensors and tensors[0].dim() >= 2 and dim % tensors[0].dim() == 1:
                parts = [t.unflatten(1, (self.n_seeds, -1)) for t in tensors]
                return func(parts, 2, **kwargs).flatten(1, 2)
            return func(tensors, dim, **kwargs)
        return func(*args, **kwargs)


class FoldedModel(VmappedModel):
    """S models of one architecture trained as one wide model (see the module docstring).

    Same stacks, state and interface as `VmappedModel`; only `_run`, the call on the stacks, differs.
    Raises ValueError when the architecture has a weighted layer with no folded form."""

    def __init__(self, models: list[nn.Module], device: torch.device | str = "cpu"):
        super().__init__(models, device)
        self.wide = _widen(self.base, self.n_seeds)
        # Evaluation batches of 2000 / S images: S times 2000 images' activations at once overflow the caches
        # (bench's small ResNet on 5 seeds: 10k test images in 0.66 s at 400 a batch, 1.86 s at 2000).
        self.eval_batch = max(100, 2000 // self.n_seeds)
        self.per_seed_ops = False  # set by `fold_failure` when the forward needs `_PerSeedOps`

    def _sync_modes(self) -> None:
        """The wide model's modules take the training flags of the architecture's, name by name."""
        modes = {name: m.training for name, m in self.base.named_modules()}
        for name, m in self.wide.named_modules():
            m.training = modes.get(name, m.training)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        self._sync_modes()

    def eval(self, train_mode: bool = False) -> None:
        super().eval(train_mode)
        self._sync_modes()

    def _fold(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """(S, B, C, ...) or, `shared`, (B, C, ...) -> (B, S*C, ...)."""
        if shared:
            return x.repeat(1, self.n_seeds, *[1] * (x.dim() - 2))
        return x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])

    def _run(self, params: dict, buffers: dict, bits: dict, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """All seeds' logits (S, B, classes): one call of the wide model on the folded batch."""
        with _PerSeedOps(self.n_seeds) if self.per_seed_ops else contextlib.nullcontext():
            out = functional_call(self.wide, {**params, **buffers, **bits}, (self._fold(x, shared),))
        batch = x.shape[0] if shared else x.shape[1]
        if out.dim() != 2 or out.shape[0] != batch or out.shape[1] % self.n_seeds:
            raise ValueError(f"the folded model returned {tuple(out.shape)}, not (batch, seeds*classes)")
        return out.view(batch, self.n_seeds, -1).transpose(0, 1)


def fold_failure(model: FoldedModel, x: torch.Tensor, loss: Callable = F.cross_entropy) -> str | None:
    """Why `model` cannot train folded, or None when it can: its output on the batch `x` (shared by every
    seed), in training and in eval mode, must be each seed's own model's output, and a backward must run.
    A model that mixes the seeds' channels only by a softmax or a concatenation over dim 1 folds with
    those taken per seed (`per_seed_ops`). On copies of the weights and buffers: nothing changes."""
    reason = _mismatch(model, x, loss)
    if reason is not None:
        model.per_seed_ops = True
        if _mismatch(model, x, loss) is None:
            return None
        model.per_seed_ops = False
    return reason


def _mismatch(model: FoldedModel, x: torch.Tensor, loss: Callable) -> str | None:
    tensors = {k: v.detach().clone() for k, v in {**model.params, **model.buffers}.items()}
    params = {k: tensors[k].requires_grad_() for k in model.params}
    buffers = {k: tensors[k] for k in model.buffers}
    try:
        for training in (True, False):
            model.base.train(training)
            for m in model.base.modules():  # dropout off: the outputs are compared
                if isinstance(m, (SeedDropout, nn.modules.dropout._DropoutNd)):
                    m.train(False)
            model._sync_modes()
            before = {k: v.clone() for k, v in buffers.items()}
            wide = model(x, None, shared=True, params=params, buffers=buffers)
            for s in range(model.n_seeds):
                own = {k: v[s].detach().clone() for k, v in {**params, **before}.items()}
                expected = functional_call(model.base, own, (x,))
                if wide[s].shape != expected.shape or not torch.allclose(wide[s], expected, rtol=1e-4, atol=1e-5):
                    return f"seed {s}'s output differs from its own model's (layers mix channels across seeds)"
            if training:
                labels = torch.zeros(wide.shape[:2], dtype=torch.long, device=x.device)
                loss(wide.flatten(0, 1), labels.flatten()).backward()
    except Exception as e:  # an unsupported layer or op may raise anything
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return None
