"""The driver side of a sweep: Tune callbacks that print progress and record finished trials in MLflow.

Both see a sweep as its grid cells: a cell split into seed shards (`initsweep.sweep.space.shard_tail`) is
printed and recorded once, as one trial of all its seeds, when its last shard has finished.

`Tuner.restore` brings back the callbacks pickled when the sweep started. Ours pickle only a key: after
a restore they act through the objects of the run that resumes the sweep (its tracker and tracking URI,
its printer, fresh clocks), which `attach` registers under that key before the Tuner is restored.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from initsweep.config import SweepConfig
from initsweep.results import TrialResult, best, epoch_report, seeds_from_json
from initsweep.sweep.resources import describe, trial_request
from initsweep.sweep.space import cell_params, trial_from_params
from initsweep.tracking import Tracker

__all__ = [
    "Live",
    "Progress",
    "ProgressBar",
    "RecordTrials",
    "attach",
    "cells",
    "last_of",
    "progress_line",
    "result_of",
    "stall_line",
]


@dataclass
class Live:
    """The objects of the run in this process, which the callbacks (perhaps unpickled) act through."""

    sweep: SweepConfig
    tracker: Tracker
    printer: Any = print
    progress_bar: bool = False
    """A live bar on the terminal (`ProgressBar`) instead of a line per finished trial."""


_LIVE: dict[str, Live] = {}


def attach(key: str, live: Live) -> None:
    """Make this run's objects the ones that callbacks with `key` use (before creating or restoring a Tuner)."""
    _LIVE[key] = live


class _KeyedCallback(tune.Callback):
    def __init__(self, key: str):
        self.key = key

    @property
    def live(self) -> Live:
        return _LIVE[self.key]

    def __getstate__(self) -> dict:
        return {"key": self.key}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.setup()

    def setup(self, **info) -> None:
        pass


def _shard(tune_trial: Trial) -> list[int] | None:
    return (tune_trial.config.get("cell") or {}).get("shard")


def cells(trials: list[Trial]) -> list[list[Trial]]:
    """Tune's trials as the sweep's trials, in order: each trial alone, a split cell's shards together
    (in shard order); a trial listed twice counts once."""
    groups: dict[tuple, list[Trial]] = {}
    for t in {id(t): t for t in trials}.values():
        key = ("cell", t.config["cell"]["index"]) if _shard(t) else ("trial", t.trial_id)
        groups.setdefault(key, []).append(t)
    return [sorted(g, key=lambda t: (_shard(t) or [0])[0]) for g in groups.values()]


def cell_of(trials: list[Trial], tune_trial: Trial) -> list[Trial]:
    """The Tune trials of `tune_trial`'s cell: itself, or its cell's shards."""
    return (
        next(group for group in cells([*trials, tune_trial]) if tune_trial in group)
        if _shard(tune_trial)
        else [tune_trial]
    )


def finished(group: list[Trial], current: Trial | None = None) -> bool:
    """Every shard of the cell is there and done (`current`: the trial a callback is told of, done though
    Tune may not have set its status yet)."""
    shard = _shard(group[0])
    done = all(t is current or t.status in (Trial.TERMINATED, Trial.ERROR) for t in group)
    return done and len(group) == (shard[1] if shard else 1)


def last_of(sweep: SweepConfig, group: list[Trial]) -> dict:
    """The cell's last result as one trial's: a single trial's own; a split cell's fields of the progress
    report over all its shards' seeds (as the trainable reports one), with their restores and notes."""
    if len(group) == 1:
        return group[0].last_result or {}
    lasts = [t.last_result or {} for t in group]
    if any("objective" not in r for r in lasts):
        return {}
    seeds = [s for r in lasts for s in seeds_from_json(r.get("seed_results"))]
    notes = dict.fromkeys(r["note"] for r in lasts if r.get("note"))
    return epoch_report(sweep.objective.metric, min(r["epoch"] for r in lasts), seeds) | {
        "restored_epoch": min(r.get("restored_epoch", 0) for r in lasts),
        "note": "; ".join(notes),
    }


def result_of(sweep: SweepConfig, group: list[Trial], error: str | None = None) -> TrialResult:
    """What the driver knows of a sweep trial (one Tune trial, or a split cell's shards): its config, and its
    seeds from each Tune trial's last report."""
    lasts = [t.last_result or {} for t in group]
    return TrialResult(
        trial_from_params(sweep, cell_params(group[0].config)),
        [s for last in lasts for s in seeds_from_json(last.get("seed_results"))],
        trial_id=group[0].trial_id,
        error=error,
        node_id=lasts[0].get("node_id"),
    )


