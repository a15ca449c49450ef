"""(K) The packed train step's levers, each measured against the engine's own step in one run:
`python bench/step.py [--seeds 8] [--steps 120] [--json PATH]`, or as part of `bench/bench.py`.

Every variant trains the seed MLP (784-256-128-10, ReLU, dropout 0.2, Adam lr 1e-3) packed 8 seeds x 100
images per step on FashionMNIST's training images, from the same weights and batches, with the engine's
`PackedMLP`; only the lever named changes:

- `engine`: the engine's step as `initsweep.engine.train` runs it (each seed's batch gathered with
  `index_select`, the MLP as one autograd node with its backward written out (`ReluStack`: `baddbmm`
  forward, ReLU in place, dropout as a float mask from int bits), per-seed loss, `tolist`, the sum, fused
  Adam, the lr schedule);
- `per-layer autograd`: the same layers recorded by autograd op by op (`PackedMLP.forward_per_layer`),
  as the engine ran them before: the same numbers bit for bit, more kernels and bookkeeping;
- `foreach Adam`: `torch.optim.Adam(foreach=True)` instead of `fused=True`;
- `Adam (for loop)`: neither: the reference per-tensor loop;
- `bernoulli dropout`: masks from `bernoulli_` per seed instead of the int-bit draws;
- `where dropout`: the int-bit draws compared (`>=`, a bool mask) and applied with `torch.where`, as the
  engine did before: bool tensors run several times slower than int16 and float arithmetic here;
- `x[idx] gather`: each seed's batch gathered by advanced indexing instead of `index_select`;
- `shared batch`: one batch for all seeds (an expanded view, no copy) instead of each seed its own: a
  different experiment (seeds would share their data order), measured to show what the copy costs;
- `no schedule`: no `LambdaLR` step (the Python work around the step);
- `compiled`: `torch.compile` (inductor) of the forward and loss, the dropout bits drawn outside it (so
  each seed keeps its own stream); its compile time is counted apart, and a failure to compile is a row
  saying so, not a crash;
- `matmuls alone`: the step's matrix products at its shapes and nothing else (`matmul_floor`);
- `Adam alone`: torch's fused Adam kernel over the packed weights and given gradients, nothing else
  (`BareAdam`: without `torch.optim.Adam`'s Python around it);
- `gather alone`: each seed's batch of images and labels gathered from the training set (`Split.rows`);
- `draws alone`: each seed's dropout bits drawn from its own generator, both hidden layers;
- `floor`: the four added: the work any packed step of this experiment does (its products, its optimizer,
  each seed its own batch and its own dropout stream), however little its activations, masks and loss cost;
- `floor in sequence`: the floor's work run as a step runs it, on the step's own weights and Adam state:
  each seed's batch gathered and dropout bits drawn, the forward products, the weight, bias and input
  gradients' products from a fixed output gradient, fused Adam (`BareAdam`); nothing else (no ReLU, masks,
  loss, autograd, schedule or optimizer Python). Slower than the four parts alone: in a step they evict
  one another's data from the caches;
- `elementwise alone` (not in the floor): the engine's other kernels at the step's shapes, with nothing
  between them: ReLU, the masks built and applied, the loss and its gradient, ReLU's and dropout's
  backward, the bias gradients. The floor plus this is the engine less its Python and autograd.

Each row: milliseconds per step, the best of `--repeats` rounds (each round times every variant once, in
turn, `--steps` steps after a warm-up), and the share of the step's FLOP bound. The bound's matmul rate
(2048x2048 products) is measured in the same rounds, best of all, since this machine's speed drifts by
a fifth from one minute to the next: a rate taken apart from the rows would favour one side.

"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from initsweep.engine.data import Split  # noqa: E402
from initsweep.engine.packed import (  # noqa: E402
    DROPOUT_BITS,
    PackedMLP,
    apply_dropout,
    dropout_bits,
    dropout_scale,
)

LAYERS = (784, 256, 128, 10)
BATCH = 100


def step_flops(seeds: int, batch: int = BATCH) -> float:
    """FLOPs of one packed train step: forward 2 x weights per image; backward twice that, less the first
    layer's input gradient (the images need none)."""
    pairs = list(itertools.pairwise(LAYERS))
    forward = sum(2 * i * o for i, o in pairs)
    backward = 2 * forward - 2 * pairs[0][0] * pairs[0][1]
    return seeds * batch * (forward + backward)


