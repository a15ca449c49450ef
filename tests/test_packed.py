"""Packed seeds train exactly as they would alone: same init, data order, dropout stream, optimizer; the
hand-written packed MLP and, for any model, the folded one (seeds side by side in the channels) and the
vmapped one (torch.func)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from initsweep.catalog.models import CNNConfig, MLPConfig
from initsweep.config import TrialConfig
from initsweep.engine import train as train_module
from initsweep.engine.data import Data, Split
from initsweep.engine.folded import FoldedModel, fold_failure
from initsweep.engine.models import BUILDERS, build_model
from initsweep.engine.packed import DROPOUT_BITS, PackedMLP, apply_dropout, dropout, packable, packed_cross_entropy
from initsweep.engine.train import PackingFallbackWarning, run_trial
from initsweep.engine.vmapped import VmappedModel


@pytest.fixture(scope="module")
def small_data(small_data: Data) -> Data:
    """conftest's 2,000 images, with the first 2,000 test images rather than all 10,000: every comparison here
    evaluates each seed, packed and alone, on the test set."""
    test = Split(small_data.test.x[:2000], small_data.test.y[:2000])
    return Data(small_data.train, small_data.val, test, small_data.num_classes)


ROOT = Path(__file__).resolve().parents[1]


def trial(seeds, **train) -> TrialConfig:
    return TrialConfig.model_validate(
        {"seeds": seeds, "row": "xavier_uniform", "train": {"epochs": 2, "val_train_mode": True} | train}
    )


def test_a_seed_trains_the_same_packed_or_alone(small_data):
    packed = run_trial(trial(list(range(6)), log_every=1), small_data).seeds
    for seed in (0, 4):
        alone = run_trial(trial([seed], log_every=1), small_data).seeds[0]
        first_ten = zip(alone.step_losses[:10], packed[seed].step_losses[:10], strict=True)
        assert all(a == b or abs(a[1] - b[1]) <= 1e-4 * abs(a[1]) for a, b in first_ten)
        for key, value in alone.final.items():
            assert packed[seed].final[key] == pytest.approx(value, abs=0.5 if "accuracy" in key else 1e-2), key


def test_packed_forward_equals_each_seeds_own_model():
    models = [build_model(MLPConfig(), (1, 28, 28), 10) for _ in range(3)]
    packed = PackedMLP(models)
    x = torch.rand(3, 7, 1, 28, 28)
    out = packed(x)  # no generators: eval mode, no dropout
    for s, model in enumerate(models):
        model.eval()
        assert torch.allclose(out[s], model(x[s]), atol=1e-5)
        assert torch.allclose(packed.unpack(models[0], s)(x[s]), out[s], atol=1e-5)


def test_a_diverged_seed_stays_in_its_own_slice():
    models = [build_model(MLPConfig(), (1, 28, 28), 10) for _ in range(2)]
    packed = PackedMLP(models)
    with torch.no_grad():
        packed.weights[0][1].fill_(float("nan"))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    losses = packed_cross_entropy(packed(torch.rand(2, 5, 1, 28, 28), gens), torch.zeros(2, 5, dtype=torch.long))
    assert math.isfinite(losses[0].item()) and math.isnan(losses[1].item())
    losses[torch.tensor([True, False])].sum().backward()
    assert all(torch.isfinite(w.grad[0]).all() for w in packed.weights)


def test_dropout_keeps_1_minus_p_and_the_mean():
    x = torch.ones(4, 200, 500)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    out = dropout(x, 0.2, gens)
    kept = (out > 0).float().mean().item()
    # 400k Bernoulli draws: sd of the kept share is 0.00063; 5 sd tolerance
    assert kept == pytest.approx(0.8, abs=5 * math.sqrt(0.8 * 0.2 / x.numel()))
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    again = dropout(x, 0.2, [torch.Generator().manual_seed(i) for i in range(4)])
    assert torch.equal(out, again) and not torch.equal(out[0], out[1])  # per-seed streams


@pytest.mark.parametrize("p", [0.0, 1e-6, 0.2, 0.5, 0.9, 0.9999, 1.0])
def test_dropout_keeps_exactly_the_units_whose_draw_reaches_p_and_scales_them(p):
    """The int16 mask keeps a unit iff its draw's low 15 bits are >= round(p * 2^15), as a comparison
    would (every 16-bit draw value tried, so the edges of the int16 arithmetic are covered), and its
    gradient is the same mask."""
    draws = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(1, -1)
    levels = 1 << DROPOUT_BITS
    dropped = round(p * levels)
    x = torch.rand(1, draws.shape[1], dtype=torch.float64, requires_grad=True)
    out = apply_dropout(x, p, draws)
    keep = (draws & (levels - 1)) >= dropped
    scale = levels / (levels - dropped) if dropped < levels else 0.0
    assert torch.equal(out, torch.where(keep, x * scale, 0.0))
    out.sum().backward()
    assert torch.equal(x.grad, keep.to(x.dtype) * scale)


def _steps(packed: PackedMLP, forward, x: torch.Tensor, steps: int = 4) -> list[torch.Tensor]:
    """`steps` Adam steps of `packed` through `forward`, seed 1 left out of the loss from the third step (as
    a diverged seed is); each step's logits and, at the end, the weights and the input's gradient."""
    gens = [torch.Generator().manual_seed(10 + s) for s in range(packed.n_seeds)]
    optimizer = torch.optim.Adam(packed.parameters(), lr=1e-2)
    y = torch.randint(0, 10, x.shape[:2], generator=torch.Generator().manual_seed(0))
    x = x.clone().requires_grad_()
    seen = []
    for step in range(steps):
        logits = forward(x, gens)
        losses = packed_cross_entropy(logits, y)
        alive = torch.tensor([step < 2 or s != 1 for s in range(packed.n_seeds)])
        optimizer.zero_grad(set_to_none=True)
        losses[alive].sum().backward()
        optimizer.step()
        seen.append(logits.detach())
    return [*seen, *(t.detach() for t in packed.parameters()), x.grad]


@pytest.mark.parametrize(
    ("hidden", "p"),
    [([256, 128], 0.2), ([64], 0.0), ([32, 32, 32], 0.5), ([16], 0.9999), ([16], 1.0), ([], 0.2)],
)
def test_a_relu_mlp_trains_through_one_node_bit_for_bit_as_layer_by_layer(hidden, p):
    """`ReluStack`'s hand-written backward gives what autograd gives over the same layers, to the last bit:
    logits, weights after Adam, the input's gradient; with dropout from none to every unit, a seed left
    out of the loss, and no hidden layer at all."""

    def model() -> nn.Sequential:
        layers, width = [nn.Flatten()], 784
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), *([nn.Dropout(p)] if p else [])]
            width = h
        return nn.Sequential(*layers, nn.Linear(width, 10))

    models = [model() for _ in range(3)]
    one_node, per_layer = PackedMLP(models), PackedMLP(models)
    assert one_node.relu_dropouts == [p] * len(hidden)
    x = torch.rand(3, 20, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert type(one_node(x).grad_fn).__name__ == "ReluStackBackward"
    ours = _steps(one_node, one_node, x)
    reference = _steps(per_layer, per_layer.forward_per_layer, x)
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert torch.equal(a, b)


def test_only_relu_mlps_take_the_hand_written_backward():
    def dropouts(activation, dropout=0.2):
        model = build_model(MLPConfig(activation=activation, dropout=dropout), (1, 28, 28), 10)
        return PackedMLP([model]).relu_dropouts

    assert dropouts("relu") == [0.2, 0.2] and dropouts("relu", 0.0) == [0.0, 0.0]
    assert dropouts("tanh") is None and dropouts("gelu") is None
    dropout_first = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 10))
    relu_last = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10), nn.ReLU())
    assert PackedMLP([dropout_first]).relu_dropouts is None and PackedMLP([relu_last]).relu_dropouts is None


@pytest.mark.parametrize(
    "layers",
    [
        lambda: build_model(MLPConfig(), (1, 28, 28), 10),  # ReLU, dropout 0.2: `ReluStack`
        lambda: build_model(MLPConfig(activation="tanh", hidden=[32, 16, 8], dropout=0.5), (1, 28, 28), 10),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 10)),
        lambda: build_model(MLPConfig(dropout=0.0), (1, 28, 28), 10),  # no dropout: both modes alike
    ],
)
def test_validation_in_both_modes_runs_the_shared_layers_once_and_gives_forwards_numbers(layers):
    """`logits_dropout_off_and_on` (validation with dropout off and on, the layers before the first dropout
    run once) gives `forward`'s logits both ways to the last bit, and draws each seed's dropout stream as far
    as `forward` does."""
    packed = PackedMLP([layers() for _ in range(3)])
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(1)).expand(3, 20, 1, 28, 28)
    ours, theirs = ([torch.Generator().manual_seed(s) for s in (5, 6, 7)] for _ in range(2))
    with torch.no_grad():
        off, on = packed.logits_dropout_off_and_on(x, ours)
        assert torch.equal(off, packed(x)) and torch.equal(on, packed(x, theirs))
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(ours, theirs, strict=True))
    assert torch.equal(off, on) == all(p == 0 for kind, p in packed.steps if kind == "dropout")


def test_only_mlps_pack():
    assert packable(build_model(MLPConfig(hidden=[64], activation="tanh"), (1, 28, 28), 10))
    assert not packable(build_model(CNNConfig(), (1, 28, 28), 10))


# --- packed seeds for any model: torch.func (stack_module_state, functional_call, vmap) ---------------


class Residual(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x))))), then ReLU: the ResNet basic block."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return torch.relu(x + self.body(x))


def conv_bn(cfg, input_shape, num_classes, dropout: float = 0.0):
    """A small conv + BatchNorm2d net (stride-2 convs keep it quick on 2 cores). Its convs have no bias, as
    usual before a BatchNorm: such a bias gets a gradient of pure rounding noise, which Adam scales up to
    full steps, so its value (and the running mean) would differ between any two code paths."""
    layers = [nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()]
    layers += [nn.Conv2d(4, 8, 3, stride=2, bias=False)]
    layers += [nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU()]
    return nn.Sequential(*layers, *([nn.Dropout(dropout)] if dropout else []), nn.Linear(32, num_classes))


def residual(cfg, input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Residual(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


@functools.cache
def example_module(name: str, folder: str):
    """A module of an example folder, loaded once (its classes must stay the same objects)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resnet_example(cfg, input_shape, num_classes):
    """The ResNet example's own model (examples/resnet/resnet_model.py), at test widths."""
    return example_module("resnet_model", "resnet").build(input_shape, num_classes, widths=(8, 16, 16))


