"""Tasks: classification and the language model through the same trainer, packed or one seed at a time."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from initsweep.catalog.tasks import TASKS as TASK_FACTS
from initsweep.config import ConfigError, SweepConfig, TrialConfig, parse_config
from initsweep.engine.data import Data, Split
from initsweep.engine.tasks import DIVERGED_LOSS, TASKS
from initsweep.engine.train import PackingFallbackWarning, run_trial

CONTEXT = 16
LM_METRICS = {"train_loss", "last_batch_loss", "val_loss", "val_bits_per_token"}


def windows(tokens: torch.Tensor) -> Split:
    n = (len(tokens) - 1) // CONTEXT
    x = tokens[: n * CONTEXT].view(n, CONTEXT)
    y = tokens[1 : n * CONTEXT + 1].view(n, CONTEXT)
    return Split(x.contiguous(), y.contiguous())


@pytest.fixture(scope="module")
def text_data() -> Data:
    """Real text (this package's own source), bytes as tokens, split into contiguous blocks."""
    text = b"".join(p.read_bytes() for p in sorted(Path("initsweep/engine").glob("*.py")))[:24_000]
    tokens = torch.tensor(list(text), dtype=torch.long)
    a, b = int(len(tokens) * 0.8), int(len(tokens) * 0.9)
    return Data(windows(tokens[:a]), windows(tokens[a:b]), windows(tokens[b:]), 256)


def lm_trial(**changes) -> TrialConfig:
    raw = {
        "seeds": [0, 1, 2],
        "task": "language_model",
        "model": {"name": "import", "target": "lm_modules:bigram"},
        "row": {"scheme": "normal", "mean": 0.0, "std": 0.02},
        "init": {"layers": {"types": ["Linear", "Embedding"]}},
        "train": {"epochs": 2, "batch_size": 32, "lr": 1e-2},
    }
    return TrialConfig.model_validate(raw | changes)


def test_every_task_has_its_torch_side_and_its_metrics_directions():
    assert TASKS.keys() == TASK_FACTS.keys()
    for name, task in TASKS.items():
        info = task.info
        assert info is TASK_FACTS[name] and info.objective in info.epoch_metrics
        assert set(info.intervals) <= set(info.epoch_metrics)
        assert all(info.mode(m) == ("max" if "accuracy" in m else "min") for m in info.final_metrics)


def test_the_lm_metrics_are_nats_and_bits_per_token():
    logits = torch.randn(2, 3, 5, 7)  # S=2 seeds, 3 windows of 5 tokens, 7 symbols
    y = torch.randint(0, 7, (2, 3, 5))
    task = TASKS["language_model"]
    by_hand = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), y.reshape(-1), reduction="none").view(2, 15)
    assert torch.allclose(task.loss(logits, y), by_hand.mean(1))
    sums = {k: v[1].item() for k, v in task.sums(logits, y).items()}
    metrics = task.metrics(sums, task.predictions(y), "val")
    assert metrics.keys() == {"val_loss", "val_bits_per_token"}
    assert metrics["val_loss"] == pytest.approx(by_hand[1].mean().item(), rel=1e-6)
    assert metrics["val_bits_per_token"] == pytest.approx(metrics["val_loss"] / math.log(2), rel=1e-9)


def test_a_language_model_trains_through_the_same_loop_packed_or_alone(text_data):
    """Without dropout (whose masks come from other streams packed and alone) the two paths agree; with
    it, a seed trains the same whichever seeds share its pack."""
    no_dropout = {"name": "import", "target": "lm_modules:bigram", "kwargs": {"dropout": 0.0}}
    trial = lm_trial(model=no_dropout)
    packed, alone = run_trial(trial, text_data), run_trial(trial, text_data, pack=False)
    uniform = math.log(256)
    for p, a in zip(packed.seeds, alone.seeds, strict=True):
        assert [set(e) for e in p.epochs] == [LM_METRICS] * 2 and set(p.test) == {"test_loss"}
        assert p.epochs[-1]["val_loss"] < 0.8 * uniform  # it learns the bytes' statistics
        for ep, ea in zip(p.epochs, a.epochs, strict=True):
            assert ep == pytest.approx(ea, rel=1e-4)
        assert p.test["test_loss"] == pytest.approx(a.test["test_loss"], rel=1e-4)
    assert len({s.epochs[-1]["val_loss"] for s in packed.seeds}) == 3  # three replicates, three results
    three, one = run_trial(lm_trial(), text_data), run_trial(lm_trial(seeds=[1]), text_data)
    for e1, e3 in zip(one.seeds[0].epochs, three.seeds[1].epochs, strict=True):
        assert e1 == pytest.approx(e3, rel=1e-5)
    again = run_trial(lm_trial(), text_data)
    assert [s.epochs for s in again.seeds] == [s.epochs for s in three.seeds]  # reproducible on the CPU


