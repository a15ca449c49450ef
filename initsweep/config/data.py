"""The `data` section: which dataset, and a split that can train (checked against the dataset registry).

Images (FashionMNIST, your loader's) split into train and validation sets, the test set apart. Text (a
corpus of the registry such as `fortunes`, or any UTF-8 file as `dataset: text_file`) is one stream of
byte tokens cut into three contiguous blocks, train, validation and test in that order, each cut into
windows of `context` tokens; its size is known here (the registry's, or the file's, read once per
process), so a split too short for one window fails when the config loads, before torch does.
"""

from __future__ import annotations

import codecs
import functools
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from initsweep.catalog import IMPORT, check_target
from initsweep.catalog.datasets import DATASETS, REGISTERED_DATASETS, TEXT_FILE, dataset_target
from initsweep.catalog.tasks import LANGUAGE_MODEL
from initsweep.config.base import MAX_SEED, _Strict

__all__ = ["DATA_CHECKED", "DataConfig", "read_text", "window_count"]

DATA_CHECKED = "data_checked"
"""A validation-context key: `Model.model_validate(raw, context={DATA_CHECKED: True})` skips reading
`data.path`, for a config the driver has already checked (a Ray worker rebuilding its trial config gets
the tensors, not the file, which need not exist on its node)."""
TEXT_ONLY = ("context", "test_fraction")
"""Keys that only a text dataset takes."""


def window_count(tokens: int, context: int) -> int:
    """Windows of `context` tokens in a block of `tokens`: window i covers tokens [i*context, i*context +
    context + 1) (its inputs and, shifted by one, its targets), so consecutive windows share one token."""
    return max(0, tokens - 1) // context


def read_text(path: str) -> bytes:
    """The bytes of the UTF-8 file at `path` (`~` expanded, relative to the working folder), read once
    per process while the file keeps its size and modification time; `ValueError` with the one-line
    problem (no key) for a missing, unreadable, empty or non-UTF-8 file."""
    file = Path(path).expanduser()
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise ValueError(f"no file at {path!r}") from None
    except OSError as err:
        raise ValueError(f"cannot read {path!r} ({type(err).__name__}: {err.strerror or err})") from None
    if file.is_dir():
        raise ValueError(f"{path!r} is a folder, not a text file")
    return _read_utf8(str(file.resolve()), stat.st_mtime_ns, stat.st_size, path)


