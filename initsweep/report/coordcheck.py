"""The coord check's files: its rows as a CSV and the familiar figure (activation size against width, one
line per step; rows of panels = parametrizations, columns = module groups). They read the rows
`initsweep.engine.coordcheck.coord_check` returns, whose `module` is `GROUP/NAME`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["COLUMNS", "GROUP_ORDER", "group_of", "last_step_readout", "write_csv", "write_figure"]

COLUMNS = ("parametrization", "width", "step", "module", "seed", "l1")
"""The CSV's columns, in order (the engine's rows carry exactly these keys)."""
GROUP_ORDER = ("input", "embedding", "hidden", "attention", "mlp", "readout")
"""The figure's columns, input side first; a group not named here comes before the readout."""


def group_of(module: str) -> str:
    """`readout` of `readout/5`: the part before the engine's `/`."""
    return module.split("/", 1)[0]


def write_csv(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "l1": format(r["l1"], ".6g")} for r in rows)
    return path


def _means(rows: list[dict]) -> dict[tuple[str, str, int, int], float]:
    """(parametrization, group, step, width) -> l1 averaged over the group's modules and the seeds (finite
    values only: a diverged seed's inf or nan would hide the others)."""
    values: dict[tuple[str, str, int, int], list[float]] = {}
    for r in rows:
        key = (r["parametrization"], group_of(r["module"]), int(r["step"]), int(r["width"]))
        values.setdefault(key, [])
        if math.isfinite(float(r["l1"])):
            values[key].append(float(r["l1"]))
    return {k: sum(v) / len(v) if v else math.nan for k, v in values.items()}


def last_step_readout(rows: list[dict]) -> dict[str, dict[int, float]]:
    """Parametrization -> width -> the readout's l1 at the last step (mean over seeds): the one number
    that tells sp from muP."""
    means = _means(rows)
    last = max(int(r["step"]) for r in rows)
    out: dict[str, dict[int, float]] = {}
    for (p, group, step, width), value in means.items():  # the rows' order: the config's parametrizations
        if group == "readout" and step == last:
            out.setdefault(p, {})[width] = value
    return {p: dict(sorted(by_width.items())) for p, by_width in out.items()}


def write_figure(rows: list[dict], path: Path, title: str | None = None) -> Path:
    """Log-log l1 against width, one line per step (darker = later), a panel per parametrization (rows)
    and module group (columns); each column shares its y axis so that sp and muP compare at a glance."""
    means = _means(rows)
    params = list(dict.fromkeys(r["parametrization"] for r in rows))
    found = {group_of(r["module"]) for r in rows}
    others = sorted(found - set(GROUP_ORDER))
    groups = [g for g in GROUP_ORDER[:-1] if g in found] + others + (["readout"] if "readout" in found else [])
    steps = sorted({int(r["step"]) for r in rows})
    widths = sorted({int(r["width"]) for r in rows})
    colors = plt.get_cmap("viridis")
    fig, axes = plt.subplots(
        len(params),
        len(groups),
        figsize=(3.2 * len(groups), 2.8 * len(params)),
        sharex=True,
        sharey="col",
        squeeze=False,
    )
    for i, p in enumerate(params):
        for j, group in enumerate(groups):
            ax = axes[i][j]
            for k, step in enumerate(steps):
                ys = [means.get((p, group, step, w), math.nan) for w in widths]
                shade = colors(0.9 * k / max(1, len(steps) - 1))
                ax.plot(widths, ys, marker="o", markersize=3, color=shade, label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{p}: {group}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if i == len(params) - 1:
                ax.set_xlabel("width")
            if j == 0:
                ax.set_ylabel("mean |activation|")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(title or "coord check: mean |activation| per coordinate against width (flat = width-stable)")
    fig.tight_layout(rect=(0, 0, 1 - 0.7 / fig.get_figwidth(), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path