def concatenated(cfg, input_shape, num_classes):
    return Concatenated(num_classes)  # defined below, with the fold checks


def mlp_without_dropout(cfg, input_shape, num_classes):
    return build_model(MLPConfig(hidden=[64, 32], dropout=0.0), input_shape, num_classes)


class ItemInForward(nn.Module):
    """Data-dependent control flow: vmap cannot run it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        x = self.fc(x.flatten(1))
        return x * 2 if x.sum().item() > 0 else x


@pytest.fixture
def model_as_cnn(monkeypatch):
    """Build `model.name: cnn` trials with a test's own factory (the registries are left alone)."""

    def use(factory):
        monkeypatch.setitem(BUILDERS, "cnn", factory)
        monkeypatch.setattr(train_module, "packable", lambda model: False)  # the generic path for MLPs too

    return use


def cnn_trial(seeds, **train) -> TrialConfig:
    raw = {"seeds": seeds, "row": "kaiming_normal", "model": {"name": "cnn"}}
    return TrialConfig.model_validate(raw | {"train": {"epochs": 1, "log_every": 1} | train})


def snapshots(cfg, data, **kw):
    seen = []
    result = run_trial(cfg, data, on_epoch=lambda epoch, seeds, snapshot: seen.append(snapshot()), **kw)
    return result, seen[-1]


