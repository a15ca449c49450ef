"""(L) What a sweep costs besides training: its start and end, phase by phase, and the fixed cost per trial.

The phases come from the driver's own marks (`INITSWEEP_TIMINGS=PATH`, `initsweep.tracking.mark`): each
phase is the time from the mark before it to its own, the first from the command's start (the
interpreter and its imports), the last to the process's exit (Ray's shutdown). The trials' own stretch
(`tuner.fit`) is one phase among them, so the rest is the sweep's fixed cost.

The cost per trial: a sweep of `TINY` one-seed trials on 400 images (4 steps each) through
`sweeps/run.py`, against the same trials trained one after another in-process on one thread: (slots x
the time the trials ran - the in-process seconds) / trials is what Ray's scheduling, the trial's process,
its reports and checkpoints and the driver's MLflow writes add to each trial.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]

TINY = 200
FINAL_LINE = re.compile(
    r"trials done \((\d+) failed\) in ([\d.]+) s; slots busy (\d+)% of the ([\d.]+) s the trials ran \((\d+) slots\)"
)


def phases(marks: list[dict], started: float, ended: float) -> list[tuple[str, float]]:
    """(phase, seconds) in order: each mark's time since the one before it (the first since `started`,
    the command's launch), then "exit" (after the last mark, to `ended`, when the process was gone).
    Marks with a duration of their own (`s`: a call such as `record_trial`) are summed by name, listed
    after the phase they last fell in, as "NAME (N calls within)"."""
    out, last = [], started
    calls: dict[str, list[float]] = {}

    def flush() -> None:
        out.extend((f"  {name} ({len(s)} calls within)", sum(s)) for name, s in calls.items())
        calls.clear()

    for m in sorted(marks, key=lambda m: m["t"]):
        if "s" in m:
            calls.setdefault(m["phase"], []).append(m["s"])
            continue
        out.append((m["phase"], m["t"] - last))
        flush()
        last = m["t"]
    flush()
    out.append(("exit", ended - last))
    return out


def read_marks(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def final_line(stdout: str) -> dict[str, float]:
    """The sweep's last line's figures: failed trials, seconds, slot use %, seconds the trials ran, slots."""
    m = FINAL_LINE.search(stdout)
    if m is None:
        raise RuntimeError(f"no final line in the sweep's output: {stdout[-500:]}")
    failed, seconds, busy, fit_s, slots = m.groups()
    return {
        "failed": int(failed),
        "seconds": float(seconds),
        "busy": int(busy) / 100,
        "fit_s": float(fit_s),
        "slots": int(slots),
    }


def timed_sweep(config: Path, overrides: list[str], tmp: str) -> dict:
    """`python sweeps/run.py CONFIG` with `overrides` in `tmp`, its marks read back: wall, phases, its final
    line's figures."""
    marks = Path(tmp) / "timings.jsonl"
    env = os.environ | {"INITSWEEP_TIMINGS": str(marks)}
    cmd = [sys.executable, str(ROOT / "sweeps" / "run.py"), str(config), "--storage-path", f"{tmp}/ray"]
    cmd += ["--report-dir", f"{tmp}/r", *(arg for o in overrides for arg in ("--set", o))]
    started = time.time()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"sweep failed: {proc.stderr[-2000:]}")
    return {"wall_s": ended - started, "phases": phases(read_marks(marks), started, ended)} | final_line(proc.stdout)


def tiny_overrides(n: int = TINY) -> list[str]:
    """`n` smoke-sized trials (sweeps/smoke.yaml): one row under `n` learning rates, one seed, 400 training
    images, 1 epoch."""
    lrs = [round(1e-3 * (1 + i / n), 8) for i in range(n)]
    grid = json.dumps({"train.lr": lrs})
    return ["name=tiny", "seeds=[0]", "data.limit=500", "schemes=[pytorch_default]", f"grid={grid}"]


def per_trial_rows(n: int = TINY) -> dict:
    """(L) the tiny sweep through Ray and MLflow against its trials in-process (one thread each, as a slot)."""
    import torch

    from initsweep.config import load_config
    from initsweep.sweep.inprocess import run_in_process

    overrides = tiny_overrides(n)
    config = ROOT / "sweeps" / "smoke.yaml"
    sweep = load_config(config, overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    run_in_process(sweep, device="cpu")
    engine_s = time.perf_counter() - start
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = timed_sweep(config, overrides, tmp)
    per_trial = (run["slots"] * run["fit_s"] - engine_s) / n
    return {"trials": n, "engine_s": engine_s, "per_trial_s": per_trial, "train_per_trial_s": engine_s / n} | run


def print_phases(title: str, run: dict) -> None:
    busy = f"slots busy {run['busy']:.0%} of the {run['fit_s']:.1f} s the trials ran"
    print(f"\n{title}: {run['wall_s']:.1f} s wall, {busy}")
    for name, seconds in run["phases"]:
        print(f"  {name:<28} {seconds:7.2f} s")


def print_per_trial(row: dict) -> None:
    print_phases(f"(L) {row['trials']} tiny trials through sweeps/run.py", row)
    print(
        f"  in-process, one after another on one thread: {row['engine_s']:.1f} s"
        f" ({row['train_per_trial_s']:.3f} s a trial);"
        f" fixed cost per trial: ({row['slots']} x {row['fit_s']:.1f} - {row['engine_s']:.1f}) / {row['trials']}"
        f" = {row['per_trial_s']:.3f} s"
    )


if __name__ == "__main__":
    row = per_trial_rows(int(sys.argv[1]) if len(sys.argv) > 1 else TINY)
    print_per_trial(row)
