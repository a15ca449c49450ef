"""The dataset registry's facts: name -> `DatasetInfo` (sizes, classes, where the files come from; no torch).

The config checks a sweep's data sizes against these; `initsweep.engine.data` loads the tensors.

Your own datasets: `dataset: import` with a `target` import path, a name given to `register_dataset` in
this process, or an entry point of an installed package (group `initsweep.datasets`). Each is
`load(**kwargs) -> (x_train, y_train, x_test, y_test)`; their sizes are known, and checked, once loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from initsweep.catalog import IMPORT, Registered, entry_point_targets, import_path

__all__ = ["DATASETS", "ENTRY_POINT_GROUP", "REGISTERED_DATASETS", "DatasetInfo", "dataset_target", "register_dataset"]


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

ENTRY_POINT_GROUP = "initsweep.datasets"
REGISTERED_DATASETS: dict[str, Registered] = {}
"""Datasets given to `register_dataset` in this process: name -> loader and its import path."""


def register_dataset(name: str, loader: Callable[..., Any]) -> None:
    """Make `data: {dataset: NAME, kwargs: {...}}` load `loader(**kwargs)`, which returns
    `(x_train, y_train, x_test, y_test)` (tensors or arrays: float inputs, int labels 0..C-1). The data is
    loaded by the driver alone (Ray's workers get the tensors), so any callable does."""
    if not isinstance(name, str) or not name or name in DATASETS or name == IMPORT:
        raise ValueError(f"register_dataset: {name!r} is a built-in dataset name or not a name")
    if not callable(loader):
        raise TypeError(f"register_dataset: loader {loader!r} is not callable")
    REGISTERED_DATASETS[name] = Registered(loader, import_path(loader))


def dataset_target(name: str) -> str | None:
    """Where a fresh process finds a registered or entry-point dataset's loader, else None."""
    registered = REGISTERED_DATASETS.get(name)
    if registered is not None:
        return registered.target
    return entry_point_targets(ENTRY_POINT_GROUP).get(name)
