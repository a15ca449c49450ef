"""Trained models per minute on this machine, measured in one run: `python bench/bench.py [--quick]`.

(A) what users write: a per-sample DataLoader + ToTensor loop, one model (the baseline)
(B) our engine, one seed at a time            (C) our engine, 8 and 16 seeds packed
(D) the FLOP bound: FLOPs per model at this machine's measured matmul rate (2048x2048 fp32)
(E) the default seed-table sweep through `sweeps/run.py` (Ray start included) against the engine's
    in-process time for the same 45 models; peak resident memory of the whole sweep (all processes); its
    slot use and its phases (the driver's `INITSWEEP_TIMINGS` marks, `bench/overhead.py`).
(F) the per-epoch checkpoint a Ray trial writes (snapshot + torch.save of 5 packed seeds) against the
    epoch's training time.
(G) packed seeds for any model against one seed at a time: folded (the default for conv nets,
    `initsweep.engine.folded`) and vmapped (`initsweep.engine.vmapped`), on a small ResNet-like model
    (5 seeds, 1 epoch on 12k images) and on the ResNet example (examples/resnet; 5 seeds, 1 epoch on 4k).
(H) the generic (vmapped) packing against the hand-written `PackedMLP` on the seed MLP; same run.
(I) the language model of `sweeps/lm.yaml` (a GPT on `fortunes`, 5 seeds, 1 epoch): packed (vmapped)
    against one seed at a time, in tokens/s and models/min, beside its FLOP bound (6 x params x tokens
    to train, 2 x params x tokens to evaluate, at the measured matmul rate).
(J) the peers: the same 45 models as (E) through hand-wired Ray Tune + MLflowLoggerCallback, one model per
    trial, with a torchvision DataLoader and with the set preloaded as one tensor (`bench/peers.py`).
(K) the packed train step's levers (compile, Adam's kernels, dropout's, the batch copy), `bench/step.py`.
(L) the fixed cost per trial: 200 tiny trials through `sweeps/run.py` against them in-process.
`--only-packing` runs (G) and (H) alone, `--only-lm` (I), `--only-peers` (J), `--only-step` (K),
`--only-overhead` (L).
Every figure is a ratio against a baseline measured in the same run. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402, F401  # imported before any timing, as (A) needs it and the engine's data once did
from overhead import final_line, per_trial_rows, phases, print_per_trial, print_phases, read_marks  # noqa: E402
from peers import peer_rows, print_peers, seed_table_mlp, sweep_command  # noqa: E402  # bench/peers.py, beside this file
from step import big_product, print_steps, step_rows  # noqa: E402
from torch import nn  # noqa: E402

from initsweep.config import TrialConfig, load_config  # noqa: E402
from initsweep.engine.data import cache_dir, load_data  # noqa: E402
from initsweep.engine.train import run_trial  # noqa: E402
from initsweep.sweep.inprocess import run_in_process  # noqa: E402

MLP_PARAMS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def dataloader_baseline(epochs: int) -> float:
    """(A) The founding notebook's loop: torchvision dataset, ToTensor, DataLoader, one model."""
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    start = time.perf_counter()
    full = datasets.FashionMNIST(str(cache_dir()), train=True, transform=transforms.ToTensor())
    train, val = random_split(full, [48_000, 12_000], generator=torch.Generator().manual_seed(0))
    model = seed_table_mlp("PyTorch default", 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(train, batch_size=100, shuffle=True):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in DataLoader(val, batch_size=100))
    assert correct > 0
    return time.perf_counter() - start


def engine(seeds: list[int], data, epochs: int) -> float:
    """(B)/(C) `run_trial` on the founding setup with these seeds (packed when more than one)."""
    cfg = TrialConfig.model_validate({"seeds": seeds, "row": "uniform_fan_in", "train": {"epochs": epochs}})
    start = time.perf_counter()
    run_trial(cfg, data)
    return time.perf_counter() - start


