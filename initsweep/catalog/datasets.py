"""The dataset registry's facts: name -> `DatasetInfo` (its task, sizes, classes, where the files come
from; no torch).

The config checks a sweep's data sizes against these; `initsweep.engine.data` loads the tensors. Two
kinds: images for `task: classification` (FashionMNIST), and text for `task: language_model` (the
`fortunes` corpus), cut into windows of `data.context` byte tokens. Any UTF-8 file is text too:
`dataset: text_file` with `path: FILE` (its size is known once the config reads it).

Your own datasets: `dataset: import` with a `target` import path, a name given to `register_dataset` in
this process, or an entry point of an installed package (group `initsweep.datasets`). Each is
`load(**kwargs) -> (x_train, y_train, x_test, y_test)`, images and labels or token windows and their next
tokens (as the sweep's `task` says); their sizes are known, and checked, once loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from initsweep.catalog import IMPORT, Registered, entry_point_targets, import_path
from initsweep.catalog.tasks import CLASSIFICATION, LANGUAGE_MODEL

__all__ = [
    "BYTE_VOCAB",
    "DATASETS",
    "ENTRY_POINT_GROUP",
    "REGISTERED_DATASETS",
    "TEXT_FILE",
    "DatasetInfo",
    "dataset_target",
    "register_dataset",
]

TEXT_FILE = "text_file"
"""The dataset that reads any UTF-8 file, `path`, as a language model's text."""
BYTE_VOCAB = 256
"""A text's vocabulary: its UTF-8 bytes are its tokens (no tokenizer file to ship or fit, any UTF-8 text
reads, and every split, every file and every corpus shares the same 256 symbols)."""


@dataclass(frozen=True)
class DatasetInfo:
    task: str
    """The task it is data for (`initsweep.catalog.tasks`): classification (images) or language_model (text)."""
    train_size: int
    """Images of its train set (its test set is apart), or tokens (UTF-8 bytes) of a whole text corpus,
    before `limit` and the split."""
    num_classes: int
    """Classes; for text, the vocabulary (`BYTE_VOCAB`)."""
    input_shape: tuple[int, ...]
    """One image's shape (channels, height, width); `()` for text, whose windows are `(data.context,)`."""
    local_dir: str
    """Where a system package ships the files (the embedded default): raw `.gz` images, or the text files."""
    apt_package: str
    torchvision_name: str | None = None
    """Images: the class in `torchvision.datasets` that reads (or downloads) it."""
    files: tuple[str, ...] = ()
    """The package's files in `local_dir`: text, read as one token stream in this order; images, MNIST's
    four raw `.gz` files (train images, train labels, test images, test labels)."""
    package_version: str | None = None
    """Text: the package version whose files add up to `train_size` bytes (another one is re-checked once
    loaded)."""

    @property
    def text(self) -> bool:
        return self.task == LANGUAGE_MODEL.name


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
"""The raw files of MNIST and the datasets laid out like it (FashionMNIST, KMNIST), as torchvision names them."""

_FORTUNE_NAMES = (
    "art ascii-art computers cookie debian definitions disclaimer drugs education ethnic food fortunes goedel "
    "humorists kids knghtbrd law linux linuxcookie literature love magic medicine men-women miscellaneous news "
    "paradoxum people perl pets platitudes politics pratchett riddles science songs-poems sports startrek tao "
    "translate-me wisdom work zippy"
)
_FORTUNE_FILES = tuple(_FORTUNE_NAMES.split())
"""The English cookie files of Debian's `fortunes` (43, with `fortunes-min`'s three), without their `.dat`
indexes and `.u8` links; other fortune packages (other languages, `off/`) add files beside them, never read."""

DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        CLASSIFICATION.name,
        train_size=60_000,
        num_classes=10,
        input_shape=(1, 28, 28),
        local_dir="/usr/share/datasets/fashion-mnist",
        apt_package="dataset-fashion-mnist",
        torchvision_name="FashionMNIST",
        files=MNIST_FILES,
    ),
    "fortunes": DatasetInfo(
        LANGUAGE_MODEL.name,
        train_size=2_576_674,
        num_classes=BYTE_VOCAB,
        input_shape=(),
        local_dir="/usr/share/games/fortunes",
        apt_package="fortunes",
        files=_FORTUNE_FILES,
        package_version="1:1.99.1-7.3",
    ),
}
"""Every built-in dataset: FashionMNIST's 60k train images (Debian's `dataset-fashion-mnist`), and the
fortune cookies of BSD fortune (Debian's `fortunes`, BSD licence): 2.6 MB of quotations, jokes, poems and
definitions, plain UTF-8 text, as 2,576,674 byte tokens."""

ENTRY_POINT_GROUP = "initsweep.datasets"
REGISTERED_DATASETS: dict[str, Registered] = {}
"""Datasets given to `register_dataset` in this process: name -> loader and its import path."""


def register_dataset(name: str, loader: Callable[..., Any]) -> None:
    """Make `data: {dataset: NAME, kwargs: {...}}` load `loader(**kwargs)`, which returns
    `(x_train, y_train, x_test, y_test)` (tensors or arrays: for classification float inputs and int labels
    0..C-1; for a language model int token windows (N, T) and their next tokens, the same shape). The data
    is loaded by the driver alone (Ray's workers get the tensors), so any callable does."""
    if not isinstance(name, str) or not name or name in DATASETS or name in (IMPORT, TEXT_FILE):
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