@pytest.mark.parametrize(
    ("factory", "pack"),
    [
        (mlp_without_dropout, True),
        (conv_bn, True),
        (conv_bn, "vmap"),
        (residual, True),
        (residual, "vmap"),
        (resnet_example, True),
        (resnet_example, "vmap"),
        (concatenated, True),
    ],
    ids=lambda v: {True: "packed", "vmap": "vmapped"}.get(v, getattr(v, "__name__", v)),
)
def test_packed_seeds_train_as_one_seed_at_a_time(small_data, model_as_cnn, factory, pack):
    model_as_cnn(factory)
    cfg = cnn_trial([0, 1, 2], epochs=2)
    packed, packed_state = snapshots(cfg, small_data, pack=pack)
    alone, alone_state = snapshots(cfg, small_data, pack=False)
    assert len(packed_state["runs"]) == 1 and len(alone_state["runs"]) == 3  # one packed run, three seed runs
    for p, a in zip(packed.seeds, alone.seeds, strict=True):
        first_ten = zip(p.step_losses[:10], a.step_losses[:10], strict=True)
        assert all(sp == sa and lp == pytest.approx(la, rel=1e-4) for (sp, lp), (sa, la) in first_ten)
        assert p.final["val_accuracy"] == pytest.approx(a.final["val_accuracy"], abs=0.5)
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.5)
    buffers = packed_state["runs"][0]["model"]["buffers"]
    assert any(k.endswith("running_mean") for k in buffers) == (factory is not mlp_without_dropout)
    for name, stacked in buffers.items():  # each seed's own BatchNorm running statistics, after 2 epochs of
        for s, run in enumerate(alone_state["runs"]):  # float drift (up to 3e-3 on the ResNet example)
            assert torch.allclose(stacked[s].double(), run["model"][name].double(), rtol=1e-2, atol=1e-2), name


