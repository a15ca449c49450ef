"""A tiny language model of a user's own (`model.target: lm_modules:bigram`), for the task tests."""

from __future__ import annotations

from torch import nn


def bigram(input_shape, num_classes, width=16, dropout=0.1):
    """Token ids (B, T) -> next-token logits (B, T, vocab): an embedding, dropout, a readout."""
    return nn.Sequential(nn.Embedding(num_classes, width), nn.Dropout(dropout), nn.Linear(width, num_classes))