def _models(seeds: int) -> list[torch.nn.Sequential]:
    from peers import seed_table_mlp

    return [seed_table_mlp("PyTorch default", s) for s in range(seeds)]


class BareAdam:
    """Adam as torch's fused kernel alone: `torch._fused_adam_` on the parameter lists, with none of
    `torch.optim.Adam`'s Python around it (its hooks, checks, grouping and state lookups). The floor's
    optimizer: what any Adam step costs at least with torch's kernels. The same numbers as
    `torch.optim.Adam(fused=True)` with its defaults, bit for bit (tests/test_bench.py)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]  # as torch keeps them, fused
        self.lr, self.betas, self.eps = lr, betas, eps

    @torch.no_grad()
    def step(self) -> None:
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(
            self.params,
            [p.grad for p in self.params],
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )


class Setup:
    """A packed model, its optimizer and schedule, per-seed batch orders and dropout streams: one variant."""

    def __init__(self, train: Split, seeds: int, adam: dict | None, schedule: bool = True):
        """`adam`: torch.optim.Adam's options, or None for `BareAdam` (the floor's: no schedule then)."""
        self.train, self.seeds = train, seeds
        self.model = PackedMLP(_models(seeds))
        if adam is None:
            self.optimizer, self.scheduler = BareAdam(self.model.parameters()), None
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, **adam)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0) if schedule else None
        self.generators = [torch.Generator().manual_seed(1000 + s) for s in range(seeds)]
        orders = [torch.Generator().manual_seed(s) for s in range(seeds)]
        self.perms = torch.stack([torch.randperm(len(train), generator=g) for g in orders])
        self.cursor = 0

    def batch(self) -> torch.Tensor:
        if self.cursor + BATCH > self.perms.shape[1]:
            self.cursor = 0
        idx = self.perms[:, self.cursor : self.cursor + BATCH]
        self.cursor += BATCH
        return idx

    def update(self, losses: torch.Tensor) -> None:
        losses.tolist()  # the engine reads every seed's loss each step (divergence, logging)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s, b, c = logits.shape
    return F.cross_entropy(logits.reshape(s * b, c), y.reshape(s * b), reduction="none").view(s, b).mean(1)


def engine_step(setup: Setup) -> None:
    x, y = setup.train.rows(setup.batch())
    setup.update(_loss(setup.model(x, setup.generators), y))


def per_layer_step(setup: Setup) -> None:
    x, y = setup.train.rows(setup.batch())
    setup.update(_loss(setup.model.forward_per_layer(x, setup.generators), y))


def indexed_step(setup: Setup) -> None:
    idx = setup.batch()
    setup.update(_loss(setup.model(setup.train.x[idx], setup.generators), setup.train.y[idx]))


def _masked_forward(setup: Setup, x: torch.Tensor, drop: Callable) -> torch.Tensor:
    x, m = x.flatten(2), setup.model
    for i, (w, b) in enumerate(zip(m.weights, m.biases, strict=True)):
        x = torch.baddbmm(b, x, w)
        if i < len(m.weights) - 1:
            x = drop(torch.relu(x))
    return x


def bernoulli_step(setup: Setup) -> None:
    def drop(x: torch.Tensor) -> torch.Tensor:
        mask = torch.empty_like(x)
        for s, g in enumerate(setup.generators):
            mask[s].bernoulli_(0.8, generator=g)
        return x * mask / 0.8

    x, y = setup.train.rows(setup.batch())
    setup.update(_loss(_masked_forward(setup, x, drop), y))


def where_step(setup: Setup) -> None:
    levels = 1 << DROPOUT_BITS
    dropped = round(0.2 * levels)

    def drop(x: torch.Tensor) -> torch.Tensor:
        draws = dropout_bits(x[0].numel(), setup.generators, x.device)
        return torch.where((draws & (levels - 1)).view_as(x) >= dropped, x * (levels / (levels - dropped)), 0.0)

    x, y = setup.train.rows(setup.batch())
    setup.update(_loss(_masked_forward(setup, x, drop), y))


def shared_step(setup: Setup) -> None:
    x, y = setup.train.rows(setup.batch()[0])
    x, y = x.unsqueeze(0).expand(setup.seeds, *x.shape), y.unsqueeze(0).expand(setup.seeds, BATCH)
    setup.update(_loss(setup.model(x, setup.generators), y))


def compiled_loss() -> Callable:
    """The forward and loss as one function of the weights, the batch and the dropout draws, for
    `torch.compile`: the draws come from each seed's generator outside the compiled graph."""

    def loss(weights, biases, x, y, draws):
        h = x.flatten(2)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(weights) - 1:
                h = apply_dropout(torch.relu(h), 0.2, draws[i])
        return _loss(h, y)

    return torch.compile(loss, dynamic=False)


