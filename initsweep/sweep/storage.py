"""A sweep's Tune folder: where it is, the sweep's id kept in it, every file in it written whole or not at
all, and its saved state read back before a resume.

Tune writes its state (`tuner.pkl`, `experiment_state-*.json`, the searcher's and callbacks' states) and
the trials' checkpoints through a pyarrow filesystem, opening each file in place: a driver killed
mid-write left it truncated, and the next run's restore failed on it (`EOFError` unpickling
`tuner.pkl`; a resumed run re-uploads every top-level `.json` and `.pkl`, so any of them could be hit).
`whole_filesystem()` is the local filesystem with one change: a file is written beside its destination
and renamed into place when closed, so a killed process leaves the last whole version (and a
`*.partial-*` file that nothing reads, removed when the sweep resumes: `remove_stale_partials`).
Rename is atomic on a local disk and on NFS; it guards against a killed process, not a lost machine's
unflushed page cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickletools
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow
import pyarrow.fs

from initsweep.config import ConfigError, SweepConfig

__all__ = [
    "PARTIAL",
    "STALE_AFTER_S",
    "SWEEP_FILE",
    "WholeFiles",
    "check_saved_state",
    "experiment_dir",
    "remove_stale_partials",
    "sweep_hash",
    "sweep_id_in",
    "whole_filesystem",
    "write_whole",
]

SWEEP_FILE = "initsweep-sweep.json"

PARTIAL = ".partial-"
"""What a file being written is named after: `NAME.partial-<unique>` until it is renamed to NAME."""

STALE_AFTER_S = 60.0
"""A partial file unchanged this long is a dead writer's (a live one writes on; a checkpoint takes ms)."""


def _partial_name(path: str | Path) -> str:
    return f"{path}{PARTIAL}{uuid.uuid4().hex}"


class _RenamedWhenClosed(io.FileIO):
    """A file written under a partial name and renamed to its destination when closed; after a failed
    write (a full disk) it is removed instead, and the destination keeps its last whole version."""

    def __init__(self, path: str):
        self.destination, self.failed = path, False
        super().__init__(_partial_name(path), "w")

    def write(self, data) -> int:
        """All of `data` (a raw write may take part of it) or an error."""
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):
                done += super().write(view[done:])
        except BaseException:
            self.failed = True
            raise
        return done

    def close(self) -> None:
        if not self.closed:
            super().close()
            if self.failed:
                os.unlink(self.name)
            else:
                os.replace(self.name, self.destination)


def write_whole(path: str | Path, data: bytes | str) -> None:
    """Write `path` whole or not at all (beside it, then renamed into place)."""
    with _RenamedWhenClosed(str(path)) as f:
        f.write(data.encode() if isinstance(data, str) else data)


class WholeFiles(pyarrow.fs.FileSystemHandler):
    """pyarrow's local filesystem, except that output streams are renamed into place when closed."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, WholeFiles)

    def __reduce__(self):  # workers get the same filesystem (Tune sends it with each trial)
        return WholeFiles, ()

    def get_type_name(self) -> str:
        return "initsweep-whole-files"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("initsweep will not delete the contents of /")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        with self.local.open_input_stream(src) as source, self.open_output_stream(dest, None) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_RenamedWhenClosed(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


def whole_filesystem() -> pyarrow.fs.PyFileSystem:
    """The filesystem a sweep's Tune folder is written through (`RunConfig.storage_filesystem`)."""
    return pyarrow.fs.PyFileSystem(WholeFiles())


def sweep_hash(sweep: SweepConfig) -> str:
    """Identifies what a sweep computes (resources excluded): the same config resumes the same sweep."""
    science = sweep.model_dump(mode="json", exclude={"resources"})
    return hashlib.sha256(json.dumps(science, sort_keys=True).encode()).hexdigest()[:8]


def experiment_dir(sweep: SweepConfig, storage_path: str | Path) -> Path:
    return Path(storage_path).expanduser().resolve() / f"{sweep.name}-{sweep_hash(sweep)}"


def sweep_id_in(exp_dir: Path, fresh: bool) -> str:
    """The sweep's id, kept in its Tune folder; `fresh` moves an earlier start aside first."""
    meta = exp_dir / SWEEP_FILE
    if fresh and exp_dir.exists():
        exp_dir.rename(exp_dir.with_name(f"{exp_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"))
    if meta.is_file():
        return _read_saved(meta, json.loads)["sweep_id"]
    exp_dir.mkdir(parents=True, exist_ok=True)
    new_id = uuid.uuid4().hex[:12]
    write_whole(meta, json.dumps({"sweep_id": new_id}))
    return new_id


def remove_stale_partials(exp_dir: Path, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove the partial files killed writers left in a sweep's folder (a checkpoint's can be megabytes);
    a file written to within `older_than_s` may be a live writer's and stays. Returns how many went."""
    cutoff, removed = time.time() - older_than_s, 0
    for path in exp_dir.rglob(f"*{PARTIAL}*"):
        with contextlib.suppress(FileNotFoundError):  # its writer renamed or removed it meanwhile
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def check_saved_state(exp_dir: Path) -> None:
    """Read back what a resume reads (the sweep's id, Tune's pickle, its newest experiment state), so that a
    folder damaged by something other than our writes is refused in one line before anything starts or is
    written. The pickle is walked, not loaded: nothing is imported (Ray must not be, yet)."""
    if (exp_dir / SWEEP_FILE).is_file():
        _read_saved(exp_dir / SWEEP_FILE, json.loads)
    if (exp_dir / "tuner.pkl").is_file():
        _read_saved(exp_dir / "tuner.pkl", lambda data: list(pickletools.genops(data)))
    newest = max(exp_dir.glob("experiment_state-*.json"), default=None)  # Tune's pick: the newest name
    if newest is not None:
        _read_saved(newest, json.loads)


def _read_saved(path: Path, loads: Callable[[bytes], object]):
    try:
        return loads(path.read_bytes())
    except Exception as err:
        raise ConfigError(
            f"{path}: this sweep's saved state does not read back ({type(err).__name__}: {err}); "
            "--fresh starts the sweep over, moving its folder aside"
        ) from None