def progress_line(
    sweep: SweepConfig,
    done: int,
    name: str,
    trial_id: str,
    last: dict | None,
    *,
    failed: bool,
    best_text: str,
    elapsed: float,
    eta: float,
) -> str:
    """`[done/total] trial: objective ± std (notes)  (trial id) | best ... | elapsed, ETA`."""
    obj, r = sweep.objective, last or {}
    if failed or "objective" not in r:
        what = "FAILED" if failed else "stopped before its first epoch"
    else:
        what = f"{obj.metric} {r['objective']:.4g} ± {r.get(obj.metric + '_std', 0):.2g}"
        what += f" ({int(r['diverged'])} diverged)" if r.get("diverged") else ""
        if r["epoch"] < sweep.train.epochs:
            what += f", stopped early after epoch {r['epoch']}"
        if r.get("restored_epoch", 0) >= r["epoch"]:
            what += " (finished before the restart: nothing trained)"
        if r.get("note"):
            what += f" [{r['note']}]"
    return (
        f"[{done}/{sweep.n_trials}] {name}: {what}  (trial {trial_id}) | {best_text} | "
        f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}"
    )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class ProgressBar:
    """The terminal's live bar: trials done/total, elapsed and ETA, the best so far; other lines (a failed
    trial, a stall) print above it. Built on tqdm, which redraws in place and fits the terminal's width."""

    def __init__(self, total: int, done: int):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=done,
            file=sys.stdout,
            dynamic_ncols=True,
            smoothing=0,  # ETA from the mean rate: trials finish in bursts when they run side by side
            desc="trials",
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
        )

    def update(self, done: int, best_text: str) -> None:
        self.bar.set_postfix_str(best_text, refresh=False)
        self.bar.update(done - self.bar.n)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stdout)

    def tick(self) -> None:
        self.bar.refresh()  # the clock moves while trials run

    def close(self) -> None:
        self.bar.close()


