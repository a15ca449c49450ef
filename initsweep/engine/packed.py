"""Packed seeds: S replicate MLPs trained as one stacked model, each seed with its own weights, data
order, dropout stream and optimizer state.

Weights are stacked along a leading seed axis and every linear layer is one batched matmul
(`torch.baddbmm`), so S small models cost about as much as one wide one. Nothing is shared between
seeds: each seed's slice sees only its own batch, its own dropout masks (from its own generator) and
its own Adam/SGD state (both optimizers are elementwise), so a seed trains the same whether it is
packed or alone (S = 1). A seed that diverges only fills its own slice with NaN.

A ReLU MLP (Linear, ReLU, optional Dropout, ..., Linear: the seed table's) trains through one autograd
node with a hand-written backward (`ReluStack`): the same products and the same numbers bit for bit as
autograd's graph of the layers, fewer kernels and less bookkeeping (bench (K)). Other stacks take the
per-layer path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "PackedMLP",
    "ReluStack",
    "apply_dropout",
    "dropout",
    "dropout_bits",
    "dropout_scale",
    "packable",
    "packed_cross_entropy",
]

_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.SELU, nn.Identity)


def packable(model: nn.Module) -> bool:
    """True for a Sequential of Flatten, Linear, elementwise activations and Dropout (the MLPs)."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, (nn.Flatten, nn.Linear, nn.Dropout, *_ELEMENTWISE)) for m in model
    )


