"""What a trial produces, defined once: metric names (from `initsweep.catalog.metrics`), the per-seed and
per-trial records, the mean over seeds, and the rule for "best".

The engine fills these records, the trainable ships them to the driver as JSON, MLflow stores them and
gives them back, and the report reads them; every layer above uses these types and no copies of them.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from initsweep.catalog.metrics import EPOCH_METRICS, FINAL_METRICS, TEST_METRICS

if TYPE_CHECKING:
    from initsweep.config import TrialConfig

__all__ = [
    "EPOCH_METRICS",
    "FINAL_METRICS",
    "TEST_METRICS",
    "DataLineage",
    "SeedResult",
    "TrialResult",
    "aggregate",
    "best",
    "epoch_report",
    "rank_key",
    "seeds_from_json",
    "seeds_to_json",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DataLineage:
    """Which data a sweep trained on, as MLflow's dataset inputs record it: computed once by the driver
    from the loaded tensors (`initsweep.engine.data.lineage`), logged on every trial and seed run."""

    name: str
    """The dataset's name (`fashion_mnist`, a registered name) or its loader's import path."""
    source: str
    """Where it was read from: the raw files' folder, or `module:function` with its kwargs."""
    digest: str
    """A hash of the split tensors themselves (shapes and bytes): equal digests, equal data and split."""
    sizes: dict[str, int]
    """Examples in train, val and test."""
    settings: dict[str, Any]
    """The split's settings: split_seed, limit, val_fraction, normalize."""

    def profile(self) -> dict[str, Any]:
        return {"sizes": self.sizes} | self.settings


@dataclass
class SeedResult:
    """One replicate seed of one trial."""

    seed: int
    epochs: list[dict[str, float]] = field(default_factory=list)
    """Per epoch, the task's metrics (`initsweep.catalog.tasks`): train_loss (epoch mean), last_batch_loss,
    val_loss, and val_accuracy (%, eval mode; val_accuracy_train_mode with dropout on, when asked for) or
    a language model's val_bits_per_token."""
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, training loss) every `train.log_every` steps, for loss curves."""
    test: dict[str, float] = field(default_factory=dict)
    """The task's test metrics (test_accuracy, or an LM's test_loss), measured after the last epoch (the
    diverged penalties for a diverged seed); empty if stopped early."""
    diverged_step: int | None = None
    diagnostics: list[dict[str, float | str]] = field(default_factory=list)
    """Per-layer statistics at init (`initsweep.engine.diagnostics`)."""
    seconds: float = 0.0
    lrs: dict[str, float] = field(default_factory=dict)
    """The learning rate of each param group (`all` under sp; muP's `input`, `hidden`, `output` ...)."""

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None

    @property
    def test_accuracy(self) -> float | None:
        """A classifier's test accuracy (%), once measured."""
        return self.test.get("test_accuracy")

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics, plus the test metrics once measured."""
        return self.epochs[-1] | self.test

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SeedResult:
        d = dict(d)
        if "test_accuracy" in d:  # a record written before the test metrics became a mapping
            accuracy = d.pop("test_accuracy")
            d["test"] = {} if accuracy is None else {"test_accuracy": accuracy}
        return cls(**(d | {"step_losses": [tuple(x) for x in d["step_losses"]]}))


def seeds_to_json(seeds: Iterable[SeedResult]) -> str:
    return json.dumps([s.to_dict() for s in seeds])


def seeds_from_json(text: str | None) -> list[SeedResult]:
    return [SeedResult.from_dict(d) for d in json.loads(text)] if text else []


@dataclass
class TrialResult:
    """One trial config and its seeds; on Ray also Tune's trial id, the node, and the error if it failed."""

    config: TrialConfig
    seeds: list[SeedResult]
    seconds: float = 0.0
    trial_id: str = ""
    error: str | None = None
    """The error's text when the trial failed after its retries (then `seeds` may be empty)."""
    node_id: str | None = None

    @property
    def name(self) -> str:
        """The trial's name: its row and grid values (`kaiming_normal(auto) depth=16`)."""
        return self.config.name

    @property
    def row_name(self) -> str:
        """The config row it ran, the same under every grid combination."""
        return self.config.row.name

    @property
    def scheme(self) -> str:
        return self.config.row.scheme

    @property
    def params(self) -> dict[str, float | int | str]:
        return dict(self.config.row.params)

    @property
    def axes(self) -> dict[str, Any]:
        return dict(self.config.axes)

    @property
    def n_diverged(self) -> int:
        return sum(s.diverged for s in self.seeds)

    def mean(self, metric: str) -> float:
        """The mean over seeds of a final metric (the objective, for the objective's metric)."""
        return statistics.fmean(s.final[metric] for s in self.seeds)


def aggregate(seeds: Sequence[SeedResult], epoch: int | None = None) -> dict[str, float]:
    """Mean (`metric`) and sample std (`metric_std`) over seeds of each metric at `epoch` (1-based),
    or of the final metrics with the test metrics when `epoch` is None; plus `n` and `diverged`."""
    rows = [s.final if epoch is None else s.epochs[epoch - 1] for s in seeds]
    out: dict[str, float] = {"n": len(rows), "diverged": sum(s.diverged for s in seeds)}
    for key in rows[0]:
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def rank_key(mode: str, value: float, diverged: bool) -> tuple[bool, float]:
    """Sort key, best first: by `value` in the objective's `mode`; anything with a diverged seed last."""
    return (diverged, -value if mode == "max" else value)


def best(items: Iterable[T], mode: str, value: Callable[[T], float], diverged: Callable[[T], bool]) -> T | None:
    """The best item by `value`; an item with a diverged seed never counts as best."""
    eligible = [i for i in items if not diverged(i)]
    return min(eligible, key=lambda i: rank_key(mode, value(i), False), default=None)


def epoch_report(metric: str, epoch: int, seeds: list[SeedResult]) -> dict[str, Any]:
    """What a trial reports after `epoch`: means and stds over its seeds, the test metrics after the last
    epoch, `metric` as the objective, and every seed's history so far."""
    metrics = aggregate(seeds, epoch)
    if seeds[0].test:  # the last epoch
        metrics |= {k: v for k, v in aggregate(seeds).items() if k.removesuffix("_std") in TEST_METRICS}
    metrics["objective"] = metrics[metric]
    metrics["epoch"] = epoch
    metrics["seed_results"] = seeds_to_json(seeds)
    return metrics