@functools.lru_cache(maxsize=8)
def _read_utf8(resolved: str, mtime_ns: int, size: int, shown_as: str) -> bytes:
    """Keyed by the file's identity (path, modification time, size): every trial config of a sweep
    validates its data, and a changed file is read again. Errors are not cached."""
    try:
        with open(resolved, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ValueError(f"cannot read {shown_as!r} ({type(err).__name__}: {err.strerror or err})") from None
    if not data:
        raise ValueError(f"{shown_as!r} is empty; a language model needs text")
    decoder, view, step = codecs.getincrementaldecoder("utf-8")(), memoryview(data), 1 << 20
    for start in range(0, len(data), step):  # in pieces: a large file never becomes one str of 4x its size
        held = len(decoder.getstate()[0])  # the end of the last piece, a character cut in two
        try:
            decoder.decode(view[start : start + step], final=start + step >= len(data))
        except UnicodeDecodeError as err:
            at = start - held + err.start
            raise ValueError(
                f"{shown_as!r} is not UTF-8 text (byte 0x{data[at]:02x} at offset {at}: {err.reason})"
            ) from None
    return data


class DataConfig(_Strict):
    dataset: str = "fashion_mnist"
    """A name from the dataset registry (`initsweep.catalog.datasets.DATASETS`: fashion_mnist images,
    fortunes text), `text_file` (any UTF-8 file, `path`), `import` (your loader, `target`), or a name given
    to `initsweep.register_dataset` or an `initsweep.datasets` entry point."""
    target: str | None = None
    """Your loader as `package.module:load`, `load(**kwargs) -> (x_train, y_train, x_test, y_test)`."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for your loader."""
    path: str | None = None
    """`dataset: text_file` only: the UTF-8 file whose bytes are the language model's tokens."""
    limit: int | None = Field(default=None, gt=0)
    """Use less data, before the split: a class-balanced subset of this many train-set images, the first
    `limit` tokens of a text, or your loader's first `limit` train rows; None: all."""
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of the (limited) train set held out for validation: 0.2 gives the founding 48k/12k; for
    text, the share of the token stream in the validation block (after the train block)."""
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Text only: share of the (limited) token stream in the test block, its last (images have a test set)."""
    context: int = Field(default=128, gt=0)
    """Text only: tokens per window, the model's context; each window predicts its `context` next tokens."""
    normalize: bool = False
    """Standardize pixels with the train split's mean and std (the founding experiment did not); images only."""
    split_seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Chooses the train/validation split; shared by all trials of a sweep, never a replicate seed. Text
    (and your token windows) is split in stream order, which no seed chooses: there it stays 0."""

    _text_size: tuple[str | None, int] | None = PrivateAttr(default=None)
    """(path, tokens) of a text dataset, found while validating: the registry's size, or the file's."""

    @model_validator(mode="before")
    @classmethod
    def _registered_target(cls, raw: Any) -> Any:
        """A registered or entry-point dataset carries its loader's import path (a Ray worker re-reads it);
        a target alone is an import, a path alone a text file."""
        if isinstance(raw, dict) and "target" in raw and "dataset" not in raw:
            raw = raw | {"dataset": IMPORT}
        if isinstance(raw, dict) and "path" in raw and "dataset" not in raw:
            raw = raw | {"dataset": TEXT_FILE}
        if isinstance(raw, dict) and isinstance(raw.get("dataset"), str) and "target" not in raw:
            name = raw["dataset"]
            target = None if name in DATASETS or name in (IMPORT, TEXT_FILE) else dataset_target(name)
            if target is not None:
                raw = raw | {"target": target}
        return raw

    @field_validator("target")
    @classmethod
    def _import_path(cls, target: str | None) -> str | None:
        return None if target is None else check_target(target)

    @property
    def builtin(self) -> bool:
        """A dataset whose sizes the registry knows (the others' are known once loaded, a text file's once read)."""
        return self.dataset in DATASETS

    @property
    def text(self) -> bool:
        """Text split into token windows here: a corpus of the registry, or `text_file`. (Your loader's
        token windows are text too, but only the sweep's `task` says so.)"""
        return self.dataset == TEXT_FILE or (self.builtin and DATASETS[self.dataset].text)

    @property
    def task(self) -> str | None:
        """The task this data is for, where the data says it (a built-in dataset, a text file); None for your
        own loader's, which the sweep's `task` decides."""
        if self.dataset == TEXT_FILE:
            return LANGUAGE_MODEL.name
        return DATASETS[self.dataset].task if self.builtin else None

    @property
    def tokens(self) -> int | None:
        """A text dataset's tokens (UTF-8 bytes) before `limit`: the registry's size, or the file's; None
        for other data, or for a file not read (validated with `DATA_CHECKED`)."""
        known = self._text_size
        return known[1] if known is not None and known[0] == self.path else None

    @property
    def source_name(self) -> str:
        """The data as messages name it: the dataset, the loader's import path, or the text file."""
        if self.dataset == TEXT_FILE:
            return repr(self.path)
        return self.target if self.dataset == IMPORT else self.dataset

    def task_problem(self, task: str) -> str | None:
        """Why a sweep of `task` cannot train on this data (`task: problem`), else None."""
        mine = self.task
        if mine is None or mine == task:
            return None
        kind = "text" if mine == LANGUAGE_MODEL.name else "images with class labels"
        return f"task: {task} cannot train on {self.source_name}, which is {kind} (task: {mine})"

    @model_validator(mode="after")
    def _limit_fits(self, info: ValidationInfo) -> DataConfig:
        name = self.dataset
        if not (name in DATASETS or name in (IMPORT, TEXT_FILE) or name in REGISTERED_DATASETS or self.target):
            valid = ", ".join([*DATASETS, TEXT_FILE, *REGISTERED_DATASETS])
            raise ValueError(f"dataset: unknown dataset {name!r} (valid: {valid}), or import with a target")
        if self.dataset == IMPORT and self.target is None:
            raise ValueError("target: missing (dataset: import needs target: package.module:load)")
        if self.dataset == TEXT_FILE and self.path is None:
            raise ValueError("path: missing (dataset: text_file needs path: FILE, a UTF-8 text file)")
        if self.path is not None and self.dataset != TEXT_FILE:
            raise ValueError(f"path: only for dataset: text_file, not {self.dataset}")
        if not self.text:
            for key in TEXT_ONLY:
                if key in self.model_fields_set and getattr(self, key) != type(self).model_fields[key].default:
                    what = "images" if self.builtin else "your loader's: its arrays give their shape and test set"
                    texts = ", ".join([*(n for n, spec in DATASETS.items() if spec.text), TEXT_FILE])
                    raise ValueError(f"{key}: only for text ({texts}); the data here is {what}")
        if not self.builtin and not self.text:
            return self  # checked by the engine once loaded (`split_problem` with the loaded sizes)
        for key in ("target", "kwargs"):
            if key in self.model_fields_set and getattr(self, key):
                raise ValueError(f"{key}: only for your own datasets (dataset: import), not {self.dataset}")
        if self.text:
            return self._text_fits(skip_files=bool((info.context or {}).get(DATA_CHECKED)))
        size = DATASETS[self.dataset].train_size
        if self.limit is not None and self.limit > size:
            raise ValueError(f"limit: {self.limit} is more than the {size} images of {self.dataset}")
        problem = self.split_problem()
        if problem:
            raise ValueError(problem.removeprefix("data."))
        return self

    def _text_fits(self, *, skip_files: bool) -> DataConfig:
        """A text's own checks: no image settings, and a stream long enough for every split's window."""
        problem = self.text_settings_problem()
        if problem:
            raise ValueError(problem.removeprefix("data."))
        if self.dataset == TEXT_FILE:
            if skip_files:
                return self
            try:
                size = len(read_text(self.path))
            except ValueError as err:
                raise ValueError(f"path: {err}") from None
        else:
            size = DATASETS[self.dataset].train_size
        self._text_size = (self.path, size)
        problem = self.text_problem(size)
        if problem:
            raise ValueError(problem.removeprefix("data."))
        return self

    def text_settings_problem(self, split_seed_key: str = "data.split_seed") -> str | None:
        """Settings that mean nothing for token windows (`data.KEY: problem`), else None; also asked of
        your loader's token windows, once the sweep's task says they are text."""
        if self.normalize:
            return "data.normalize: text is token ids, not pixels; normalize is for images only"
        if self.split_seed != 0:
            return (
                f"{split_seed_key}: text is split in stream order (train, validation, test blocks), which no "
                f"seed chooses; leave it 0 (got {self.split_seed})"
            )
        return None

    def split_sizes(
        self, val_fraction: float | None = None, limit: int | None = None, *, train_size: int | None = None
    ) -> tuple[int, int]:
        """(train, validation) images, as the engine splits them; the arguments override this config's
        (`train_size`: a loaded dataset's, for datasets the registry does not know)."""
        n = limit or self.limit or train_size or DATASETS[self.dataset].train_size
        n_val = round(n * (self.val_fraction if val_fraction is None else val_fraction))
        return n - n_val, n_val

    def text_blocks(
        self,
        tokens: int | None = None,
        *,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        limit: int | None = None,
    ) -> tuple[int, int, int]:
        """(train, validation, test) tokens of a text's contiguous blocks, in stream order: the first `limit`
        of its `tokens` (default: this config's), `val_fraction` and `test_fraction` of them (rounded) for
        validation and test, train the rest. Each block is cut into `window_count(block, context)` windows."""
        total = self.tokens if tokens is None else tokens
        if total is None:
            raise ValueError(f"{self.source_name}: its size is not known here (not read)")
        n = min(limit or self.limit or total, total)
        n_val = round(n * (self.val_fraction if val_fraction is None else val_fraction))
        n_test = round(n * (self.test_fraction if test_fraction is None else test_fraction))
        return n - n_val - n_test, n_val, n_test

    def text_problem(self, tokens: int, batch_size: int | None = None) -> str | None:
        """Why a text of `tokens` tokens cannot train (`data.KEY: problem`, or `train.batch_size: ...`), else
        None: the limit fits, each block holds a window (`context` + 1 tokens), the train block a batch."""
        where = self.source_name
        if self.val_fraction + self.test_fraction >= 1:
            key = "data.test_fraction" if "test_fraction" in self.model_fields_set else "data.val_fraction"
            return (
                f"{key}: val_fraction {self.val_fraction:g} and test_fraction {self.test_fraction:g} leave "
                "no tokens to train on (their sum must be below 1)"
            )
        if self.limit is not None and self.limit > tokens:
            return f"data.limit: {self.limit} is more than the {tokens} tokens (UTF-8 bytes) of {where}"
        fields = DataConfig.model_fields

        def fits(*, batch: bool = True, **changes: Any) -> bool:
            context = changes.pop("context", self.context)
            blocks = self.text_blocks(tokens, **changes)
            windows = [window_count(b, context) for b in blocks]
            return min(windows) >= 1 and (not batch or batch_size is None or windows[0] >= batch_size)

        blocks = self.text_blocks(tokens)
        train_windows = window_count(blocks[0], self.context)
        if fits():
            return None
        n = blocks[0] + blocks[1] + blocks[2]
        head = f"the first {n} tokens of {where}" if self.limit is not None else f"the {n} tokens of {where}"
        if not fits(batch=False):
            # The first setting whose default (or no limit) would do; else the text is too short.
            defaults = {k: fields[k].default for k in ("val_fraction", "test_fraction", "context")}
            culprits = [k for k, v in defaults.items() if getattr(self, k) != v and fits(batch=False, **{k: v})]
            if self.limit is not None and fits(batch=False, limit=tokens):
                culprits.append("limit")
            key = f"data.{culprits[0]}" if culprits else "data.path" if self.dataset == TEXT_FILE else "data.context"
            return (
                f"{key}: {head} leave {blocks[0]} train, {blocks[1]} validation and {blocks[2]} test tokens "
                f"(val_fraction {self.val_fraction:g}, test_fraction {self.test_fraction:g}); each split needs "
                f"at least one window of context + 1 = {self.context + 1} tokens"
            )
        key = "data.limit" if self.limit is not None and fits(limit=tokens) else "train.batch_size"
        return (
            f"{key}: {head} leave {blocks[0]} train tokens, {train_windows} windows of context {self.context}, "
            f"fewer than one batch of {batch_size}"
        )

    def window_problem(self, windows: int, batch_size: int | None = None) -> str | None:
        """Why your loader's `windows` train windows (rows of x_train) cannot train a language model, else
        None: the validation split (the last `val_fraction` of them) and the train split each need one, the
        train split one batch."""
        n = min(self.limit or windows, windows)
        n_val = round(n * self.val_fraction)
        n_train = n - n_val
        if min(n_train, n_val) < 1:
            key = "data.limit" if self.limit is not None and self.limit < windows else "data.val_fraction"
            return (
                f"{key}: {n} windows leave {n_train} train and {n_val} validation windows (val_fraction "
                f"{self.val_fraction:g}); each split needs at least one"
            )
        if batch_size is not None and n_train < batch_size:
            full = windows - round(windows * self.val_fraction)
            key = "data.limit" if self.limit is not None and full >= batch_size else "train.batch_size"
            return (
                f"{key}: {n} windows leave {n_train} train windows (val_fraction {self.val_fraction:g}), fewer "
                f"than one batch of {batch_size}"
            )
        return None

    def split_problem(
        self,
        batch_size: int | None = None,
        *,
        train_size: int | None = None,
        num_classes: int | None = None,
        task: str | None = None,
    ) -> str | None:
        """Why the split cannot train (`data.KEY: problem`, or `train.batch_size: ...`), else None: each
        split needs an image of every class, and the train split one full batch of `batch_size`. A dataset
        the registry does not know is checked once loaded, with its `train_size` and `num_classes`, and the
        sweep's `task` (language_model: `train_size` counts token windows, `window_problem`). A text's
        sizes are known here (the registry's or its file's): the loaded sizes are not needed."""
        if self.text:
            tokens = self.tokens
            return None if tokens is None else self.text_problem(tokens, batch_size)
        if task == LANGUAGE_MODEL.name and not self.builtin:
            return None if train_size is None else self.window_problem(train_size, batch_size)
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