def kinds(cfg, data, **kw) -> list[str]:
    """The kind of model each of the trial's runs trains."""
    runs = train_module._runs(cfg, data, torch.device("cpu"), kw.get("pack"), None)
    return ["one seed" if isinstance(run, train_module._SeedRun) else type(run.model).__name__ for run in runs]


def test_conv_nets_fold_and_other_models_vmap(small_data, model_as_cnn):
    model_as_cnn(residual)
    assert kinds(cnn_trial([0, 1]), small_data) == ["FoldedModel"]
    assert kinds(cnn_trial([0, 1]), small_data, pack="vmap") == ["VmappedModel"]
    assert kinds(cnn_trial([0, 1]), small_data, pack=False) == ["one seed", "one seed"]
    model_as_cnn(mlp_without_dropout)  # no convolution: vmapped (faster than folded for an MLP)
    assert kinds(cnn_trial([0, 1]), small_data) == ["VmappedModel"]


def test_mlps_pack_hand_written_unless_vmap_is_asked_for(small_data):
    mlp = TrialConfig.model_validate({"seeds": [0, 1], "row": "kaiming_normal"})
    assert kinds(mlp, small_data) == ["PackedMLP"] and kinds(mlp, small_data, pack="vmap") == ["VmappedModel"]


class Concatenated(nn.Module):
    """Two conv branches concatenated over the channels (as DenseNet and Inception do), ending in
    log_softmax(dim=1) (as many MNIST examples do): folded, both are taken per seed."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False)
        self.b = nn.Conv2d(1, 2, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))
        return F.log_softmax(self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)), dim=1)


class Normalized(nn.Module):
    """Features divided by their norm over dim 1: folded, the norm would run over every seed's features."""

    def __init__(self):
        super().__init__()
        self.net = conv_bn(None, None, 10)

    def forward(self, x):
        out = self.net(x)
        return out / out.norm(dim=1, keepdim=True)


