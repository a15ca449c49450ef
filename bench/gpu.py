"""The engine and a sweep on one CUDA GPU, measured in one run: `python bench/gpu.py [--json PATH]`.

(a) the packed engine on CUDA: the seed MLP (784-256-128-10, dropout 0.2, Adam, batch 100), 1 epoch on the
    48k/12k split, validation and the test set included (`run_trial(..., device="cuda")`), at 1, 4, 16 and 64
    seeds packed, each the fastest of 2 runs after a warm-up, the data moved to the GPU once: seconds,
    models/min, the speed-up over one seed, the peak GPU memory, and the share of the FLOP bound (bench.py's
    `flops_per_model` at this GPU's measured fp32 matmul rate, 8192x8192, torch's default precision).
(b) a 4-trial cut of the seed-table sweep (4 of its rows x its 5 seeds, 1 epoch) through `python sweeps/run.py`
    with `resources.gpus_per_trial: 0.25`, so the four trials share the GPU, in a temporary folder with its
    own SQLite MLflow store (Ray's start included). Checked afterwards: MLflow holds the 4 trials with 5 seeds
    each and no failure (`initsweep.load_results`), and every trial trained on cuda: the `device` each trial
    reports to Tune (`initsweep/sweep/trainable.py`), read from Tune's `result.json` files, since MLflow does
    not record it.
Without CUDA it prints one line and exits 0, having measured nothing. With it, it prints a table, writes
JSON (default bench/gpu_results.json) and exits 1 when a check fails. About 2-3 minutes on an H200.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(ROOT)]  # bench.py and peers.py beside this file; the checkout's initsweep

import torch  # noqa: E402
from peers import sweep_command  # noqa: E402

PACKS = (1, 4, 16, 64)
SWEEP_ROWS = ("uniform [-y, y), y=1/sqrt(n)", "normal(0, 1/sqrt(n))", "PyTorch default", "kaiming_uniform (ReLU)")
"""The seed table's rows the sweep runs: 4 trials, its baseline row among them."""
GPUS_PER_TRIAL = 0.25
SWEEP_NEEDS = ("ray", "mlflow", "optuna")
MIN_VAL_ACCURACY = 70.0
"""A packed run whose mean validation accuracy (%) is below this after its epoch did not train (the seed MLP
reaches about 80% after one)."""


def no_cuda_line(torch_version: str, cuda_version: str | None) -> str:
    """The whole output on a machine without a CUDA device."""
    built = f"built for CUDA {cuda_version}" if cuda_version else "a build without CUDA"
    return f"bench/gpu.py: no CUDA device here (torch {torch_version}, {built}); nothing measured"


def sweep_overrides(rows: tuple[str, ...] = SWEEP_ROWS, gpus_per_trial: float = GPUS_PER_TRIAL) -> list[str]:
    """`--set` overrides of sweeps/seed_table.yaml: only the rows labelled `rows` (one trial each), without the
    published reference values (they name the other rows too), 1 epoch, `gpus_per_trial` GPUs per trial."""
    import yaml

    table = yaml.safe_load((ROOT / "sweeps" / "seed_table.yaml").read_text())
    by_label = {row["label"]: row for row in table["schemes"]}
    chosen = [by_label[label] for label in rows]
    return [
        f"schemes={json.dumps(chosen)}",
        "report.reference=null",
        "train.epochs=1",
        f"resources.gpus_per_trial={gpus_per_trial}",
    ]


