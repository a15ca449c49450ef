"""The dataset registry's facts: name -> `DatasetInfo` (sizes, classes, where the files come from; no torch).

The config checks a sweep's data sizes against these; `initsweep.engine.data` loads the tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATASETS", "DatasetInfo"]


@dataclass(frozen=True)
class DatasetInfo:
    torchvision_name: str
    """The class in `torchvision.datasets` that reads (or downloads) it."""
    train_size: int
    num_classes: int
    input_shape: tuple[int, int, int]
    local_dir: str
    """Where a system package ships the raw `.gz` files (the embedded default)."""
    apt_package: str


DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "FashionMNIST",
        train_size=60_000,
        num_classes=10,
        input_shape=(1, 28, 28),
        local_dir="/usr/share/datasets/fashion-mnist",
        apt_package="dataset-fashion-mnist",
    ),
}