def group_norm_net(cfg, input_shape, num_classes):
    """A conv net with a GroupNorm: a layer with weights that has no folded form."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, 2), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 13 * 13, num_classes))


def test_fold_failure_names_why_a_model_does_not_fold():
    x = torch.rand(4, 1, 28, 28)
    assert fold_failure(FoldedModel([conv_bn(None, None, 10) for _ in range(3)]), x) is None
    assert "differs from its own model's" in fold_failure(FoldedModel([Normalized() for _ in range(3)]), x)
    concatenated = FoldedModel([Concatenated() for _ in range(3)])
    assert fold_failure(concatenated, x) is None and concatenated.per_seed_ops
    with pytest.raises(ValueError, match=r"layer 1 \(GroupNorm\) has no folded form"):
        FoldedModel([group_norm_net(None, None, 10) for _ in range(2)])


def test_folded_model_draws_the_vmapped_models_dropout_masks():
    same = [conv_bn(None, None, 10, dropout=0.5) for _ in range(3)]
    folded, vmapped = FoldedModel(copy.deepcopy(same)), VmappedModel(copy.deepcopy(same))
    x = torch.rand(3, 6, 1, 28, 28)
    for model in (folded, vmapped):
        model.train()
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    out = folded(x, gens)
    again = vmapped(x, [torch.Generator().manual_seed(i) for i in range(3)])
    assert torch.allclose(out, again, atol=1e-5)
    for s in range(3):  # each seed's own model, its BatchNorm on its own batch
        own = folded.unpack(same[0], s).eval()
        folded.eval()
        assert torch.allclose(folded(x[s], None, shared=True)[s], own(x[s]), atol=1e-5)


def test_vmapped_dropout_differs_per_seed_and_repeats_bit_for_bit(small_data, model_as_cnn):
    model_as_cnn(lambda c, s, n: conv_bn(c, s, n, dropout=0.5))
    cfg = cnn_trial([0, 1], epochs=2, val_train_mode=True)
    first, second = run_trial(cfg, small_data, pack=True), run_trial(cfg, small_data, pack=True)
    assert [as_tuple(s) for s in first.seeds] == [as_tuple(s) for s in second.seeds]
    # the masks: identical weights in every seed, different masks
    same = conv_bn(None, None, 10, dropout=0.5)
    model = VmappedModel([copy.deepcopy(same) for _ in range(3)])
    x = small_data.train.x[:8]
    model.eval(train_mode=True)
    out = model(x, [torch.Generator().manual_seed(i) for i in range(3)], shared=True)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    model.eval()
    out = model(x, None, shared=True)
    assert torch.equal(out[0], out[1]) and torch.allclose(out[0], same.eval()(x), atol=1e-5)


def test_vmapped_mlp_gets_the_hand_written_packed_mlps_dropout_masks(small_data, model_as_cnn):
    """An MLP with dropout: PackedMLP and the vmapped model draw the same masks from each seed's stream."""
    cfg = TrialConfig.model_validate({"seeds": [0, 1], "row": "xavier_uniform", "train": {"epochs": 1, "log_every": 1}})
    hand = run_trial(cfg, small_data).seeds
    model_as_cnn(None)  # packable -> False: the same MLP config through the vmapped path
    generic = run_trial(cfg, small_data).seeds
    for h, g in zip(hand, generic, strict=True):
        assert [v for _, v in h.step_losses] == pytest.approx([v for _, v in g.step_losses], rel=1e-4)
        assert h.final["val_accuracy"] == pytest.approx(g.final["val_accuracy"], abs=0.5)


def test_vmapped_resume_gives_the_uninterrupted_metrics(small_data, model_as_cnn):
    model_as_cnn(lambda c, s, n: conv_bn(c, s, n, dropout=0.3))
    cfg = cnn_trial([0, 1], epochs=2, val_train_mode=True, log_every=4)
    straight = run_trial(cfg, small_data, pack=True)
    saved = []
    run_trial(cfg, small_data, pack=True, on_epoch=lambda e, seeds, snapshot: saved.append(snapshot()) if e == 1 else 0)
    resumed = run_trial(cfg, small_data, pack=True, resume=saved[0])
    assert [as_tuple(s) for s in resumed.seeds] == [as_tuple(s) for s in straight.seeds]