class Progress(_KeyedCallback):
    """One line per finished trial: done/total, its objective, the best so far, elapsed time and ETA; on a
    terminal (`Live.progress_bar`) one live bar with the same facts instead, and lines only for failures.

    It also watches for a stalled sweep: trials pending, none running and none started for
    `resources.stall_warning_s` seconds (say, the GPU they ask for is held by something else) gets one
    line naming what they ask for and what the cluster has free, repeated at most every ten such periods.
    The sweep goes on either way. (The watchdog lives here so that a restored Tuner, which brings back the
    callbacks pickled at the sweep's first run, has it too.)
    """

    def setup(self, **info) -> None:
        self.start, self.done_at_start = time.monotonic(), None
        self.active_at, self.warned_at = self.start, None
        self.bar: ProgressBar | None = None

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            self.live.printer(line, flush=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if self.live.progress_bar:
            if self.bar is None:
                done = sum(finished(g) for g in cells(trials))
                self.bar = ProgressBar(self.live.sweep.n_trials, done)
            self.bar.tick()
        pending = [t for t in trials if t.status == Trial.PENDING]
        if not pending or any(t.status == Trial.RUNNING for t in trials):
            self.active_at = now
            return
        stall_s = self.live.sweep.resources.stall_warning_s
        if now - self.active_at < stall_s or (self.warned_at is not None and now - self.warned_at < 10 * stall_s):
            return
        self.warned_at = now
        self._print(stall_line(self.live, pending, now - self.active_at))

    def _line(self, trials: list[Trial], tune_trial: Trial, failed: bool) -> None:
        sweep = self.live.sweep
        group = cell_of(trials, tune_trial)
        if not finished(group, tune_trial):
            return  # a shard: its cell's line comes with its last shard
        failed = failed or any(t.status == Trial.ERROR for t in group if t is not tune_trial)
        done_cells = [g for g in cells([*trials, tune_trial]) if finished(g, tune_trial)]
        done = len(done_cells)
        if self.done_at_start is None:
            self.done_at_start = done - 1
        elapsed = time.monotonic() - self.start
        rate = elapsed / max(1, done - self.done_at_start)
        # The best judged trial: a tuned sweep's candidates (stage "tune") only choose settings.
        reported = [
            (g, last)
            for g in done_cells
            if "objective" in (last := last_of(sweep, g)) and g[0].config.get("stage") != "tune"
        ]
        top = best(
            reported,
            sweep.objective.mode,
            value=lambda item: item[1]["objective"],
            diverged=lambda item: bool(item[1].get("diverged")),
        )
        best_text = (
            f"best {trial_from_params(sweep, cell_params(top[0][0].config)).name} {top[1]['objective']:.4g}"
            if top
            else "best -"
        )
        if self.bar is not None:
            self.bar.update(done, best_text)
            if not failed:
                return
        line = progress_line(
            sweep,
            done,
            trial_from_params(sweep, cell_params(tune_trial.config)).name,
            group[0].trial_id,
            last_of(sweep, group),
            failed=failed,
            best_text=best_text,
            elapsed=elapsed,
            eta=rate * max(0, sweep.n_trials - done),
        )
        self._print(line)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, failed=True)

    def on_experiment_end(self, trials, **info) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RecordTrials(_KeyedCallback):
    """Writes each trial to MLflow from the driver as soon as it finishes or fails.

    Trials are queued when Tune reports them and, at the end of the controller's step, handed to a writer
    thread (`_Writer`): the writes (about 0.1 s a trial on SQLite, a round trip each on a server) run while
    Tune goes on scheduling, one at a time and in order. A write that failed stops the writer and is raised
    at the next step, on Tune's thread: a tracking server that stays away past MLflow's retries then stops
    the sweep with `TrackingUnavailable` (the trial stays finished in Tune's state) rather than failing the
    trial. At the end it waits for the writer and goes over every trial it did not write: a resumed sweep's
    trials that finished before an interruption are recorded if an earlier driver could not write them
    (writes are idempotent).
    """

    def setup(self, **info) -> None:
        self.queue: list[tuple[list[Trial], str | None]] = []
        self.writer: _Writer | None = None

    def _flush(self, wait: bool = False) -> None:
        """Hand the queued trials to the writer; raise a failed write (`wait`: once every write is done)."""
        if self.writer is None:
            self.writer = _Writer(self.live.tracker.record_trial)
        while self.queue:
            group, error = self.queue.pop(0)
            self.writer.put(group[0].trial_id, result_of(self.live.sweep, group, error))  # read on Tune's thread
        if wait:
            self.writer.wait()
        self.writer.check()

    def _finished(self, trials: list[Trial], tune_trial: Trial, error: str | None) -> None:
        """Queue the trial's cell once all its shards are done; the first error among them is the cell's."""
        group = cell_of(trials, tune_trial)
        if finished(group, tune_trial):
            errors = [
                error if t is tune_trial else _error_text(t)
                for t in group
                if (error if t is tune_trial else t.status == Trial.ERROR)
            ]
            self.queue.append((group, errors[0] if errors else None))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finished(trials, trial, None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finished(trials, trial, _error_text(trial))

    def on_step_end(self, iteration, trials, **info) -> None:
        self._flush()

    def on_experiment_end(self, trials, **info) -> None:
        self._flush(wait=True)
        epochs = self.live.sweep.train.epochs
        for group in cells(trials):
            if not finished(group) or group[0].trial_id in self.writer.written:
                continue
            # An interrupted sweep ends its running trials TERMINATED too, but without a `done` result.
            failed = [t for t in group if t.status == Trial.ERROR]
            if failed:
                self.queue.append((group, _error_text(failed[0])))
            elif all((t.last_result or {}).get("done") or (t.last_result or {}).get("epoch") == epochs for t in group):
                self.queue.append((group, None))
        self._flush(wait=True)


class _Writer:
    """One daemon thread that makes the queued writes in order and stops at the first that fails.

    After a failure it writes nothing more (the sweep is stopping: each further write would wait out
    MLflow's retries on its own), and being a daemon it never holds up the interpreter's exit."""

    def __init__(self, write: Callable[[Any], object]):
        self.write = write
        self.jobs: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.error: BaseException | None = None
        self.written: set[str] = set()
        """The cells (by their first Tune trial's id) this process wrote."""
        threading.Thread(target=self._run, name="initsweep-mlflow", daemon=True).start()

    def put(self, key: str, record: Any) -> None:
        self.jobs.put((key, record))

    def _run(self) -> None:
        while True:
            key, record = self.jobs.get()
            try:
                if self.error is None:
                    self.write(record)
                    self.written.add(key)
            except BaseException as err:  # raised on Tune's thread by `check`
                self.error = err
            finally:
                self.jobs.task_done()

    def wait(self) -> None:
        """Until every write handed in is made, or skipped after a failure."""
        self.jobs.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def _request_of(live: Live, tune_trial: Trial) -> dict[str, float]:
    """What a trial asks Ray for: its placement group's bundle, else what this run's config asks."""
    try:
        asked = dict(tune_trial.placement_group_factory.required_resources)
    except Exception:  # a Tune internal; the config says the same
        asked = trial_request(live.sweep.resources)
    return {k: v for k, v in asked.items() if v > 0}


def stall_line(live: Live, pending: list[Trial], seconds: float) -> str:
    """`stalled: 3 trials pending for 60 s, each asking 1 CPU, 1 GPU; free now: 2 CPU, 0 GPU`."""
    import ray

    asked = _request_of(live, pending[0])
    try:
        free = ray.available_resources()
        free_text = describe(free, ["CPU", "GPU", *[k for k in asked if k not in ("CPU", "GPU")]])
    except Exception:  # the line matters more than this detail
        free_text = "unknown"
    n = len(pending)
    return (
        f"stalled: {n} trial{'s' if n != 1 else ''} pending for {seconds:.0f} s, each asking "
        f"{describe(asked, None)}; free now: {free_text}"
    )


def _error_text(tune_trial: Trial) -> str:
    path = getattr(tune_trial, "error_file", None)
    try:
        return Path(path).read_text() if path else "trial failed"
    except OSError:
        return "trial failed"
