"""Results over seeds: per-epoch and final aggregates, and the printed result table.

Grows with the report issue (confidence intervals, paired tests, plots); for now mean and sample std.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from initsweep.train import SeedResult

__all__ = ["aggregate", "format_table"]


def aggregate(seeds: Sequence[SeedResult], epoch: int | None = None) -> dict[str, float]:
    """Mean (`metric`) and sample std (`metric_std`) over seeds of each metric at `epoch` (1-based),
    or of the final metrics with test accuracy when `epoch` is None; plus `n` and `diverged`."""
    rows = [s.final if epoch is None else s.epochs[epoch - 1] for s in seeds]
    out: dict[str, float] = {"n": len(rows), "diverged": sum(s.diverged for s in seeds)}
    for key in rows[0]:
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def format_table(
    rows: Sequence[tuple[str, Sequence[SeedResult]]], metric: str = "val_accuracy", mode: str = "max"
) -> str:
    """A plain-text table of (name, seed results) rows, best mean `metric` first."""
    stats = [(name, aggregate(seeds), seeds) for name, seeds in rows]
    stats.sort(key=lambda t: -t[1][metric] if mode == "max" else t[1][metric])
    train_mode = any("val_accuracy_train_mode" in s for _, s, _ in stats)
    header = ["scheme", "n", "val acc % (eval)"]
    header += ["val acc % (dropout on)"] if train_mode else []
    header += ["test acc %", "train loss", "last-batch loss", "diverged", "s/seed"]
    lines = []
    for name, s, seeds in stats:
        cells = [name, str(s["n"]), f"{s['val_accuracy']:.2f} ± {s['val_accuracy_std']:.2f}"]
        if train_mode:
            cells.append(f"{s['val_accuracy_train_mode']:.2f} ± {s['val_accuracy_train_mode_std']:.2f}")
        cells += [
            f"{s['test_accuracy']:.2f}" if "test_accuracy" in s else "-",
            f"{s['train_loss']:.4g}",
            f"{s['last_batch_loss']:.4g}",
            str(s["diverged"]),
            f"{sum(x.seconds for x in seeds) / len(seeds):.2f}",
        ]
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in lines])
