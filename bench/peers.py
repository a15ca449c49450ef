"""(J) The peers: the seed table's 45 models (9 schemes x 5 seeds, the founding settings) written the stock way
a competent PyTorch user writes them, against `python sweeps/run.py` in the same run.

Hand-wired Ray Tune (a plain `grid_search` over scheme and seed, no search), `MLflowLoggerCallback` into a
SQLite store, one model per trial, 1 CPU each, a function trainable reporting every epoch. Each peer trains
what our sweep trains: the 784-256-128-10 MLP with dropout 0.2, Adam lr 1e-3, batch 100, 2 epochs on the
48k/12k split, validation after each epoch in eval mode and with dropout on (the seed table's
`val_train_mode`), the test set after the last. Two variants:

- (a) `dataloader`: torchvision's `FashionMNIST` with `ToTensor()` and a shuffling `DataLoader` (the
  founding notebook's loop), each trial building its own dataset;
- (b) `preloaded`: the whole set as one float tensor, put in Ray's object store once (`tune.with_parameters`)
  and batched by index from a `randperm`: what a user who knows PyTorch writes, and the one to beat.

`python bench/bench.py --only-peers` prints wall time and models/min for both and for our sweep, and the two
ratios. Each wall time counts Ray's start and shutdown, as our sweep's does.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(5)
EPOCHS = 2
STEPS = EPOCHS * 48_000 // 100  # each model's train steps: 480 batches of 100 an epoch
TARGETS = {"preloaded": 4, "DataLoader": 10}  # issue 25: ours at least this many times faster than each peer


def _uniform_fan_in(w: torch.Tensor) -> None:
    y = 1 / math.sqrt(w.shape[1])
    nn.init.uniform_(w, -y, y)


INITS = {  # the seed table's rows, as a user writes them with torch.nn.init
    "all zeros": lambda w: nn.init.zeros_(w),
    "all ones": lambda w: nn.init.ones_(w),
    "uniform [0, 1)": lambda w: nn.init.uniform_(w, 0.0, 1.0),
    "uniform [-0.5, 0.5)": lambda w: nn.init.uniform_(w, -0.5, 0.5),
    "uniform [-y, y), y=1/sqrt(n)": _uniform_fan_in,
    "normal(0, 1/sqrt(n))": lambda w: nn.init.normal_(w, 0.0, 1 / math.sqrt(w.shape[1])),
    "PyTorch default": None,
    "xavier_uniform (ReLU gain)": lambda w: nn.init.xavier_uniform_(w, gain=math.sqrt(2)),
    "kaiming_uniform (ReLU)": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
}


def seed_table_mlp(scheme: str, seed: int) -> nn.Module:
    """The founding MLP (784-256-128-10, ReLU, dropout 0.2), initialized as the seed table's row `scheme`."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )
    init = INITS[scheme]
    if init is not None:
        for m in model:
            if isinstance(m, nn.Linear):
                init(m.weight)
                nn.init.zeros_(m.bias)
    return model


def _accuracy(model: nn.Module, batches, train_mode: bool) -> float:
    model.train(train_mode)
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return 100 * correct / total


def _fit(model: nn.Module, train_batches, val_batches, test_batches) -> None:
    """The loop both peers share: train an epoch, validate (eval mode and dropout on), report; test at the end."""
    from ray import tune

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        total, steps = 0.0, 0
        for x, y in train_batches(epoch):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        metrics = {
            "train_loss": total / steps,
            "val_accuracy": _accuracy(model, val_batches(), False),
            "val_accuracy_train_mode": _accuracy(model, val_batches(), True),
        }
        if epoch == EPOCHS - 1:
            metrics["test_accuracy"] = _accuracy(model, test_batches(), False)
        tune.report(metrics)


def dataloader_trial(config: dict) -> None:
    """(a) torchvision dataset, ToTensor, DataLoader: built in each trial."""
    from torch.utils.data import DataLoader, random_split
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    root = config["root"]
    full = datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor())
    train, val = random_split(full, [48_000, 12_000], generator=torch.Generator().manual_seed(0))
    test = datasets.FashionMNIST(root, train=False, transform=transforms.ToTensor())
    order = torch.Generator().manual_seed(config["seed"])
    _fit(
        seed_table_mlp(config["scheme"], config["seed"]),
        lambda epoch: DataLoader(train, batch_size=100, shuffle=True, generator=order),
        lambda: DataLoader(val, batch_size=1000),
        lambda: DataLoader(test, batch_size=1000),
    )


def preloaded_trial(config: dict, data: dict) -> None:
    """(b) one preloaded tensor from the object store, batches by index from a randperm."""
    torch.set_num_threads(1)
    x, y, tx, ty = data["x"], data["y"], data["test_x"], data["test_y"]
    split = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    train, val = split[:48_000], split[48_000:]
    order = torch.Generator().manual_seed(config["seed"])

    def train_batches(epoch):
        perm = train[torch.randperm(len(train), generator=order)]
        return ((x[i], y[i]) for i in perm.split(100))

    def chunks(ix, iy, idx=None):
        n = len(iy) if idx is None else len(idx)
        for s in range(0, n, 1000):
            i = slice(s, s + 1000) if idx is None else idx[s : s + 1000]
            yield ix[i], iy[i]

    _fit(
        seed_table_mlp(config["scheme"], config["seed"]),
        train_batches,
        lambda: chunks(x, y, val),
        lambda: chunks(tx, ty),
    )