class PackedMLP(nn.Module):
    """S initialized copies of one MLP architecture, stacked: weights (S, in, out), biases (S, 1, out).

    Weights are kept as (in, out) per seed, the layout `baddbmm` reads without a transposing copy."""

    def __init__(self, models: list[nn.Sequential]):
        super().__init__()
        if not models or not all(packable(m) for m in models):
            raise ValueError("PackedMLP takes one or more MLPs (Sequential of Linear, activations, Dropout)")
        self.n_seeds = len(models)
        self.steps: list[tuple[str, object]] = []
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.linear_names: list[str] = []
        """Each linear layer's name in the per-seed Sequential ("1", "4", ...)."""
        for index, layers in enumerate(zip(*models, strict=True)):
            first = layers[0]
            if isinstance(first, nn.Linear):
                self.linear_names.append(str(index))
                self.weights.append(nn.Parameter(torch.stack([m.weight.detach().T for m in layers]).contiguous()))
                self.biases.append(
                    nn.Parameter(torch.stack([m.bias.detach() for m in layers]).unsqueeze(1).contiguous())
                )
                self.steps.append(("linear", len(self.weights) - 1))
            elif isinstance(first, nn.Dropout):
                self.steps.append(("dropout", first.p))
            elif isinstance(first, nn.Flatten):
                self.steps.append(("flatten", None))
            else:
                self.steps.append(("activation", first))
        self.relu_dropouts = _relu_stack_dropouts(self.steps)
        """Each hidden layer's dropout p when the stack is a ReLU MLP (`ReluStack` trains it), else None."""

    def named_sources(self) -> list[tuple[str, torch.Tensor]]:
        """Each stacked parameter with the name of the per-seed parameter it holds (`1.weight`)."""
        weights = [(f"{n}.weight", w) for n, w in zip(self.linear_names, self.weights, strict=True)]
        return weights + [(f"{n}.bias", b) for n, b in zip(self.linear_names, self.biases, strict=True)]

    def forward(self, x: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """x: (S, B, ...) -> logits (S, B, classes). Dropout is on when `generators` (one per seed) is given."""
        if self.relu_dropouts is None:
            return self.forward_per_layer(x, generators)
        if self.steps[0][0] == "flatten":
            x = x.reshape(x.shape[0], x.shape[1], -1)
        return ReluStack.apply(x, generators, self.relu_dropouts, *self.weights, *self.biases)

    def forward_per_layer(self, x: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """`forward` one module at a time, autograd's graph recording each: any stack of `packable` layers."""
        for kind, arg in self.steps:
            if kind == "flatten":
                x = x.reshape(x.shape[0], x.shape[1], -1)
            elif kind == "linear":
                x = torch.baddbmm(self.biases[arg], x, self.weights[arg])
            elif kind == "activation":
                x = arg(x)
            elif generators is not None and arg > 0:
                x = dropout(x, arg, generators)
        return x

    def logits_dropout_off_and_on(
        self, x: torch.Tensor, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward(x)` and `forward(x, generators)` at once, for validation in both modes: the layers before
        the first dropout (the first layer's product: 85% of the seed MLP's FLOPs) run once for both. Each
        branch runs `forward`'s own kernels in its order and draws the same dropout bits: the same numbers."""
        relu = self.relu_dropouts is not None
        off = on = x.reshape(x.shape[0], x.shape[1], -1) if self.steps[0][0] == "flatten" else x
        branched = False
        for kind, arg in self.steps:
            if kind == "linear":
                off = torch.baddbmm(self.biases[arg], off, self.weights[arg])
                on = torch.baddbmm(self.biases[arg], on, self.weights[arg]) if branched else off
            elif kind == "activation":
                off = off.clamp_min_(0) if relu else arg(off)  # as ReluStack, else as forward_per_layer
                on = (on.clamp_min_(0) if relu else arg(on)) if branched else off
            elif kind == "dropout" and arg > 0:
                on, branched = dropout(on, arg, generators), True
        return off, on

    def unpack(self, template: nn.Sequential, seed_index: int) -> nn.Sequential:
        """Seed `seed_index`'s weights, copied back into a plain model shaped like `template`."""
        import copy

        model = copy.deepcopy(template)
        linears = [m for m in model if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, w, b in zip(linears, self.weights, self.biases, strict=True):
                layer.weight.copy_(w[seed_index].T)
                layer.bias.copy_(b[seed_index, 0])
        return model


DROPOUT_BITS = 15
"""Dropout draws 15 random bits per unit: p is rounded to a multiple of 2^-15 (0.2 -> 0.200012)."""


def dropout(x: torch.Tensor, p: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Inverted dropout, each seed's slice masked from that seed's own generator.

    Masks come from raw random bits (two 15-bit draws per 32-bit integer), about 2.7x faster than
    `bernoulli_` here; measured in bench/.
    """
    return apply_dropout(x, p, dropout_bits(x[0].numel(), generators, x.device))


def dropout_bits(per_seed: int, generators: list[torch.Generator], device: torch.device | str) -> torch.Tensor:
    """(S, per_seed) int16 random draws, row s from `generators[s]` (31 random bits per 32-bit integer;
    the low 15 of each 16-bit half are used)."""
    bits = torch.empty(len(generators), (per_seed + 1) // 2, dtype=torch.int32, device=device)
    for s, g in enumerate(generators):
        bits[s].random_(generator=g)
    return bits.view(torch.int16)[:, :per_seed]


def apply_dropout(x: torch.Tensor, p: float, draws: torch.Tensor) -> torch.Tensor:
    """Inverted dropout of `x` with `dropout_bits` draws (as many as `x` has elements, in `x`'s order).

    A unit is kept when its draw's low 15 bits are at least round(p * 2^15). `x` times a float mask of 0 and
    1/(1-p): autograd's backward is one multiply too. Built in int16 arithmetic, not comparisons: a bool
    tensor (`>=`, `torch.where`) took 4x the time of these kernels here (bench (K))."""
    levels = 1 << DROPOUT_BITS
    dropped = round(p * levels)
    if dropped <= 0:
        return x
    if dropped >= levels:
        return x * 0.0
    keep = ((draws & (levels - 1)) - (dropped - 1)).clamp(0, 1)  # 1 where the draw >= dropped, else 0
    return x * keep.to(x.dtype).mul_(dropout_scale(p)).view_as(x)


def dropout_scale(p: float) -> float:
    """The factor on a kept unit, 1/(1-p) for p as the draws round it (0 when every unit is dropped)."""
    levels = 1 << DROPOUT_BITS
    dropped = min(max(round(p * levels), 0), levels)
    return levels / (levels - dropped) if dropped < levels else 0.0


def _relu_stack_dropouts(steps: list[tuple[str, object]]) -> list[float] | None:
    """Each hidden layer's dropout p when `steps` are [Flatten] (Linear, ReLU, [Dropout])* Linear, else None."""
    kinds = [(k, type(a)) if k == "activation" else (k, None) for k, a in steps]
    if kinds and kinds[0][0] == "flatten":
        kinds, steps = kinds[1:], steps[1:]
    dropouts, i = [], 0
    while i < len(kinds) - 1 and kinds[i : i + 2] == [("linear", None), ("activation", nn.ReLU)]:
        has_dropout = i + 2 < len(kinds) and kinds[i + 2][0] == "dropout"
        dropouts.append(float(steps[i + 2][1]) if has_dropout else 0.0)
        i += 3 if has_dropout else 2
    return dropouts if kinds[i:] == [("linear", None)] else None


class ReluStack(torch.autograd.Function):
    """A packed ReLU MLP's forward as one autograd node, its backward written out: per layer from the top,
    the weight gradient (one `bmm`), the bias gradient (a sum), and below it the input gradient (one `bmm`)
    through ReLU and dropout as one `threshold_backward` on the saved output times dropout's scale (a
    unit passes gradient exactly where its output is positive: ReLU let it through and dropout kept it).

    The same products and roundings as autograd over `forward_per_layer`, so the same gradients bit for
    bit; what it saves is autograd's per-op nodes, the mask multiply's and ReLU's separate backward kernels
    and a temporary a layer (ReLU applied in place)."""

    @staticmethod
    def forward(ctx, x, generators, dropouts, *params):
        weights, biases = params[: len(params) // 2], params[len(params) // 2 :]
        outputs = [x]  # each layer's input: the weight gradients' left factors
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < len(dropouts):
                x = x.clamp_min_(0)
                if generators is not None and dropouts[i] > 0:
                    x = apply_dropout(x, dropouts[i], dropout_bits(x[0].numel(), generators, x.device))
                outputs.append(x)
        ctx.scales = [dropout_scale(p) if generators is not None and p > 0 else None for p in dropouts]
        ctx.save_for_backward(*outputs, *weights)
        return x

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        outputs, weights = saved[: len(saved) // 2], saved[len(saved) // 2 :]
        n = len(weights)
        grad_weights, grad_biases = [None] * n, [None] * n

        def weight_and_bias_grads(i: int, grad: torch.Tensor) -> None:
            if ctx.needs_input_grad[3 + i]:
                grad_weights[i] = torch.bmm(outputs[i].transpose(1, 2), grad)
            if ctx.needs_input_grad[3 + n + i]:
                grad_biases[i] = grad.sum(1, keepdim=True)

        for i in range(n - 1, 0, -1):
            weight_and_bias_grads(i, grad)
            grad = torch.ops.aten.threshold_backward(torch.bmm(grad, weights[i].transpose(1, 2)), outputs[i], 0)
            if ctx.scales[i - 1] is not None:
                grad = grad.mul_(ctx.scales[i - 1])
        weight_and_bias_grads(0, grad)
        grad_x = torch.bmm(grad, weights[0].transpose(1, 2)) if ctx.needs_input_grad[0] else None  # images: none
        return (grad_x, None, None, *grad_weights, *grad_biases)


def packed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-seed mean cross-entropy: logits (S, B, C), targets (S, B) -> (S,)."""
    s, b, c = logits.shape
    return F.cross_entropy(logits.reshape(s * b, c), targets.reshape(s * b), reduction="none").view(s, b).mean(1)
