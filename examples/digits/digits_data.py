"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn: no download) as an
initsweep dataset: `load(**kwargs) -> (x_train, y_train, x_test, y_test)`."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits


def load(test_fraction: float = 0.2, seed: int = 0):
    """Pixels scaled to [0, 1] as float32 rows of 64, labels 0..9 as int64; a fixed random test split."""
    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]
