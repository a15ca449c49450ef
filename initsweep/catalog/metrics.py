"""The metric names a trial measures: here, the lowest layer, so that the config's objective and the
result records name the same metrics without the config importing the results."""

from __future__ import annotations

__all__ = ["EPOCH_METRICS", "FINAL_METRICS"]

EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss", "last_batch_loss", "val_accuracy_train_mode")
"""Measured for every seed after every epoch (the last only when `train.val_train_mode` is on)."""
FINAL_METRICS = ("val_accuracy", "val_accuracy_train_mode", "test_accuracy", "train_loss", "last_batch_loss")
"""The report's columns: a seed's last-epoch metrics and its test accuracy."""
