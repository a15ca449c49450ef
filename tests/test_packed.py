"""Packed seeds train exactly as they would alone: same init, data order, dropout stream, optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from initsweep.catalog.models import CNNConfig, MLPConfig
from initsweep.config import TrialConfig
from initsweep.engine.models import build_model
from initsweep.engine.packed import PackedMLP, dropout, packable, packed_cross_entropy
from initsweep.engine.train import run_trial


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
