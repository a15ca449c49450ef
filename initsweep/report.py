"""Results over seeds: per-trial summaries and the printed result table.

Grows with the report issue (confidence intervals, paired tests, plots); for now mean and sample std.
"""

from __future__ import annotations

import statistics

from initsweep.train import TrialResult

__all__ = ["format_table", "summarize"]


def summarize(result: TrialResult) -> dict[str, float]:
    """Mean and sample std over seeds of each final metric, plus n and the diverged count."""
    finals = [s.final for s in result.seeds]
    out: dict[str, float] = {"n": len(finals), "diverged": sum(s.diverged for s in result.seeds)}
    for key in finals[0]:
        values = [f[key] for f in finals]
        out[f"{key}_mean"] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def format_table(results: list[TrialResult]) -> str:
    """A plain-text table, best mean validation accuracy (eval mode) first."""
    rows = sorted(((r.config.scheme.name, summarize(r), r) for r in results), key=lambda t: -t[1]["val_accuracy_mean"])
    train_mode = "val_accuracy_train_mode_mean" in rows[0][1]
    header = ["scheme", "n", "val acc % (eval)"]
    header += ["val acc % (dropout on)"] if train_mode else []
    header += ["test acc %", "train loss", "last-batch loss", "diverged", "s/seed"]
    lines = []
    for name, s, r in rows:
        cells = [name, str(s["n"]), f"{s['val_accuracy_mean']:.2f} ± {s['val_accuracy_std']:.2f}"]
        if train_mode:
            cells.append(f"{s['val_accuracy_train_mode_mean']:.2f} ± {s['val_accuracy_train_mode_std']:.2f}")
        cells += [
            f"{s['test_accuracy_mean']:.2f}",
            f"{s['train_loss_mean']:.4g}",
            f"{s['last_batch_loss_mean']:.4g}",
            str(s["diverged"]),
            f"{sum(x.seconds for x in r.seeds) / len(r.seeds):.2f}",
        ]
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*c) for c in lines])
