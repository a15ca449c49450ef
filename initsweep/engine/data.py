"""Datasets as preloaded tensors: read once, split once, then indexed by the training loop.

A per-sample `DataLoader` + `ToTensor` trial took 23 s here, a preloaded one 4-5 s, so every split is
one float tensor in memory. FashionMNIST is read by torchvision from a cache folder (`INITSWEEP_DATA`,
default `~/.cache/initsweep`). The embedded default fills that cache from Debian's
`dataset-fashion-mnist` files (or the `.gz` files in `INITSWEEP_DATA_SOURCE`); elsewhere torchvision
downloads into it.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from initsweep.catalog.datasets import DATASETS, DatasetInfo
from initsweep.config import ConfigError, DataConfig

__all__ = ["Data", "DataError", "Split", "cache_dir", "load_configured", "load_data", "load_raw", "source_dir"]


class DataError(ConfigError):
    """The dataset could not be found or fetched; the message names the paths tried and the fix."""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    """float32 images, (N, C, H, W), pixels in [0, 1] unless normalized."""
    y: torch.Tensor
    """int64 labels, (N,)."""

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Data:
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: torch.device | str) -> Data:
        return Data(self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes)


def _torchvision_class(spec: DatasetInfo) -> type[datasets.MNIST]:
    return getattr(datasets, spec.torchvision_name)


def cache_dir() -> Path:
    return Path(os.environ.get("INITSWEEP_DATA", "~/.cache/initsweep")).expanduser()


def source_dir(spec: DatasetInfo) -> Path:
    """Where the dataset's raw `.gz` files are looked for: `INITSWEEP_DATA_SOURCE`, else the package's folder."""
    return Path(os.environ.get("INITSWEEP_DATA_SOURCE", spec.local_dir)).expanduser()


def _raw_names(spec: DatasetInfo) -> list[str]:
    return [filename for filename, _md5 in _torchvision_class(spec).resources]


def _extract_local(spec: DatasetInfo, raw_folder: Path) -> bool:
    """Extract the system package's `.gz` files into torchvision's raw folder; False if absent."""
    sources = [source_dir(spec) / name for name in _raw_names(spec)]
    if not all(p.is_file() for p in sources):
        return False
    raw_folder.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dest = raw_folder / src.stem
        if dest.is_file():
            continue
        tmp = dest.with_suffix(f".tmp{os.getpid()}")
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        tmp.replace(dest)  # atomic: concurrent trials never read a half-written file
    return True


@functools.cache
def load_raw(name: str) -> tuple[Split, Split]:
    """The dataset's full train and test sets as float tensors in [0, 1], read once per process."""
    spec = DATASETS[name]
    root = cache_dir()
    raw_folder = root / spec.torchvision_name / "raw"
    have = all((raw_folder / Path(n).stem).is_file() for n in _raw_names(spec))
    download = not have and not _extract_local(spec, raw_folder)
    try:
        sets = [_torchvision_class(spec)(str(root), train=t, download=download) for t in (True, False)]
    except (RuntimeError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{name}: no data files in {source_dir(spec)} or {raw_folder}, and the download failed "
            f"({reason}); install them with: apt-get install -y {spec.apt_package}"
        ) from None
    train, test = (Split(s.data.unsqueeze(1).float().div_(255), s.targets.long()) for s in sets)
    return train, test


def stratified_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation that interleaves the classes: any prefix is (nearly) class-balanced."""
    perm = torch.randperm(len(labels), generator=generator)
    shuffled = labels[perm]
    rank = torch.empty(len(labels), dtype=torch.long)
    for c in shuffled.unique():
        mask = shuffled == c
        rank[mask] = torch.arange(int(mask.sum()))
    return perm[torch.argsort(rank, stable=True)]


def load_data(
    dataset: str = "fashion_mnist",
    *,
    limit: int | None = None,
    val_fraction: float = 0.2,
    normalize: bool = False,
    split_seed: int = 0,
) -> Data:
    """Train/validation split of the train set (stratified, from `split_seed`) and the full test set.

    `limit` keeps a class-balanced subset of the train set before splitting, for quick runs.
    `normalize` standardizes pixels with the train split's mean and std.
    """
    full, test = load_raw(dataset)
    order = stratified_order(full.y, torch.Generator().manual_seed(split_seed))
    order = order[: limit or len(order)]
    n_val = round(len(order) * val_fraction)
    train_idx, val_idx = order[n_val:], order[:n_val]
    train = Split(full.x[train_idx], full.y[train_idx])
    val = Split(full.x[val_idx], full.y[val_idx])
    if normalize:
        mean, std = train.x.mean(), train.x.std()
        train, val, test = (Split((s.x - mean) / std, s.y) for s in (train, val, test))
    return Data(train, val, test, DATASETS[dataset].num_classes)


def load_configured(config: DataConfig) -> Data:
    """The data a sweep's `data` section describes, loaded once and shared by all its trials."""
    return load_data(
        config.dataset,
        limit=config.limit,
        val_fraction=config.val_fraction,
        normalize=config.normalize,
        split_seed=config.split_seed,
    )