def make_compiled_step(fn: Callable) -> Callable[[Setup], None]:
    def step(setup: Setup) -> None:
        x, y = setup.train.rows(setup.batch())
        m = setup.model
        draws = [dropout_bits(BATCH * w.shape[-1], setup.generators, "cpu") for w in list(m.weights)[:-1]]
        setup.update(fn(list(m.weights), list(m.biases), x, y, draws))

    return step


def sequence_floor(setup: Setup) -> None:
    """A step of the floor's work in a step's order, on the step's own state: gather, dropout draws, the
    products forward and back from a fixed output gradient, the bias sums, fused Adam (`BareAdam` when the
    setup has it, and no schedule then). Nothing else."""
    x, _ = setup.train.rows(setup.batch())
    weights, biases = list(setup.model.weights), list(setup.model.biases)
    for w in weights[:-1]:
        dropout_bits(BATCH * w.shape[-1], setup.generators, "cpu")
    with torch.no_grad():
        grads = _products(x.flatten(2), weights, biases)
    for w, b, (w_grad, b_grad) in zip(weights, biases, grads, strict=True):
        w.grad, b.grad = w_grad, b_grad
    setup.optimizer.step()
    if setup.scheduler is not None:
        setup.scheduler.step()


def _products(x: torch.Tensor, weights: list, biases: list | None = None, out_grad: Callable = torch.ones_like):
    """A packed MLP's matrix products alone: forward (`baddbmm` with biases, else `bmm`), then backward from
    `out_grad(logits)`: per layer (weight gradient, bias gradient or None); no input gradient for `x`."""
    inputs = [x]
    for i, w in enumerate(weights):
        inputs.append(torch.bmm(inputs[-1], w) if biases is None else torch.baddbmm(biases[i], inputs[-1], w))
    grad, grads = out_grad(inputs[-1]), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        grads[layer] = (
            torch.bmm(inputs[layer].transpose(1, 2), grad),
            None if biases is None else grad.sum(1, keepdim=True),
        )
        if layer:
            grad = torch.bmm(grad, weights[layer].transpose(1, 2))
    return grads


def matmul_floor(seeds: int) -> Callable[[Setup | None], None]:
    """A step of the step's matrix products alone, at its shapes, nothing else: 3 forward `bmm`s,
    3 weight gradients and 2 input gradients (the images need none). What any packed step costs at least
    on this machine: these shapes (100-row products, 8 of them batched) run below the 2048x2048 rate."""
    sizes = list(itertools.pairwise(LAYERS))
    ws = [torch.randn(seeds, i, o) for i, o in sizes]
    x = torch.randn(seeds, BATCH, LAYERS[0])

    return lambda _: _products(x, ws, out_grad=torch.randn_like)