def test_a_diverging_language_model_is_a_result(text_data):
    trial = lm_trial(seeds=[0], row={"scheme": "normal", "mean": 0.0, "std": 1e30})
    seed = run_trial(trial, text_data).seeds[0]
    assert seed.diverged and seed.test == {"test_loss": DIVERGED_LOSS}
    assert all(e["val_loss"] == DIVERGED_LOSS and e["val_bits_per_token"] == DIVERGED_LOSS for e in seed.epochs)


def test_a_resumed_language_model_trains_as_an_uninterrupted_one(text_data):
    trial = lm_trial(seeds=[0, 1])
    snapshots = []
    straight = run_trial(trial, text_data, on_epoch=lambda e, s, snap: snapshots.append(snap()))
    resumed = run_trial(trial, text_data, resume=snapshots[0])
    assert [s.epochs for s in resumed.seeds] == [s.epochs for s in straight.seeds]
    assert [s.test for s in resumed.seeds] == [s.test for s in straight.seeds]


def sweep(**changes) -> dict:
    return {"name": "t", "seeds": [0], "schemes": [{"scheme": "pytorch_default"}]} | changes


def test_the_objective_follows_the_task():
    assert SweepConfig.model_validate(sweep()).objective.model_dump() == {"metric": "val_accuracy", "mode": "max"}
    lm = SweepConfig.model_validate(sweep(task="language_model", data=LM_DATA))
    assert lm.objective.model_dump() == {"metric": "val_loss", "mode": "min"}
    bits = SweepConfig.model_validate(
        sweep(task="language_model", data=LM_DATA, objective={"metric": "val_bits_per_token"})
    )
    assert bits.objective.mode == "min"


LM_DATA = {"dataset": "fortunes", "limit": 20_000, "context": 32}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"objective": {"metric": "val_accuracy"}},
            "objective.metric: val_accuracy is not measured by task language_model",
        ),
        (
            {"train": {"val_train_mode": True}},
            "train.val_train_mode: task language_model measures nothing with dropout on",
        ),
        ({"task": "translation"}, "task: input should be 'classification' or 'language_model'"),
    ],
)
def test_what_a_task_does_not_measure_is_refused(changes, message):
    raw = sweep(task="language_model", data=LM_DATA) | changes
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_on_the_cpu_a_transformers_seeds_train_one_at_a_time_and_say_why(text_data):
    """Vmapped, a transformer ran at 0.80x one seed at a time on the CPU (bench row (I)): the default there."""
    trial = lm_trial(
        seeds=[0, 1], model={"name": "gpt", "width": 16, "depth": 1, "heads": 2}, init={}, train={"epochs": 1}
    )
    notes = []
    with pytest.warns(PackingFallbackWarning, match="gpt has attention, and vmapped it trains slower on the CPU"):
        default = run_trial(trial, text_data, on_note=notes.append)
    alone = run_trial(trial, text_data, pack=False)
    assert len(notes) == 1 and [s.epochs for s in default.seeds] == [s.epochs for s in alone.seeds]
    packed = run_trial(trial, text_data, pack=True)  # still packs when asked
    for p, a in zip(packed.seeds, alone.seeds, strict=True):
        assert p.epochs[-1] == pytest.approx(a.epochs[-1], rel=1e-4)
