"""Text as a language model's data: byte tokens, contiguous blocks, context windows.

A text's tokens are its UTF-8 bytes, a vocabulary of 256 (`BYTE_VOCAB`): no tokenizer file to ship or
fit, any UTF-8 text reads, and every split (and every corpus) shares the same symbols, so a model trained
on one file can be scored on another. The token stream is cut into three contiguous blocks in stream
order, train, validation and test (`DataConfig.text_blocks`: the first `limit` tokens, `val_fraction` and
`test_fraction` of them), never shuffled: a window must not see text that a neighbouring split is scored
on. Each block is cut into windows with stride `context`: window i covers the block's tokens
[i*context, i*context + context + 1), inputs `x` its first `context`, targets `y` its last `context` (x
shifted by one), so every token of a block but the first is predicted exactly once (a tail of fewer than
`context` tokens that no full window covers is left out).

The built-in corpus is read from the files its Debian package ships (`DatasetInfo.local_dir`, `files`), a
text file from `data.path`; both once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from initsweep.catalog.datasets import DATASETS, TEXT_FILE, DatasetInfo
from initsweep.config import ConfigError, DataConfig
from initsweep.config.data import read_text, window_count

__all__ = ["corpus_bytes", "read_configured", "text_source", "text_windows", "token_windows", "tokens_of"]


def tokens_of(text: bytes) -> torch.Tensor:
    """The int64 token ids of UTF-8 `text`: its bytes."""
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).long()


def token_windows(tokens: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a block of `tokens`: `window_count(len, context)` windows of `context` tokens, y = x shifted
    by one; each its own contiguous int64 tensor (N, context)."""
    n = window_count(len(tokens), context)
    x = tokens[: n * context].view(n, context).clone()
    y = tokens[1 : n * context + 1].view(n, context).clone()
    return x, y


@functools.cache
def _corpus(local_dir: str, files: tuple[str, ...]) -> bytes:
    folder = Path(local_dir)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    return b"".join((folder / f).read_bytes() for f in files)


def corpus_bytes(spec: DatasetInfo) -> bytes:
    """A built-in corpus's text: its package's files in `spec.local_dir`, joined in `spec.files` order, read
    once per process; `FileNotFoundError` naming the missing files when they are not installed."""
    return _corpus(spec.local_dir, spec.files)


corpus_bytes.cache_clear = _corpus.cache_clear  # forgets what was read (tests, a reinstalled package)


def text_source(config: DataConfig) -> str:
    """Where a text dataset is read from: the corpus's folder, or the text file's absolute path."""
    if config.dataset == TEXT_FILE:
        return str(Path(config.path).expanduser().resolve())
    return DATASETS[config.dataset].local_dir


def text_windows(config: DataConfig, text: bytes, batch_size: int | None = None) -> list[tuple[torch.Tensor, ...]]:
    """(x, y) windows of the train, validation and test blocks of `text`, as `config` splits it. Its size is
    checked again as read (a file changed since the config was checked, another version of the corpus's
    package), with the config's one-line messages."""
    problem = config.text_problem(len(text), batch_size)
    if problem:
        raise ConfigError(problem)
    tokens = tokens_of(text)
    n_train, n_val, n_test = config.text_blocks(len(tokens))
    starts = (0, n_train, n_train + n_val)
    sizes = (n_train, n_val, n_test)
    return [token_windows(tokens[a : a + n], config.context) for a, n in zip(starts, sizes, strict=True)]


def read_configured(config: DataConfig) -> bytes:
    """A text file's bytes (`ConfigError` naming `data.path` if it changed into something unreadable since
    the config was checked), or a corpus's (`FileNotFoundError`, as `corpus_bytes`)."""
    if config.dataset == TEXT_FILE:
        try:
            return read_text(config.path)
        except ValueError as err:
            raise ConfigError(f"data.path: {err}") from None
    return corpus_bytes(DATASETS[config.dataset])
