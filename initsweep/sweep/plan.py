"""What a sweep would run, without running it (`sweeps/run.py --dry-run`): its trials with their
resolved parameters, or the space a search draws from, and the resources they ask for; for a sweep with
your code or a layer selection, the layers its init touches (the model built, one batch run)."""

from __future__ import annotations

from typing import Any

from initsweep.catalog.datasets import DATASETS
from initsweep.catalog.models import MODEL_CONFIGS
from initsweep.catalog.schemes import Range, get_scheme
from initsweep.config import SweepConfig, window_count

__all__ = ["describe", "needs_build"]


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _range(r: Range | float | int | str) -> str:
    if not isinstance(r, Range):
        return f"= {_value(r)} (fixed)"
    if r.choices:
        return "one of " + ", ".join(r.choices)
    kind = "integers" if r.integer else "log scale" if r.log else "linear"
    return f"in [{_value(r.low)}, {_value(r.high)}] ({kind})"


def needs_build(sweep: SweepConfig) -> bool:
    """Whether the dry run builds the model and runs a batch (needs torch and the data): for your own
    model or dataset, a layer selection or override rules, a scheme that draws by role (it needs the
    model's roles). The built-in ones are known without."""
    trials = sweep.trials() if sweep.schemes is not None else [sweep]
    schemes = [row.scheme for row in sweep.schemes] if sweep.schemes is not None else list(sweep.search.schemes)
    return any(get_scheme(name).needs_roles for name in schemes) or any(
        type(t.model) is not MODEL_CONFIGS.get(t.model.name)
        or not t.data.builtin
        or not t.init.layers.default
        or t.init.overrides
        for t in trials
    )


def _model(model, from_grid: list[str] = ()) -> str:
    """The network in a few words: `mlp 16 x 256 relu, dropout 0`."""
    if type(model) is not MODEL_CONFIGS.get(model.name):  # yours
        shown = {k: v for k, v in model.model_dump().items() if k != "name" and v not in (None, {})}
        return f"{model.name} " + ", ".join(f"{k}={v}" for k, v in shown.items())
    if from_grid:
        return f"{model.name} with {', '.join(from_grid)} from the grid, dropout {model.dropout:g}"
    if model.name == "mlp":
        hidden = model.hidden
        shape = f"{len(hidden)} x {hidden[0]}" if len(set(hidden)) == 1 and len(hidden) > 2 else str(hidden)
        return f"mlp {shape} {model.activation}, dropout {model.dropout:g}"
    if model.name == "cnn":
        return f"{model.name} {model.activation}, dropout {model.dropout:g}"
    return f"{model.name} " + ", ".join(f"{k}={_value(v)}" for k, v in model.model_dump().items() if k != "name")


def _size(sweep: SweepConfig, kind: str) -> str:
    """How many trials and trained models (a tuned sweep's candidates train on the tuning seeds)."""
    head = f"sweep {sweep.name!r} ({kind}): "
    if sweep.tune is None:
        n = sweep.n_trials
        return head + f"{n} trials x {len(sweep.seeds)} seeds {sweep.seeds} = {n * len(sweep.seeds)} trained models"
    cells, t = len(sweep.schemes) * len(sweep.combinations()), sweep.tune
    models = cells * (t.n_candidates * len(t.seeds) + len(sweep.seeds))
    return head + (
        f"{sweep.n_trials} trials ({cells * t.n_candidates} candidates x {len(t.seeds)} tuning seeds, then {cells} "
        f"x {len(sweep.seeds)} evaluation seeds) = {models} trained models"
    )


def _stages(sweep: SweepConfig) -> list[str]:
    """A tuned sweep's two stages: what each row tries on the tuning seeds, then where it is judged."""
    t = sweep.tune
    tried = "; ".join(
        f"{k} in [{', '.join(_value(v) for v in spec)}]"
        if isinstance(spec, list)
        else f"{k} in [{_value(spec.low)}, {_value(spec.high)}] ({'log scale' if spec.log else 'linear'})"
        for k, spec in t.params.items()
    )
    how = "every combination" if t.n_trials is None else f"{t.n_trials} Optuna draws (seed {t.seed})"
    cells = len(sweep.schemes) * len(sweep.combinations())
    confirm = f", at {', '.join(f'{k}={_value(v)}' for k, v in t.confirm.items())} (tune.confirm)" if t.confirm else ""
    return [
        f"stage 1 (tune): each of the {cells} rows x combinations tries {how} of {tried}, "
        f"{t.n_candidates} trials each on the tuning seeds {t.seeds}, and keeps the best mean "
        f"{sweep.objective.metric}",
        f"stage 2 (eval): each row at its own chosen values{confirm} on the evaluation seeds {sweep.seeds} "
        f"({cells} trials; the report judges these only). The stage-2 trials listed below are shown at the "
        "config's own settings; the chosen values replace them.",
    ]


def describe(sweep: SweepConfig, data: Any = None, layers: list[str] | None = None) -> str:
    """A plain-text plan: what trains, on what, with which resources; `data` (the loaded `Data`) gives the
    sizes of a dataset the registry does not know, `layers` the lines of the layers the init touches."""
    d, t, r = sweep.data, sweep.train, sweep.resources
    examples = "images"
    if d.text:  # windows of context tokens, counted from the stream's blocks (the file is read already)
        blocks = d.text_blocks()
        n_val, n = window_count(blocks[1], d.context), sum(window_count(b, d.context) for b in blocks[:2])
        examples = f"windows of {d.context} tokens"
    elif data is not None:
        n, n_val = len(data.train) + len(data.val), len(data.val)
    else:
        n = d.limit or DATASETS[d.dataset].train_size
        n_val = round(n * d.val_fraction)
    dataset = d.source_name
    kind = "search" if sweep.search else "grid"
    model = _model(sweep.model, [k for k in sweep.grid if k.startswith("model.")])
    lines = [
        _size(sweep, kind),
        f"each: {model} on {dataset} ({n - n_val:,} train / {n_val:,} validation {examples}), "
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
        if sweep.tune is not None:
            lines += [*_stages(sweep), ""]
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
        for key, spec in s.params.items():  # settings drawn beside the scheme, whichever it is
            drawn = f"one of {spec}" if isinstance(spec, list) else _range(Range(spec.low, spec.high, log=spec.log))
            lines.append(f"  and {key} {drawn}")
    if layers is not None:
        first = "the first trial's" if sweep.n_trials > 1 else "the"
        lines += ["", f"{first} init touches {len(layers)} layers (init.layers: {sweep.init.layers.summary()}):"]
        lines += [f"  {line}" for line in layers]
    lines += ["", "dry run: nothing trained, nothing written"]
    return "\n".join(lines)
