"""FashionMNIST from the Debian files (real data): the founding split, subsets, normalization, errors."""

from __future__ import annotations

import dataclasses
import gzip

import pytest
import torch

from initsweep.catalog.datasets import DATASETS
from initsweep.engine import data as data_mod
from initsweep.engine.data import DataError, load_data, load_raw


@pytest.fixture(scope="module")
def full():
    return load_data("fashion_mnist")


def test_founding_split_is_48k_12k_plus_10k_test(full):
    assert (len(full.train), len(full.val), len(full.test)) == (48_000, 12_000, 10_000)
    assert full.input_shape == (1, 28, 28) and full.num_classes == 10
    assert full.train.x.dtype == torch.float32 and full.train.y.dtype == torch.int64
    assert full.train.x.min().item() == 0.0 and full.train.x.max().item() == 1.0  # ToTensor() scale
    # train and validation are disjoint and together are the whole train set
    train_raw, _ = load_raw("fashion_mnist")
    key = lambda x: set(map(bytes, (x.flatten(1) * 255).round().to(torch.uint8).numpy()))  # noqa: E731
    assert len(key(full.train.x) | key(full.val.x)) == len(key(train_raw.x))


def test_validation_split_is_class_balanced(full):
    assert torch.bincount(full.val.y).tolist() == [1200] * 10


def test_split_seed_chooses_the_split_and_is_deterministic(full):
    same = load_data("fashion_mnist", limit=1000, split_seed=0)
    again = load_data("fashion_mnist", limit=1000, split_seed=0)
    other = load_data("fashion_mnist", limit=1000, split_seed=1)
    assert torch.equal(same.train.y, again.train.y) and torch.equal(same.val.x, again.val.x)
    assert not torch.equal(same.val.x, other.val.x)


def test_limit_takes_a_class_balanced_subset():
    d = load_data("fashion_mnist", limit=6000)
    assert (len(d.train), len(d.val), len(d.test)) == (4800, 1200, 10_000)
    assert torch.bincount(d.train.y).tolist() == [480] * 10


def test_normalize_standardizes_with_train_statistics():
    d = load_data("fashion_mnist", limit=6000, normalize=True)
    assert d.train.x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert d.train.x.std().item() == pytest.approx(1.0, abs=1e-4)
    assert abs(d.test.x.mean().item()) < 0.05  # the same shift, not the test set's own


def test_debian_files_are_extracted_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INITSWEEP_DATA", str(tmp_path))
    load_raw.cache_clear()
    try:
        train, test = load_raw("fashion_mnist")
    finally:
        load_raw.cache_clear()
    raw = tmp_path / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    src = DATASETS["fashion_mnist"].local_dir + "/train-labels-idx1-ubyte.gz"
    with gzip.open(src) as f:
        assert (raw / "train-labels-idx1-ubyte").read_bytes() == f.read()
    assert (len(train), len(test)) == (60_000, 10_000)


def test_missing_files_and_failed_download_name_the_paths_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("INITSWEEP_DATA", str(tmp_path / "cache"))
    spec = dataclasses.replace(DATASETS["fashion_mnist"], local_dir=str(tmp_path / "no-such-dir"))
    monkeypatch.setitem(data_mod.DATASETS, "fashion_mnist", spec)
    load_raw.cache_clear()
    try:
        with pytest.raises(DataError) as err:
            load_raw("fashion_mnist")
    finally:
        load_raw.cache_clear()
    text = str(err.value)
    assert "\n" not in text
    assert str(tmp_path / "no-such-dir") in text and str(tmp_path / "cache" / "FashionMNIST" / "raw") in text
    assert "apt-get install -y dataset-fashion-mnist" in text


def digest_of(data) -> str:
    """The lineage digest, computed here from its definition: BLAKE2b-64 over each split tensor's dtype,
    shape and raw bytes, train x, y, then validation, then test."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for split in (data.train, data.val, data.test):
        for t in (split.x, split.y):
            h.update(f"{t.dtype}{tuple(t.shape)}".encode() + t.contiguous().numpy().tobytes())
    return h.hexdigest()


def test_lineage_names_the_data_its_digest_and_its_split():
    from initsweep.config import DataConfig
    from initsweep.engine.data import lineage, load_configured

    config = DataConfig(limit=2000)
    data = load_configured(config)
    seen = lineage(config, data)
    assert (seen.name, seen.source) == ("fashion_mnist", "/usr/share/datasets/fashion-mnist")
    assert seen.digest == digest_of(data) and len(seen.digest) == 16
    assert seen.sizes == {"train": 1600, "val": 400, "test": 10_000}
    assert seen.settings == {"split_seed": 0, "limit": 2000, "val_fraction": 0.2, "normalize": False}
    other_seed = DataConfig(limit=2000, split_seed=1)
    assert lineage(other_seed, load_configured(other_seed)).digest != seen.digest  # same images, other split
    other_limit = DataConfig(limit=3000)
    assert lineage(other_limit, load_configured(other_limit)).sizes["train"] == 2400
