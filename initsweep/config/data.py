"""The `data` section: which dataset, and a split that can train (checked against the dataset registry)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from initsweep.catalog import IMPORT, check_target
from initsweep.catalog.datasets import DATASETS, REGISTERED_DATASETS, dataset_target
from initsweep.config.base import MAX_SEED, _Strict


class DataConfig(_Strict):
    dataset: str = "fashion_mnist"
    """A name from the dataset registry (`initsweep.catalog.datasets.DATASETS`), `import` (your loader,
    `target`), or a name given to `initsweep.register_dataset` or an `initsweep.datasets` entry point."""
    target: str | None = None
    """Your loader as `package.module:load`, `load(**kwargs) -> (x_train, y_train, x_test, y_test)`."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for your loader."""
    limit: int | None = Field(default=None, gt=0)
    """Use a class-balanced subset of this many train-set images (before the split); None: all."""
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of the (limited) train set held out for validation: 0.2 gives the founding 48k/12k."""
    normalize: bool = False
    """Standardize pixels with the train split's mean and std (the founding experiment did not)."""
    split_seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Chooses the train/validation split; shared by all trials of a sweep, never a replicate seed."""

    @model_validator(mode="before")
    @classmethod
    def _registered_target(cls, raw: Any) -> Any:
        """A registered or entry-point dataset carries its loader's import path (a Ray worker re-reads it);
        a target alone is an import."""
        if isinstance(raw, dict) and "target" in raw and "dataset" not in raw:
            raw = raw | {"dataset": IMPORT}
        if isinstance(raw, dict) and isinstance(raw.get("dataset"), str) and "target" not in raw:
            name = raw["dataset"]
            target = None if name in DATASETS or name == IMPORT else dataset_target(name)
            if target is not None:
                raw = raw | {"target": target}
        return raw

    @field_validator("target")
    @classmethod
    def _import_path(cls, target: str | None) -> str | None:
        return None if target is None else check_target(target)

    @property
    def builtin(self) -> bool:
        """A dataset whose sizes the registry knows (the others' are known once loaded)."""
        return self.dataset in DATASETS

    @model_validator(mode="after")
    def _limit_fits(self) -> DataConfig:
        name = self.dataset
        if not (name in DATASETS or name == IMPORT or name in REGISTERED_DATASETS or self.target):
            valid = ", ".join([*DATASETS, *REGISTERED_DATASETS])
            raise ValueError(f"dataset: unknown dataset {name!r} (valid: {valid}), or import with a target")
        if self.dataset == IMPORT and self.target is None:
            raise ValueError("target: missing (dataset: import needs target: package.module:load)")
        if not self.builtin:
            return self  # checked by the engine once loaded (`split_problem` with the loaded sizes)
        for key in ("target", "kwargs"):
            if key in self.model_fields_set and getattr(self, key):
                raise ValueError(f"{key}: only for your own datasets (dataset: import), not {self.dataset}")
        size = DATASETS[self.dataset].train_size
        if self.limit is not None and self.limit > size:
            raise ValueError(f"limit: {self.limit} is more than the {size} images of {self.dataset}")
        problem = self.split_problem()
        if problem:
            raise ValueError(problem.removeprefix("data."))
        return self

    def split_sizes(
        self, val_fraction: float | None = None, limit: int | None = None, *, train_size: int | None = None
    ) -> tuple[int, int]:
        """(train, validation) images, as the engine splits them; the arguments override this config's
        (`train_size`: a loaded dataset's, for datasets the registry does not know)."""
        n = limit or self.limit or train_size or DATASETS[self.dataset].train_size
        n_val = round(n * (self.val_fraction if val_fraction is None else val_fraction))
        return n - n_val, n_val

    def split_problem(
        self, batch_size: int | None = None, *, train_size: int | None = None, num_classes: int | None = None
    ) -> str | None:
        """Why the split cannot train (`data.KEY: problem`, or `train.batch_size: ...`), else None: each
        split needs an image of every class, and the train split one full batch of `batch_size`. A dataset
        the registry does not know is checked once loaded, with its `train_size` and `num_classes`."""
        if train_size is None and not self.builtin:
            return None
        if train_size is None:
            train_size, num_classes = DATASETS[self.dataset].train_size, DATASETS[self.dataset].num_classes
        default_fraction = DataConfig.model_fields["val_fraction"].default

        def sizes_of(val_fraction: float | None = None, limit: int | None = None) -> tuple[int, int]:
            return self.split_sizes(val_fraction, limit, train_size=train_size)

        def fits(sizes: tuple[int, int]) -> bool:
            return min(sizes) >= num_classes and (batch_size is None or sizes[0] >= batch_size)

        n_train, n_val = sizes = sizes_of()
        if fits(sizes):
            return None
        few_images = min(sizes) < num_classes
        if self.val_fraction != default_fraction and fits(sizes_of(default_fraction)):
            key = "data.val_fraction"  # the default fraction would do
        elif not few_images and sizes_of(limit=train_size)[0] < batch_size:
            key = "train.batch_size"  # not even the whole train set makes one batch
        else:
            key = "data.val_fraction" if self.limit is None else "data.limit"
        where = f"{n_train + n_val} images leave {n_train} train"
        if few_images:
            return (
                f"{key}: {where} and {n_val} validation images (val_fraction {self.val_fraction:g}); each split "
                f"needs at least one image of each of the {num_classes} classes"
            )
        return f"{key}: {where} images (val_fraction {self.val_fraction:g}), fewer than one batch of {batch_size}"