def adam_alone(seeds: int) -> Callable[[Setup | None], None]:
    """A step of fused Adam alone over the packed seed MLP's weights, their gradients already there: one
    read of weights, gradients and both moments and one write of three, the rest of any step's floor."""
    params = list(PackedMLP(_models(seeds)).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = BareAdam(params)
    return lambda _: optimizer.step()


def gather_alone(train: Split, seeds: int) -> Callable[[Setup | None], None]:
    """A step's gather alone: each seed's batch of images and labels, as the engine takes it."""
    setup = Setup(train, seeds, {"fused": True})
    return lambda _: train.rows(setup.batch())


def draws_alone(seeds: int) -> Callable[[Setup | None], None]:
    """A step's dropout draws alone: each hidden layer's bits, each seed from its own generator."""
    generators = [torch.Generator().manual_seed(1000 + s) for s in range(seeds)]
    return lambda _: [dropout_bits(BATCH * width, generators, "cpu") for width in LAYERS[1:-1]]


def elementwise_alone(seeds: int) -> Callable[[Setup | None], None]:
    """A step's kernels other than its products, optimizer, gather and draws, as the engine runs them, with
    no Python or autograd between: per hidden layer ReLU in place and the dropout mask built and applied;
    the loss and its gradient; per hidden layer `threshold_backward` and the scale; per layer the bias sum."""
    widths = LAYERS[1:]
    hidden = [torch.randn(seeds, BATCH, w) for w in widths[:-1]]
    draws = [torch.randint(-(2**15), 2**15, (seeds, BATCH * w), dtype=torch.int16) for w in widths[:-1]]
    grads = [torch.randn(seeds, BATCH, w) for w in widths]
    logits = torch.randn(seeds, BATCH, widths[-1], requires_grad=True)
    y = torch.randint(0, widths[-1], (seeds, BATCH))
    scale = dropout_scale(0.2)

    def kernels() -> None:
        outputs = [apply_dropout(h.clamp_min_(0), 0.2, d) for h, d in zip(hidden, draws, strict=True)]
        torch.autograd.grad(_loss(logits, y).sum(), logits)
        for g, out in zip(grads[:-1], outputs, strict=True):  # the hidden layers'
            torch.ops.aten.threshold_backward(g, out, 0).mul_(scale)
        for g in grads:
            g.sum(1, keepdim=True)

    return lambda _: kernels()


def big_product() -> Callable[[], float]:
    """One 2048x2048 fp32 product, returning the GFLOP/s it ran at: the bound's matmul rate."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b

    def rate() -> float:
        start = time.perf_counter()
        a @ b
        return 2 * 2048**3 / (time.perf_counter() - start) / 1e9

    return rate


def time_steps(step: Callable[[Setup | None], None], setup: Setup | None, steps: int, repeats: int) -> float:
    """Seconds per step: the best of `repeats` runs of `steps` steps, after 10 warm-up steps (`setup`: the
    variant's state, None for `matmul_floor`)."""
    for _ in range(10):
        step(setup)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step(setup)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def sweep_floor(models: int, steps: int, cores: int = 2, steps_timed: int = 120, repeats: int = 5) -> dict:
    """A lower bound on the wall time of a sweep that trains `models` seed-table MLPs for `steps` steps
    each on `cores` cores with torch's kernels: the floor in sequence per model-step (`sequence_floor`,
    nothing but its products, bare fused Adam, gathers and draws), at the better of two arrangements: one
    thread per core, 5 seeds a process (as our trials run), or all cores on one process of 8 seeds. Each
    is timed alone on the machine, so without the memory bandwidth two trials share; validation, the test
    set and every start and end cost are left out: a sweep takes longer. A bound for these arrangements
    and torch's kernels, not for a matrix-product kernel of one's own."""
    from initsweep.config import DataConfig
    from initsweep.engine.data import load_configured

    threads_before = torch.get_num_threads()
    train = load_configured(DataConfig()).train

    def floor_s(threads: int, seeds: int) -> float:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        return time_steps(sequence_floor, Setup(train, seeds, None), steps_timed, repeats)

    trial_seeds, process_seeds = 5, 8
    try:
        per_trial, per_process = floor_s(1, trial_seeds), floor_s(cores, process_seeds)
    finally:
        torch.set_num_threads(threads_before)
    # Wall seconds per model-step: a trial's seeds on one thread, every core running such a trial; or one
    # process's seeds on all cores.
    per_model_step = min(per_trial / trial_seeds / cores, per_process / process_seeds)
    return {
        "models": models,
        "steps": steps,
        "cores": cores,
        "floor_ms_1_thread_5_seeds": per_trial * 1e3,
        "floor_ms_all_threads_8_seeds": per_process * 1e3,
        "per_model_step_ms": per_model_step * 1e3,
        "bound_s": models * steps * per_model_step,
    }


def step_rows(seeds: int = 8, steps: int = 120, repeats: int = 5) -> dict:
    """(K) every lever's ms/step against the engine's, and the step's FLOP bound."""
    from initsweep.config import DataConfig
    from initsweep.engine.data import load_configured

    torch.manual_seed(0)
    train = load_configured(DataConfig()).train
    variants: list[tuple[str, Callable[[Setup], None], dict, bool]] = [
        ("engine (fused Adam)", engine_step, {"fused": True}, True),
        ("per-layer autograd", per_layer_step, {"fused": True}, True),
        ("foreach Adam", engine_step, {"foreach": True}, True),
        ("Adam (for loop)", engine_step, {"foreach": False}, True),
        ("bernoulli dropout", bernoulli_step, {"fused": True}, True),
        ("where dropout (bool)", where_step, {"fused": True}, True),
        ("x[idx] gather", indexed_step, {"fused": True}, True),
        ("shared batch", shared_step, {"fused": True}, True),
        ("no schedule", engine_step, {"fused": True}, False),
    ]
    timed = [(name, step, Setup(train, seeds, adam, schedule)) for name, step, adam, schedule in variants]
    try:
        start = time.perf_counter()
        fn = compiled_loss()
        setup = Setup(train, seeds, {"fused": True})
        make_compiled_step(fn)(setup)  # the first call compiles
        compile_s = time.perf_counter() - start
        timed.append(("compiled (inductor)", make_compiled_step(fn), setup))
        failure = None
    except Exception as err:  # a compiler failure is a result of this row
        failure = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    timed.append(("matmuls alone", matmul_floor(seeds), None))
    timed.append(("Adam alone", adam_alone(seeds), None))
    timed.append(("gather alone", gather_alone(train, seeds), None))
    timed.append(("draws alone", draws_alone(seeds), None))
    timed.append(("floor in sequence", sequence_floor, Setup(train, seeds, None)))
    timed.append(("elementwise alone", elementwise_alone(seeds), None))
    # Round-robin: each round times every variant once, so a slow stretch of the machine hits them alike.
    best = dict.fromkeys((name for name, _, _ in timed), float("inf"))
    rate, gflops = big_product(), 0.0
    for _ in range(repeats):
        gflops = max(gflops, rate())
        for name, step, setup in timed:
            best[name] = min(best[name], time_steps(step, setup, steps, 1))
    bound_ms = step_flops(seeds) / (gflops * 1e9) * 1e3
    parts = ("matmuls alone", "Adam alone", "gather alone", "draws alone")
    in_sequence, elementwise = best.pop("floor in sequence"), best.pop("elementwise alone")
    best["floor (the four above)"] = sum(best[name] for name in parts)
    best["floor in sequence"] = in_sequence
    best["elementwise alone"] = elementwise
    rows = [{"variant": name, "ms_per_step": seconds * 1e3} for name, seconds in best.items()]
    for r in rows:
        if r["variant"] == "compiled (inductor)":
            r["compile_s"] = compile_s
        if r["variant"] in (*parts[1:], "elementwise alone"):
            r["part"] = True  # a piece of a step: no share of a whole step's bound
    if failure:
        at = next(i for i, r in enumerate(rows) if r["variant"] == "matmuls alone")
        rows.insert(at, {"variant": "compiled (inductor)", "error": failure})
    base = rows[0]["ms_per_step"]
    for r in rows:
        if "ms_per_step" in r and not r.get("part"):
            r["x_engine"] = base / r["ms_per_step"]
            r["of_bound"] = bound_ms / r["ms_per_step"]
    return {"seeds": seeds, "batch": BATCH, "gflops": gflops, "bound_ms": bound_ms, "rows": rows}


def print_steps(k: dict) -> None:
    print(
        f"\n(K) the packed step, {k['seeds']} seeds x {k['batch']} images; its FLOP bound "
        f"{step_flops(k['seeds']) / 1e6:.0f} MFLOP at {k['gflops']:.0f} GFLOP/s = {k['bound_ms']:.2f} ms"
    )
    print(f"{'variant':<24} {'ms/step':>8} {'x engine':>9} {'of bound':>9}")
    for r in k["rows"]:
        if "error" in r:
            print(f"{r['variant']:<24} failed, the engine keeps its eager step: {r['error']}")
            continue
        if r.get("part"):
            print(f"{r['variant']:<24} {r['ms_per_step']:>8.2f}")
            continue
        extra = f"  (compile {r['compile_s']:.1f} s)" if "compile_s" in r else ""
        print(f"{r['variant']:<24} {r['ms_per_step']:>8.2f} {r['x_engine']:>9.2f} {r['of_bound']:>9.0%}{extra}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads (bench.py's (C) uses 2; a trial 1)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    k = step_rows(args.seeds, args.steps, args.repeats)
    print_steps(k)
    if args.json:
        Path(args.json).write_text(json.dumps(k, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