def _preloaded_data(root: str) -> dict:
    from torchvision import datasets

    train, test = datasets.FashionMNIST(root, train=True), datasets.FashionMNIST(root, train=False)
    as_float = lambda d: d.data.unsqueeze(1).float().div_(255)  # noqa: E731  # what ToTensor gives
    return {"x": as_float(train), "y": train.targets, "test_x": as_float(test), "test_y": test.targets}


def run_peer(variant: str, root: str) -> float:
    """Wall seconds for the 45 models through hand-wired Ray Tune + MLflowLoggerCallback (Ray start included)."""
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            if variant == "dataloader":
                trainable = dataloader_trial
            else:
                trainable = tune.with_parameters(preloaded_trial, data=_preloaded_data(root))
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={
                    "scheme": tune.grid_search(list(INITS)),
                    "seed": tune.grid_search(list(SEEDS)),
                    "root": root,
                },
                tune_config=tune.TuneConfig(metric="val_accuracy", mode="max"),
                run_config=tune.RunConfig(
                    name=f"peer-{variant}",
                    storage_path=f"{tmp}/ray",
                    callbacks=[
                        MLflowLoggerCallback(tracking_uri=f"sqlite:///{tmp}/mlflow.db", experiment_name=variant)
                    ],
                    verbose=0,
                ),
            )
            results = tuner.fit()
        finally:
            ray.shutdown()
        seconds = time.perf_counter() - start
    errors = [r.error for r in results if r.error]
    if errors or len(results) != len(INITS) * len(SEEDS):
        raise RuntimeError(f"peer {variant}: {len(errors)} trials failed: {errors[:1]}")
    return seconds


def sweep_command(tmp: str, overrides: list[str] = ()) -> list[str]:
    """`python sweeps/run.py` on the default seed table, its Ray state and report under `tmp`."""
    cmd = [sys.executable, str(ROOT / "sweeps" / "run.py"), "--storage-path", f"{tmp}/ray", "--report-dir", f"{tmp}/r"]
    return cmd + [arg for o in overrides for arg in ("--set", o)]


def ours() -> float:
    """`python sweeps/run.py` (the default seed table: the same 45 models), end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(sweep_command(tmp), cwd=tmp, check=True, capture_output=True)
        return time.perf_counter() - start


def peer_rows(root: str) -> dict[str, float]:
    """(J) our sweep and both peers, one after another in this run; seconds and models/min each; and the
    floor under any sweep of these models on this machine (`step.sweep_floor`), against each target."""
    from step import sweep_floor

    models = len(INITS) * len(SEEDS)
    rows = {
        "ours": ours(),
        "peer_preloaded": run_peer("preloaded", root),
        "peer_dataloader": run_peer("dataloader", root),
    }
    out = {f"{k}_s": v for k, v in rows.items()} | {f"{k}_models_per_min": 60 * models / v for k, v in rows.items()}
    out["models"] = models
    out["x_dataloader_peer"] = rows["peer_dataloader"] / rows["ours"]
    out["x_preloaded_peer"] = rows["peer_preloaded"] / rows["ours"]
    out["floor"] = sweep_floor(models, STEPS)
    return out


def target_lines(j: dict) -> list[str]:
    """Each ratio target against the floor: a sweep that must finish within the target's time, but whose
    train steps alone take longer at the floor, cannot meet it on this machine with torch's kernels."""
    floor = j["floor"]["bound_s"]
    lines = []
    for peer, times in TARGETS.items():
        limit = j[f"peer_{peer.lower()}_s"] / times
        verdict = (
            "out of reach on this machine: the floor alone is longer"
            if floor > limit
            else f"not out of reach: the floor leaves {limit - floor:.1f} s for validation, start and end"
        )
        lines.append(f"  {times}x the {peer} peer is {limit:.1f} s; {verdict}")
    return lines


def print_peers(j: dict[str, float]) -> None:
    print(f"\n(J) the seed table's {j['models']} models, end to end (Ray start and MLflow writes included):")
    for name, key in (
        ("sweeps/run.py (ours)", "ours"),
        ("peer (b): preloaded tensor", "peer_preloaded"),
        ("peer (a): torchvision DataLoader", "peer_dataloader"),
    ):
        print(f"  {name:<36} {j[f'{key}_s']:>7.1f} s  {j[f'{key}_models_per_min']:>6.1f} models/min")
    print(
        f"  ours is {j['x_dataloader_peer']:.1f}x the DataLoader peer and "
        f"{j['x_preloaded_peer']:.1f}x the preloaded peer"
    )
    f = j["floor"]
    print(
        f"  floor: the {f['models']} models' {f['steps']} train steps each, at the step's floor in sequence "
        f"({f['per_model_step_ms']:.2f} ms a model-step on {f['cores']} cores; its products, fused Adam, "
        f"gathers and draws, nothing else), take {f['bound_s']:.1f} s at least"
    )
    print("\n".join(target_lines(j)))
