"""The training loop on real FashionMNIST subsets: reproducibility, seed independence, divergence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from initsweep.config import TrialConfig
from initsweep.engine.train import DIVERGED_ACCURACY, DIVERGED_LOSS, run_trial, seed_streams

METRICS = {"train_loss", "last_batch_loss", "val_loss", "val_accuracy"}


def trial(**changes) -> TrialConfig:
    raw = {"seeds": [0], "row": {"scheme": "uniform_fan_in", "c": 1}, "train": {"epochs": 2}}
    raw.update(changes)
    return TrialConfig.model_validate(raw)


def as_tuple(seed_result):
    return (seed_result.epochs, seed_result.step_losses, seed_result.test_accuracy, seed_result.diverged_step)


LOSS_RTOL = 1e-4
"""Across code paths (packed or alone, resumed or straight) floats may differ in the last bits: batched
matmuls of different batch counts, or another CPU's kernels, round differently. Losses agree within this
relative tolerance; accuracies (counts of argmax hits) within ACCURACY_ATOL points."""
ACCURACY_ATOL = 0.5


def assert_same_within_tolerance(a, b) -> None:
    """Two runs of one seed through different code paths: the same metrics up to float rounding."""
    assert a.diverged_step == b.diverged_step and len(a.epochs) == len(b.epochs)
    for ea, eb in zip(a.epochs, b.epochs, strict=True):
        assert ea.keys() == eb.keys()
        for key in ea:
            tol = {"abs": ACCURACY_ATOL} if "accuracy" in key else {"rel": LOSS_RTOL}
            assert ea[key] == pytest.approx(eb[key], **tol), key
    assert [s for s, _ in a.step_losses] == [s for s, _ in b.step_losses]
    assert [v for _, v in a.step_losses] == pytest.approx([v for _, v in b.step_losses], rel=LOSS_RTOL)
    assert a.test_accuracy == pytest.approx(b.test_accuracy, abs=ACCURACY_ATOL)


def test_per_epoch_metrics_and_k_step_losses(small_data):
    seen = []
    result = run_trial(
        trial(seeds=[0, 1], train={"epochs": 2, "log_every": 5, "val_train_mode": True}),
        small_data,
        on_epoch=lambda epoch, seeds, _: seen.append((epoch, [dict(s.epochs[-1]) for s in seeds])),
    )
    assert [e for e, _ in seen] == [1, 2] and all(len(m) == 2 for _, m in seen)
    for i, s in enumerate(result.seeds):
        assert [len(e) for e in s.epochs] == [5, 5]
        assert set(s.epochs[0]) == METRICS | {"val_accuracy_train_mode"}
        assert s.epochs == [seen[0][1][i], seen[1][1][i]]  # the callback saw what the result holds
        steps_per_epoch = math.ceil(len(small_data.train) / 100)
        assert [step for step, _ in s.step_losses] == list(range(5, 2 * steps_per_epoch + 1, 5))
        assert s.epochs[-1]["val_accuracy"] > 40  # it learns: 10% is chance
        assert 0 <= s.test_accuracy <= 100 and not s.diverged


def test_same_config_and_seeds_give_identical_metrics(small_data):
    cfg = trial(seeds=[0, 1], row={"scheme": "uniform", "low": -0.5, "high": 0.5})
    first, second = run_trial(cfg, small_data), run_trial(cfg, small_data)
    assert [as_tuple(s) for s in first.seeds] == [as_tuple(s) for s in second.seeds]


def test_a_seed_does_not_depend_on_its_trial_mates(small_data):
    alone = run_trial(trial(seeds=[3], train={"epochs": 1, "val_train_mode": True}), small_data).seeds[0]
    again = run_trial(trial(seeds=[3], train={"epochs": 1, "val_train_mode": True}), small_data).seeds[0]
    grouped = run_trial(trial(seeds=[1, 2, 3], train={"epochs": 1, "val_train_mode": True}), small_data).seeds
    assert as_tuple(alone) == as_tuple(again)  # the same path twice: bit for bit
    assert_same_within_tolerance(alone, grouped[2])  # packed with others: equal up to rounding
    assert as_tuple(grouped[0]) != as_tuple(grouped[1])  # other seeds, other results


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {"seeds": [0, 1], "train": {"epochs": 3, "val_train_mode": True}},  # packed MLP seeds
        {"model": {"name": "cnn", "channels": [4], "hidden": 16}, "seeds": [0, 1], "train": {"epochs": 3}},
    ],
    ids=["packed-mlp", "cnn"],
)
def test_resuming_from_a_snapshot_gives_the_uninterrupted_metrics(small_data, tmp_path, changes):
    cfg = trial(**changes)
    straight = run_trial(cfg, small_data)
    saved = []
    run_trial(cfg, small_data, on_epoch=lambda epoch, seeds, snapshot: saved.append(snapshot()) if epoch == 1 else 0)
    torch.save(saved[0], tmp_path / "state.pt")  # as a Tune checkpoint holds it
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    seen = []
    resumed = run_trial(cfg, small_data, resume=state, on_epoch=lambda epoch, seeds, _: seen.append(epoch))
    assert seen == [2, 3]  # epoch 1 is not trained again
    for a, b in zip(resumed.seeds, straight.seeds, strict=True):
        assert_same_within_tolerance(a, b)
    final = []
    run_trial(cfg, small_data, on_epoch=lambda epoch, seeds, snapshot: final.append(snapshot()))
    assert run_trial(cfg, small_data, resume=final[-1]).seeds[0].test_accuracy == straight.seeds[0].test_accuracy


def test_seed_streams_are_distinct_and_stable():
    assert seed_streams(3) == seed_streams(3)
    assert len(set(seed_streams(3))) == 3 and seed_streams(3) != seed_streams(4)


def test_divergence_is_a_finite_result(small_data):
    cfg = trial(seeds=[0, 1], train={"epochs": 2, "optimizer": "sgd", "lr": 1e4, "val_train_mode": True})
    result = run_trial(cfg, small_data)
    for s in result.seeds:
        assert s.diverged and s.diverged_step >= 1
        assert len(s.epochs) == 2
        for epoch in s.epochs:
            assert all(math.isfinite(v) for v in epoch.values())
            assert epoch["val_accuracy"] == DIVERGED_ACCURACY and epoch["val_loss"] == DIVERGED_LOSS
        assert s.test_accuracy == DIVERGED_ACCURACY
        assert all(step < s.diverged_step for step, _ in s.step_losses)


def test_sgd_and_cnn_train(small_data):
    cnn = trial(
        model={"name": "cnn", "channels": [4, 8], "hidden": 32},
        train={"epochs": 1, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9},
    )
    result = run_trial(cnn, small_data)
    assert result.seeds[0].epochs[0]["val_accuracy"] > 30
    assert [row["layer"].split(":")[1] for row in result.seeds[0].diagnostics] == [
        "Conv2d",
        "Conv2d",
        "Linear",
        "Linear",
    ]


def test_init_diagnostics_show_why_constant_schemes_fail(small_data):
    def diag(scheme):
        return run_trial(trial(row=scheme, train={"epochs": 1}), small_data).seeds[0].diagnostics

    zeros, ones = diag({"scheme": "constant", "value": 0}), diag({"scheme": "constant", "value": 1})
    rule, he = diag("uniform_fan_in"), diag("kaiming_normal")
    assert [r["layer"] for r in rule] == ["1:Linear", "4:Linear", "7:Linear"]
    assert all(r["act_std"] == 0 and r["weight_std"] == 0 for r in zeros)
    assert zeros[0]["grad_norm"] == 0 and zeros[1]["grad_norm"] == 0  # nothing flows back into hidden layers
    act_mean_ones = [abs(r["act_mean"]) for r in ones]
    assert act_mean_ones[1] > 100 * act_mean_ones[0] and act_mean_ones[2] > 100 * act_mean_ones[1]  # grows ~fan-in

    def shrink(rows):  # output std of each layer over the one before it
        return [b["act_std"] / a["act_std"] for a, b in itertools.pairwise(rows)]

    # U(-1/sqrt(n), 1/sqrt(n)) has variance 1/(3n): after a ReLU the signal shrinks ~sqrt(6) per layer;
    # He init (variance 2/n) keeps it in scale.
    assert all(0.25 < r < 0.65 for r in shrink(rule)), shrink(rule)
    assert all(0.65 < r < 1.5 for r in shrink(he)), shrink(he)
    assert all(r["grad_norm"] > 0 for r in rule + he)


@pytest.mark.slow
def test_reproduces_the_founding_table_on_full_data():
    """Full 48k/12k data, 2 epochs, one seed: inside the ranges DESIGN §1 measured (widened by 1.5 pp)."""
    from initsweep.engine.data import load_data

    data = load_data("fashion_mnist")
    cfg = {"train": {"val_train_mode": True}}
    centered = run_trial(trial(row={"scheme": "uniform", "low": -0.5, "high": 0.5}, **cfg), data).seeds[0].final
    rule = run_trial(trial(row={"scheme": "uniform_fan_in", "c": 1}, **cfg), data).seeds[0].final
    # published (dropout on): 74.9 / 75.8 and 84.8 / 85.2; ours measured 75.2-75.9 and 85.1-85.4
    assert 73.7 <= centered["val_accuracy_train_mode"] <= 77.4
    assert 79.1 <= centered["val_accuracy"] <= 83.4  # eval mode: the sound number is higher
    assert 83.6 <= rule["val_accuracy_train_mode"] <= 86.9
    assert 84.6 <= rule["val_accuracy"] <= 87.8


@pytest.mark.parametrize("model", [{"name": "mlp"}, {"name": "cnn", "channels": [4], "hidden": 16}])
def test_training_leaves_the_callers_global_rng_alone(small_data, model):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run_trial(trial(model=model, train={"epochs": 1, "val_train_mode": True}), small_data)
    assert torch.equal(torch.rand(3), expected)