def checkpoint_cost(data, epochs: int) -> dict[str, float]:
    """(F) What a Ray trial adds each epoch for resuming: a snapshot of the training state, saved."""
    cfg = TrialConfig.model_validate({"seeds": list(range(5)), "row": "uniform_fan_in", "train": {"epochs": epochs}})
    saves, size = [], 0

    def save(epoch, seeds, snapshot) -> None:
        nonlocal size
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(snapshot(), Path(folder) / "state.pt")
            size = (Path(folder) / "state.pt").stat().st_size
        saves.append(time.perf_counter() - start)

    start = time.perf_counter()
    run_trial(cfg, data, on_epoch=save)
    epoch_s = (time.perf_counter() - start - sum(saves)) / epochs
    return {"epoch_s": epoch_s, "checkpoint_s": sum(saves) / len(saves), "checkpoint_mb": size / 2**20}


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return torch.relu(x + self.body(x))


def small_resnet(cfg, input_shape, num_classes) -> nn.Module:
    """(G)'s model: a stride-2 stem (28x28 -> 14x14), a residual block of 8 channels, a stride-2 conv to 16
    channels (7x7), a residual block of 16, global average pooling, the classifier."""

    def down(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *down(input_shape[0], 8),
        _Residual(8),
        *down(8, 16),
        _Residual(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def packing_rows(seeds: int = 5, repeats: int = 2) -> dict[str, float]:
    """(G) folded, vmapped and one seed at a time on bench's small ResNet and on the ResNet example, (H)
    vmapped vs PackedMLP on the seed MLP: seconds of `run_trial` (1 epoch, validation and test accuracy
    included), each the fastest of `repeats` runs taken in turn (this VM's speed drifts by up to 30%)."""
    from initsweep.engine import models as engine_models

    sys.path.insert(0, str(ROOT / "examples" / "resnet"))
    import resnet_model  # the example's own module, as a user's sweep imports it

    def fastest(runs: dict[str, Callable[[], object]]) -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        return {name: min(t) for name, t in times.items()}

    out: dict[str, float] = {}
    conv = TrialConfig.model_validate(
        {"seeds": list(range(seeds)), "row": "kaiming_normal", "model": {"name": "cnn"}, "train": {"epochs": 1}}
    )
    saved = engine_models.BUILDERS["cnn"]
    for row, build, limit in (
        ("G_small", small_resnet, 15_000),
        ("G_example", lambda cfg, shape, classes: resnet_model.build(shape, classes), 5_000),
    ):
        data = load_data(limit=limit)
        engine_models.BUILDERS["cnn"] = build  # the row's model behind `model.name: cnn`, for this run only
        try:
            run_trial(conv.model_copy(update={"seeds": [0]}), data, pack=False)  # warm-up
            for name, t in fastest(
                {
                    "folded": lambda data=data: run_trial(conv, data),
                    "vmapped": lambda data=data: run_trial(conv, data, pack="vmap"),
                    "one_at_a_time": lambda data=data: run_trial(conv, data, pack=False),
                }
            ).items():
                out[f"{row}_{name}_s"] = t
        finally:
            engine_models.BUILDERS["cnn"] = saved
        out[f"{row}_speedup"] = out[f"{row}_one_at_a_time_s"] / out[f"{row}_folded_s"]
        out[f"{row}_vmapped_speedup"] = out[f"{row}_one_at_a_time_s"] / out[f"{row}_vmapped_s"]
    data = load_data(limit=15_000)
    mlp = TrialConfig.model_validate({"seeds": list(range(seeds)), "row": "kaiming_normal", "train": {"epochs": 1}})
    run_trial(mlp.model_copy(update={"seeds": [0]}), data)  # warm-up

    times = fastest({"packed_mlp": lambda: run_trial(mlp, data), "vmapped": lambda: run_trial(mlp, data, pack="vmap")})
    out["H_packed_mlp_s"], out["H_vmapped_s"] = times["packed_mlp"], times["vmapped"]
    out["H_speed_vs_packed_mlp"] = out["H_packed_mlp_s"] / out["H_vmapped_s"]
    return out


def lm_rows(repeats: int = 2) -> dict[str, float]:
    """(I) `sweeps/lm.yaml`'s model and data, its first row on its 5 seeds for 1 epoch (validation and test
    included): packed, and one seed at a time, each the fastest of `repeats` runs taken in turn."""
    from initsweep.engine.data import load_configured
    from initsweep.engine.models import build_model

    sweep = load_config(ROOT / "sweeps" / "lm.yaml", ["train.epochs=1"])
    trial = sweep.trials()[0]
    data = load_configured(sweep.data, sweep.task)
    model = build_model(trial.model, data.input_shape, data.num_classes)
    params = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))  # the matmuls' weights
    tokens = {name: split.y.numel() for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    seeds = len(trial.seeds)
    run_trial(trial.model_copy(update={"seeds": [0]}), data)  # warm-up
    times = {"packed": [], "one_at_a_time": []}
    for _ in range(repeats):
        for name, pack in (("packed", True), ("one_at_a_time", False)):  # the CPU's default: one at a time
            start = time.perf_counter()
            run_trial(trial, data, pack=pack)
            times[name].append(time.perf_counter() - start)
    flops = 6 * params * tokens["train"] + 2 * params * (tokens["val"] + tokens["test"])
    gflops = matmul_gflops()
    out = {"params": params, "seeds": seeds, "train_tokens": tokens["train"], "gflops": gflops}
    out["bound_s"] = seeds * flops / (gflops * 1e9)
    for name, t in times.items():
        out[f"{name}_s"] = min(t)
        out[f"{name}_tokens_per_s"] = seeds * tokens["train"] / min(t)
        out[f"{name}_models_per_min"] = 60 * seeds / min(t)
        out[f"{name}_of_bound"] = out["bound_s"] / min(t)
    out["speedup"] = out["one_at_a_time_s"] / out["packed_s"]
    return out


def print_lm(i: dict[str, float]) -> None:
    print(
        f"(I) LM (sweeps/lm.yaml, {i['params'] / 1e3:.0f}k matmul params, {i['seeds']} seeds x "
        f"{i['train_tokens']:,} train tokens, 1 epoch): packed {i['packed_s']:.1f} s "
        f"({i['packed_tokens_per_s']:,.0f} tokens/s, {i['packed_models_per_min']:.1f} models/min, "
        f"{i['packed_of_bound']:.0%} of the bound), one at a time {i['one_at_a_time_s']:.1f} s "
        f"({i['one_at_a_time_tokens_per_s']:,.0f} tokens/s, {i['one_at_a_time_of_bound']:.0%}): packed "
        f"{i['speedup']:.2f}x; FLOP bound {i['bound_s']:.1f} s at {i['gflops']:.0f} GFLOP/s",
        flush=True,
    )


def print_packing(g: dict[str, float]) -> None:
    for row, label in (("G_small", "small ResNet"), ("G_example", "ResNet example")):
        print(
            f"(G) {label}, 5 seeds: folded {g[f'{row}_folded_s']:.1f} s, vmapped {g[f'{row}_vmapped_s']:.1f} s, one at"
            f" a time {g[f'{row}_one_at_a_time_s']:.1f} s: folded {g[f'{row}_speedup']:.2f}x, vmapped"
            f" {g[f'{row}_vmapped_speedup']:.2f}x",
            flush=True,
        )
    print(
        f"(H) seed MLP, 5 seeds: PackedMLP {g['H_packed_mlp_s']:.1f} s, vmapped {g['H_vmapped_s']:.1f} s: vmapped at"
        f" {g['H_speed_vs_packed_mlp']:.2f}x the PackedMLP's speed",
        flush=True,
    )


def matmul_gflops() -> float:
    """(D) Measured fp32 matmul rate, the best of a few 2048x2048 products."""
    rate = big_product()
    return max(rate() for _ in range(5))


def flops_per_model(epochs: int, train: int = 48_000, val: int = 12_000) -> float:
    """Forward 2*P per example, backward 2*P (weight grads) + 2*(P - first layer) (input grads)."""
    first = 784 * 256
    per_train_example = 2 * MLP_PARAMS + 2 * MLP_PARAMS + 2 * (MLP_PARAMS - first)
    return epochs * (train * per_train_example + val * 2 * MLP_PARAMS) + 10_000 * 2 * MLP_PARAMS


class PeakRSS:
    """Peak memory of a process and every process it starts (Ray's included), sampled: the sum of their
    PSS (proportional set size), so pages shared between processes (torch's libraries, Ray's object
    store) count once rather than once per process. `breakdown` is each process's PSS at that peak."""

    def __init__(self, root: int, interval: float = 0.25):
        self.root, self.interval, self.peak = psutil.Process(root), interval, 0
        self.breakdown: list[tuple[str, int]] = []
        self.peak_at = 0.0
        self.cpu_s, self.samples = 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            sample: list[tuple[str, int]] = []
            with contextlib.suppress(psutil.Error):
                for p in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        sample.append((_label(p), p.memory_full_info().pss))
            total = sum(pss for _, pss in sample)
            if total > self.peak:
                self.peak, self.breakdown, self.peak_at = total, sample, time.perf_counter() - start
            self.cpu_s, self.samples = time.thread_time(), self.samples + 1  # the sampler's own cost
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _label(p: psutil.Process) -> str:
    """A process's role: Ray's title (`ray::ImplicitFunc.train`, `ray::IDLE`), else the program (and the
    script a Python runs)."""
    words = p.cmdline() or [p.name()]
    if words[0].startswith("ray::"):
        return words[0].split()[0]
    names = [Path(w).name for w in words[:3] if not w.startswith("-")]
    if names and names[0].startswith("python"):
        return " ".join(names[:2])
    return names[0] if names else p.name()


def print_breakdown(e: dict) -> None:
    """Each process's PSS at the sweep's peak, largest first."""
    print(
        f"  peak at {e['sweep_peak_at_s']:.0f} s into the sweep ({e['samples']} samples, {e['sampler_cpu_s']:.1f} s "
        "of CPU); PSS per process (MB):"
    )
    for label, mb in sorted(e["sweep_peak_breakdown"], key=lambda r: -r[1]):
        print(f"    {mb:7.0f}  {label}")


def sweep_vs_engine(overrides: list[str]) -> dict[str, float]:
    """(E) The seed-table sweep through sweeps/run.py against the engine in-process, same models."""
    sweep = load_config(ROOT / "sweeps" / "seed_table.yaml", overrides)
    torch.set_num_threads(2)
    start = time.perf_counter()
    run_in_process(sweep, device="cpu")
    engine_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        cmd = sweep_command(tmp, overrides)
        marks = Path(tmp) / "timings.jsonl"
        env = os.environ | {"INITSWEEP_TIMINGS": str(marks)}
        started, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Once a second: reading a torch process's PSS costs the kernel ~20 ms, and sampling the sweep's ~20
        # processes 4 times a second took 23 s of CPU from a 95 s sweep on 2 cores (the engine's run has no
        # sampler); the peak is a plateau of the training, seconds long.
        with PeakRSS(proc.pid, interval=1.0) as rss:
            out, err = proc.communicate()
        sweep_s = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep failed: {err[-2000:]}")
        sweep_phases = phases(read_marks(marks), started, time.time())
    models = sweep.n_trials * len(sweep.seeds)
    return {
        "models": models,
        "engine_s": engine_s,
        "sweep_s": sweep_s,
        "sweep_peak_rss_gb": rss.peak / 2**30,
        "sweep_peak_at_s": rss.peak_at,
        "sampler_cpu_s": rss.cpu_s,
        "samples": rss.samples,
        "sweep_peak_breakdown": [(label, pss / 2**20) for label, pss in rss.breakdown],
        "phases": sweep_phases,
    } | final_line(out)


def print_sweep(e: dict) -> None:
    """(E)'s slot use and its phases: where the sweep's time went besides training."""
    print_phases(f"(E) the sweep, phase by phase ({e['slots']} slots)", {"wall_s": e["sweep_s"]} | e)
    fixed = e["sweep_s"] - e["fit_s"]
    print(f"  fixed cost (wall - the trials' stretch): {fixed:.1f} s; in-process engine {e['engine_s']:.1f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch, smaller packs, a 2-seed sweep (a smoke run)")
    p.add_argument("--json", default="bench/results.json", help="where to write the numbers")
    p.add_argument("--only-e", action="store_true", help="row (E) alone: the sweep against the engine, memory")
    p.add_argument("--only-packing", action="store_true", help="rows (G) and (H) alone: generic packing")
    p.add_argument("--only-lm", action="store_true", help="row (I) alone: the language model, packed or not")
    p.add_argument("--only-peers", action="store_true", help="row (J) alone: the hand-wired Ray Tune peers")
    p.add_argument("--only-step", action="store_true", help="row (K) alone: the packed step's levers")
    p.add_argument("--only-overhead", action="store_true", help="row (L) alone: 200 tiny trials, cost per trial")
    args = p.parse_args()
    if args.only_step:
        print_steps(step_rows())
        return 0
    if args.only_overhead:
        print_per_trial(per_trial_rows())
        return 0
    if args.only_peers:
        print_peers(peer_rows(str(cache_dir())))
        return 0
    if args.only_lm:
        torch.set_num_threads(2)
        print_lm(lm_rows())
        return 0
    if args.only_packing:
        torch.set_num_threads(2)
        print_packing(packing_rows())
        return 0
    if args.only_e:
        e = sweep_vs_engine(["seeds=[0,1]", "train.epochs=1"] if args.quick else [])
        print(
            f"(E) {e['models']} models: sweep {e['sweep_s']:.1f} s, engine in-process {e['engine_s']:.1f} s, "
            f"ratio {e['sweep_s'] / e['engine_s']:.2f}x; sweep peak PSS (all processes) {e['sweep_peak_rss_gb']:.2f} GB"
        )
        print_breakdown(e)
        print_sweep(e)
        return 0
    epochs = 1 if args.quick else 2
    packs = [4] if args.quick else [8, 16]
    torch.set_num_threads(2)
    data = load_data()
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, models: int, seconds: float) -> None:
        rows[name] = {"models": models, "seconds": seconds, "models_per_min": 60 * models / seconds}
        print(f"  {name}: {seconds:.1f} s for {models} models", flush=True)

    print(f"benchmark on {os.cpu_count()} CPUs, torch {torch.__version__}, {epochs} epochs", flush=True)
    record("A dataloader, 1 model", 1, dataloader_baseline(epochs))
    record("B engine, 1 seed", 1, min(engine([0], data, epochs) for _ in range(2)))
    for n in packs:
        record(f"C engine, {n} seeds packed", n, engine(list(range(n)), data, epochs))
    gflops = matmul_gflops()
    bound_s = flops_per_model(epochs) / (gflops * 1e9)
    rows["D FLOP bound"] = {"models": 1, "seconds": bound_s, "models_per_min": 60 / bound_s, "gflops": gflops}
    sweep_overrides = ["seeds=[0,1]", "train.epochs=1"] if args.quick else []
    e = sweep_vs_engine(sweep_overrides)
    record("E sweep via Ray (Ray start included)", e["models"], e["sweep_s"])
    record("E engine in-process, same models", e["models"], e["engine_s"])

    base = rows["A dataloader, 1 model"]["models_per_min"]
    bound = rows["D FLOP bound"]["models_per_min"]
    print(f"\n{'method':<40} {'models/min':>10} {'x (A)':>7} {'of (D)':>7}")
    for name, r in rows.items():
        r["x_baseline"] = r["models_per_min"] / base
        r["of_flop_bound"] = r["models_per_min"] / bound
        print(f"{name:<40} {r['models_per_min']:>10.1f} {r['x_baseline']:>7.1f} {r['of_flop_bound']:>6.0%}")
    ratio = e["sweep_s"] / e["engine_s"]
    rss = e["sweep_peak_rss_gb"]
    print(f"\nsweep wall / engine in-process: {ratio:.2f}x; sweep peak PSS (all processes): {rss:.2f} GB")
    print_breakdown(e)
    print_sweep(e)
    f = checkpoint_cost(data, epochs)
    print(
        f"checkpoint per epoch (5 seeds, {f['checkpoint_mb']:.1f} MB): {f['checkpoint_s']:.3f} s, "
        f"{f['checkpoint_s'] / f['epoch_s']:.1%} of the epoch's {f['epoch_s']:.1f} s"
    )
    print(f"matmul peak: {gflops:.0f} GFLOP/s; FLOPs per model: {flops_per_model(epochs) / 1e9:.0f} GFLOP")
    out = {"epochs": epochs, "rows": rows, "sweep_over_engine": ratio, "sweep_peak_rss_gb": e["sweep_peak_rss_gb"]}
    out["sweep_peak_breakdown_mb"] = e["sweep_peak_breakdown"]
    out["sweep"] = {k: e[k] for k in ("phases", "busy", "fit_s", "slots", "sweep_s")}
    out["checkpoint"] = f | {"of_epoch": f["checkpoint_s"] / f["epoch_s"]}
    out["packing"] = packing_rows()
    print_packing(out["packing"])
    out["lm"] = lm_rows()
    print_lm(out["lm"])
    out["step"] = step_rows()
    print_steps(out["step"])
    out["per_trial"] = per_trial_rows()
    print_per_trial(out["per_trial"])
    out["peers"] = peer_rows(str(cache_dir()))
    print_peers(out["peers"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
