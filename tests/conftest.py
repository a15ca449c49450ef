"""Shared fixtures: real FashionMNIST subsets, loaded once per test session."""

from __future__ import annotations

import pytest
import torch

from initsweep.data import Data, load_data

ROOT_CONFIGS = "sweeps"


@pytest.fixture(scope="session")
def small_data() -> Data:
    """2,000 class-balanced FashionMNIST train images (1,600 train / 400 val) and the full test set."""
    return load_data("fashion_mnist", limit=2000)


@pytest.fixture(autouse=True)
def _two_threads():
    """The test machine has 2 cores; keep torch from oversubscribing them."""
    torch.set_num_threads(2)