def test_a_model_vmap_cannot_run_trains_one_seed_at_a_time_and_says_so(small_data, model_as_cnn):
    model_as_cnn(lambda c, s, n: ItemInForward())
    notes = []
    cfg = cnn_trial([0, 1])
    with pytest.warns(PackingFallbackWarning, match="does not vmap"):
        result = run_trial(cfg, small_data, on_note=notes.append)
    assert len(notes) == 1 and "one at a time" in notes[0] and "\n" not in notes[0]
    alone = run_trial(cfg, small_data, pack=False)
    assert [as_tuple(s) for s in result.seeds] == [as_tuple(s) for s in alone.seeds]


def test_a_conv_net_that_does_not_fold_trains_one_seed_at_a_time_on_the_cpu_and_says_so(small_data, model_as_cnn):
    """vmap's grouped convolutions are slower on the CPU than the seeds' own: a conv net that does not fold
    trains one seed at a time there (one line says why), with exactly the metrics of `pack=False`;
    `pack=True` vmaps it."""
    model_as_cnn(group_norm_net)
    notes = []
    cfg = cnn_trial([0, 1])
    with pytest.warns(PackingFallbackWarning, match="does not fold"):
        default = run_trial(cfg, small_data, on_note=notes.append, on_epoch=lambda e, seeds, snap: notes.append(snap()))
    assert len(notes[-1]["runs"]) == 2  # two seed runs, not one packed run
    assert notes[0] == (
        "initsweep: cnn does not fold (layer 1 (GroupNorm) has no folded form), and vmapped its convolutions"
        " run slower on the CPU; training its seeds one at a time"
    )
    alone = run_trial(cfg, small_data, pack=False)
    assert [as_tuple(s) for s in default.seeds] == [as_tuple(s) for s in alone.seeds]
    assert kinds(cfg, small_data, pack=True) == ["VmappedModel"]


def test_vmapped_unpack_gives_each_seeds_own_model():
    models = [residual(None, None, 10) for _ in range(2)]
    originals = [copy.deepcopy(m).eval() for m in models]
    packed = VmappedModel(models)
    x = torch.rand(5, 1, 28, 28)
    packed.eval()
    out = packed(x, None, shared=True)
    for s, original in enumerate(originals):
        assert torch.allclose(out[s], original(x), atol=1e-5)
        assert torch.allclose(packed.unpack(original, s).eval()(x), original(x), atol=1e-6)


def as_tuple(s):
    return (s.epochs, s.step_losses, s.test_accuracy, s.diverged_step)


def test_folded_batchnorm_matches_float64_in_channels_last():
    """On the CPU the folded model runs channels-last, where PyTorch's BatchNorm kernel sums the statistics
    naively (about 5e-5 off on this batch); ours give each seed its float64 output and running statistics
    within 1e-5, and its weight gradients (sums over 78,400 values) within 1e-4."""
    torch.manual_seed(0)
    models = [
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Flatten()) for _ in range(3)
    ]
    for m in models:  # each seed its own conv and BatchNorm weights
        nn.init.normal_(m[0].weight)
        nn.init.uniform_(m[1].weight, 0.5, 2.0)
        nn.init.uniform_(m[1].bias, -1.0, 1.0)
    references = [copy.deepcopy(m).double().train() for m in models]
    folded = FoldedModel(copy.deepcopy(models))
    folded.train()
    x = torch.rand(100, 1, 28, 28) + 3.0  # a large mean: the statistics' hard case
    out = folded(x, None, shared=True)
    out.square().sum().backward()
    for s, ref in enumerate(references):
        expected = ref(x.double())
        expected.square().sum().backward()
        assert (out[s].double() - expected).abs().max() < 1e-5
        for name, grad in (("1.weight", ref[1].weight.grad), ("1.bias", ref[1].bias.grad)):
            assert torch.allclose(folded.params[name].grad[s].double(), grad, rtol=1e-4, atol=1e-4 * grad.abs().max())
        assert torch.allclose(folded.buffers["1.running_mean"][s].double(), ref[1].running_mean, atol=1e-6)
        assert torch.allclose(folded.buffers["1.running_var"][s].double(), ref[1].running_var, rtol=1e-5)
        assert folded.buffers["1.num_batches_tracked"][s] == 1
