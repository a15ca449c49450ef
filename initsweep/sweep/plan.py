"""What a sweep would run, without running it (`sweeps/run.py --dry-run`): its trials with their
resolved parameters, or the space a search draws from, and the resources they ask for."""

from __future__ import annotations

from initsweep.catalog.datasets import DATASETS
from initsweep.catalog.schemes import Range
from initsweep.config import SweepConfig

__all__ = ["describe"]


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _range(r: Range | float | int | str) -> str:
    if not isinstance(r, Range):
        return f"= {_value(r)} (fixed)"
    if r.choices:
        return "one of " + ", ".join(r.choices)
    kind = "integers" if r.integer else "log scale" if r.log else "linear"
    return f"in [{_value(r.low)}, {_value(r.high)}] ({kind})"


def _model(model, from_grid: list[str] = ()) -> str:
    """The network in a few words: `mlp 16 x 256 relu, dropout 0`."""
    if from_grid:
        return f"{model.name} with {', '.join(from_grid)} from the grid, dropout {model.dropout:g}"
    if model.name == "mlp":
        hidden = model.hidden
        shape = f"{len(hidden)} x {hidden[0]}" if len(set(hidden)) == 1 and len(hidden) > 2 else str(hidden)
        return f"mlp {shape} {model.activation}, dropout {model.dropout:g}"
    return f"{model.name} {model.activation}, dropout {model.dropout:g}"


def describe(sweep: SweepConfig) -> str:
    """A plain-text plan: what trains, on what, with which resources."""
    d, t, r = sweep.data, sweep.train, sweep.resources
    n = d.limit or DATASETS[d.dataset].train_size
    n_val = round(n * d.val_fraction)
    kind = "search" if sweep.search else "grid"
    model = _model(sweep.model, [k for k in sweep.grid if k.startswith("model.")])
    lines = [
        f"sweep {sweep.name!r} ({kind}): {sweep.n_trials} trials x {len(sweep.seeds)} seeds {sweep.seeds} = "
        f"{sweep.n_trials * len(sweep.seeds)} trained models",
        f"each: {model} on {d.dataset} ({n - n_val:,} train / {n_val:,} validation images), "
        f"{t.optimizer} lr {t.lr:g}, batch {t.batch_size}, {t.epochs} epochs; objective: mean "
        f"{sweep.objective.metric} ({sweep.objective.mode})",
        f"resources: {r.cpus_per_trial:g} CPU and {r.gpus_per_trial:g} GPU per trial, "
        + (f"at most {r.max_concurrent} at once" if r.max_concurrent else "as many at once as the cluster holds")
        + f"; retries: {r.max_failures}; scheduler: {sweep.scheduler.kind}",
        "",
    ]
    if sweep.schemes is not None:
        if sweep.grid:
            axes = "; ".join(f"{k} in [{', '.join(_value(v) for v in vs)}]" for k, vs in sweep.grid.items())
            lines += [f"{len(sweep.schemes)} scheme rows x {len(sweep.combinations())} grid combinations: {axes}", ""]
        rows = [
            (str(i), t.name, t.row.scheme, ", ".join(f"{k}={_value(v)}" for k, v in t.row.params.items()) or "-")
            for i, t in enumerate(sweep.trials(), 1)
        ]
        header = ("#", "trial", "scheme", "params (resolved)")
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for cells in (header, *rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    else:
        s = sweep.search
        lines.append(f"Optuna ({s.sampler}, seed {s.seed}) draws {s.n_trials} trials from:")
        for scheme, params in s.space().items():
            shown = "; ".join(f"{k} {_range(v)}" for k, v in params.items()) or "no parameters"
            lines.append(f"  {scheme}: {shown}")
    lines += ["", "dry run: nothing trained, nothing written"]
    return "\n".join(lines)