def tracking_uri(folder: str | Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def gpu_sweep_command(folder: str | Path, overrides: list[str]) -> list[str]:
    """bench.py's `python sweeps/run.py` command (Ray state and report under `folder`), with the MLflow store
    in `folder` too."""
    return [*sweep_command(str(folder), overrides), "--tracking-uri", tracking_uri(folder)]


def pack_rows(seconds: dict[int, float], bound_s: float) -> list[dict[str, float]]:
    """One row per pack size (seeds -> wall seconds of its run; 1 among them): models/min, the speed-up over
    one seed at a time, and the share of the FLOP bound (`bound_s`: one model's FLOPs at the matmul rate)."""
    one = seconds[1]
    return [
        {
            "seeds": n,
            "seconds": s,
            "models_per_min": 60 * n / s,
            "x_one_seed": n * one / s,
            "of_flop_bound": n * bound_s / s,
        }
        for n, s in sorted(seconds.items())
    ]


def pack_table(rows: list[dict[str, float]]) -> list[str]:
    """(a)'s table, a line per pack size; the peak GPU memory and validation accuracy where rows have them."""
    extra = all("peak_gpu_gb" in r and "val_accuracy" in r for r in rows)
    head = f"{'seeds packed':>12} {'seconds':>8} {'models/min':>11} {'x 1 seed':>9} {'of FLOP bound':>14}"
    lines = [head + (f" {'peak GPU GB':>12} {'val acc %':>10}" if extra else "")]
    for r in rows:
        line = (
            f"{r['seeds']:>12} {r['seconds']:>8.2f} {r['models_per_min']:>11.1f} {r['x_one_seed']:>9.2f}"
            f" {r['of_flop_bound']:>14.1%}"
        )
        lines.append(line + (f" {r['peak_gpu_gb']:>12.2f} {r['val_accuracy']:>10.1f}" if extra else ""))
    return lines


def tune_devices(storage: str | Path) -> dict[str, list[str | None]]:
    """Each Tune trial folder under `storage` (`<experiment>/<trial>/result.json`, a JSON object a line, one
    per report) -> the `device` of each report; a half-written last line is left out."""
    out: dict[str, list[str | None]] = {}
    for path in sorted(Path(storage).glob("*/*/result.json")):
        devices = []
        for line in path.read_text().splitlines():
            try:
                devices.append(json.loads(line).get("device"))
            except json.JSONDecodeError:
                break
        out[path.parent.name] = devices
    return out


def sweep_problems(
    n_trials: int, n_seeds: int, seeds_per_trial: list[int], failed: int, devices: dict[str, list[str | None]]
) -> list[str]:
    """What is wrong with a finished sweep of `n_trials` trials x `n_seeds` seeds that should have trained on
    cuda: MLflow's record (seeds of each finished trial, failed trials) and Tune's devices; [] when nothing."""
    problems = []
    if len(seeds_per_trial) != n_trials:
        problems.append(f"MLflow holds {len(seeds_per_trial)} finished trials, not {n_trials}")
    if any(n != n_seeds for n in seeds_per_trial):
        problems.append(f"MLflow's trials hold {seeds_per_trial} seeds, not {n_seeds} each")
    if failed:
        problems.append(f"{failed} trials failed")
    if len(devices) != n_trials:
        problems.append(f"Tune's results name {len(devices)} trials, not {n_trials}")
    off = {name: sorted(map(str, set(d))) for name, d in devices.items() if not d or set(d) != {"cuda"}}
    if off:
        problems.append("not trained on cuda: " + "; ".join(f"{name}: {d or 'no report'}" for name, d in off.items()))
    return problems


def matmul_tflops(n: int = 8192, repeats: int = 5) -> float:
    """The GPU's fp32 matmul rate at torch's default precision (what the engine runs), the best of `repeats`
    nxn products after warm-ups, each timed between synchronizes."""
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
    del a, b
    torch.cuda.empty_cache()
    return best


def engine_runs(packs: list[int], data, repeats: int) -> tuple[dict[int, float], dict[int, dict[str, float]]]:
    """(a) `run_trial` on CUDA at each pack size: the fastest of `repeats` runs (seconds), and per pack its
    peak GPU memory (GB) and mean validation accuracy (%)."""
    from initsweep.config import TrialConfig
    from initsweep.engine.train import run_trial

    def trial(n: int) -> TrialConfig:
        return TrialConfig.model_validate({"seeds": list(range(n)), "row": "uniform_fan_in", "train": {"epochs": 1}})

    run_trial(trial(1), data, device="cuda")  # warm-up: CUDA's context, cuBLAS, the allocator's pool
    seconds, extra = {}, {}
    for n in packs:
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            result = run_trial(trial(n), data, device="cuda")
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds[n] = min(times)
        extra[n] = {
            "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30,
            "val_accuracy": result.mean("val_accuracy"),
        }
        print(f"  {n} seeds packed: {seconds[n]:.2f} s (fastest of {repeats})", flush=True)
    return seconds, extra


def sweep_run(timeout_s: float) -> dict:
    """(b) the 4-trial sweep through sweeps/run.py in a temporary folder, then its checks."""
    missing = [name for name in SWEEP_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        return {"ran": False, "problems": [f"not run: {', '.join(missing)} not installed"]}
    from initsweep.config import load_config

    overrides = sweep_overrides()
    sweep = load_config(ROOT / "sweeps" / "seed_table.yaml", overrides)
    out: dict = {"ran": True, "trials": sweep.n_trials, "seeds": len(sweep.seeds), "overrides": overrides}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = gpu_sweep_command(tmp, overrides)
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            log, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and Ray's processes it started
            log, _ = proc.communicate()
        out["wall_s"] = time.perf_counter() - start
        out["returncode"] = proc.returncode
        out["log_tail"] = log[-3000:]
        out["devices"] = tune_devices(Path(tmp) / "ray")
        from initsweep import load_results

        try:
            results = load_results(tracking_uri(tmp), sweep.name)
            seeds_per_trial, failed = [len(t.seeds) for t in results.trials], len(results.failed)
            out["best_val_accuracy"] = max((t.mean("val_accuracy") for t in results.trials), default=None)
        except LookupError:
            seeds_per_trial, failed = [], 0
    out["mlflow_seeds_per_trial"], out["mlflow_failed"] = seeds_per_trial, failed
    problems = [] if proc.returncode == 0 else [f"sweeps/run.py exited {proc.returncode} after {out['wall_s']:.0f} s"]
    out["problems"] = problems + sweep_problems(
        sweep.n_trials, len(sweep.seeds), seeds_per_trial, failed, out["devices"]
    )
    out["models_per_min"] = 60 * sum(seeds_per_trial) / out["wall_s"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="bench/gpu_results.json", help="where to write the numbers")
    p.add_argument("--repeats", type=int, default=2, help="runs per pack size, the fastest kept")
    p.add_argument("--sweep-timeout", type=float, default=210.0, help="seconds the sweep may take")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print(no_cuda_line(torch.__version__, torch.version.cuda))
        return 0

    from bench import flops_per_model  # bench.py's FLOPs of one seed MLP (its imports are heavy: after the check)
    from initsweep.engine.data import load_data

    name = torch.cuda.get_device_name(0)
    print(
        f"bench/gpu.py on {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), {os.cpu_count()} CPUs; "
        f"the seed MLP, 1 epoch on 48k",
        flush=True,
    )
    data = load_data()
    data = data.to("cuda")  # once: each run_trial's own `to` is then a no-op
    seconds, extra = engine_runs(list(PACKS), data, args.repeats)
    del data
    torch.cuda.empty_cache()
    tflops = matmul_tflops()
    flops = flops_per_model(1)
    bound_s = flops / (tflops * 1e12)
    rows = pack_rows(seconds, bound_s)
    for r in rows:
        r |= extra[r["seeds"]]
    problems = [
        f"{r['seeds']} seeds packed: val accuracy {r['val_accuracy']:.1f}% (under {MIN_VAL_ACCURACY:.0f}%)"
        for r in rows
        if r["val_accuracy"] < MIN_VAL_ACCURACY
    ]
    print(f"(b) the sweep: {len(SWEEP_ROWS)} trials at {GPUS_PER_TRIAL} GPU each, through sweeps/run.py", flush=True)
    s = sweep_run(args.sweep_timeout)
    problems += s["problems"]

    print(f"\n(a) engine on {name}, 1 epoch (validation and test included)")
    print("\n".join(pack_table(rows)))
    print(
        f"FLOP bound: {flops / 1e9:.0f} GFLOP per model at {tflops:.1f} TFLOP/s (fp32 8192x8192 matmul, precision "
        f"'{torch.get_float32_matmul_precision()}'): {60 / bound_s:,.0f} models/min"
    )
    if s["ran"]:
        devices = s["devices"]
        on_cuda = sum(bool(d) and set(d) == {"cuda"} for d in devices.values())
        print(
            f"(b) sweep: {s['trials']} trials x {s['seeds']} seeds, {GPUS_PER_TRIAL} GPU each: {s['wall_s']:.1f} s "
            f"wall (Ray's start included), {s['models_per_min']:.1f} models/min; MLflow: "
            f"{len(s['mlflow_seeds_per_trial'])} trials, {sum(s['mlflow_seeds_per_trial'])} seeds, "
            f"{s['mlflow_failed']} failed; Tune's result.json: {on_cuda}/{len(devices)} trials on cuda"
        )
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if problems and s.get("log_tail"):
        print("the sweep's output, its end:\n" + s["log_tail"])
    out = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
        "matmul_tflops": tflops,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "flops_per_model": flops,
        "bound_s_per_model": bound_s,
        "packs": rows,
        "sweep": s,
        "problems": problems,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
