"""The metric names a trial measures, from every task (`initsweep.catalog.tasks`): here, the lowest layer,
so that the config's objective and the result records name the same metrics without the config importing
the results."""

from __future__ import annotations

from initsweep.catalog.tasks import TASKS

__all__ = ["EPOCH_METRICS", "FINAL_METRICS", "TEST_METRICS"]

EPOCH_METRICS = tuple(dict.fromkeys(m for t in TASKS.values() for m in t.epoch_metrics))
"""Measured for every seed after every epoch, by some task (`val_accuracy_train_mode` only when
`train.val_train_mode` is on)."""
TEST_METRICS = tuple(dict.fromkeys(m for t in TASKS.values() for m in t.test_metrics))
"""Measured on the test split after the last epoch, by some task."""
FINAL_METRICS = tuple(dict.fromkeys(m for t in TASKS.values() for m in t.final_metrics))
"""The report's columns: a seed's last-epoch metrics and its test metrics."""
