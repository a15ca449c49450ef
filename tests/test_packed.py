"""Packed seeds train exactly as they would alone: same init, data order, dropout stream, optimizer; the
hand-written packed MLP and, for any model, the vmapped one (torch.func)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from initsweep.catalog.models import CNNConfig, MLPConfig
from initsweep.config import TrialConfig
from initsweep.engine import train as train_module
from initsweep.engine.models import BUILDERS, build_model
from initsweep.engine.packed import PackedMLP, dropout, packable, packed_cross_entropy
from initsweep.engine.train import PackingFallbackWarning, run_trial
from initsweep.engine.vmapped import VmappedModel


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


@pytest.mark.parametrize("factory", [mlp_without_dropout, conv_bn, residual], ids=["mlp", "conv-bn", "residual"])
def test_vmapped_seeds_train_as_one_seed_at_a_time(small_data, model_as_cnn, factory):
    model_as_cnn(factory)
    cfg = cnn_trial([0, 1, 2], epochs=2)
    packed, packed_state = snapshots(cfg, small_data, pack=True)  # conv nets too (on the CPU: not by default)
    alone, alone_state = snapshots(cfg, small_data, pack=False)
    assert len(packed_state["runs"]) == 1 and len(alone_state["runs"]) == 3  # one vmapped run, three seed runs
    for p, a in zip(packed.seeds, alone.seeds, strict=True):
        first_ten = zip(p.step_losses[:10], a.step_losses[:10], strict=True)
        assert all(sp == sa and lp == pytest.approx(la, rel=1e-4) for (sp, lp), (sa, la) in first_ten)
        assert p.final["val_accuracy"] == pytest.approx(a.final["val_accuracy"], abs=0.5)
        assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.5)
    buffers = packed_state["runs"][0]["model"]["buffers"]
    assert any(k.endswith("running_mean") for k in buffers) == (factory is not mlp_without_dropout)
    for name, stacked in buffers.items():  # each seed's own BatchNorm running statistics
        for s, run in enumerate(alone_state["runs"]):
            assert torch.allclose(stacked[s].double(), run["model"][name].double(), rtol=1e-4, atol=1e-4), name


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


def test_a_conv_net_on_the_cpu_trains_one_seed_at_a_time_by_default_and_says_so(small_data, model_as_cnn):
    """vmap's grouped convolutions are slower on the CPU than the seeds' own: by default a conv net's seeds
    train one at a time there (one line says so), with exactly the metrics of `pack=False`."""
    model_as_cnn(conv_bn)
    notes = []
    cfg = cnn_trial([0, 1])
    default = run_trial(cfg, small_data, on_note=notes.append, on_epoch=lambda e, seeds, snap: notes.append(snap()))
    assert len(notes[-1]["runs"]) == 2  # two seed runs, not one vmapped run
    assert notes[0] == "initsweep: cnn has convolutions; on the CPU its seeds train one at a time"
    alone = run_trial(cfg, small_data, pack=False)
    assert [as_tuple(s) for s in default.seeds] == [as_tuple(s) for s in alone.seeds]


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
