"""The coord check (Tensor Programs V, Figure 5; the `mup` package's `coord_check`): train a few steps at
several widths and watch the size of each layer's activations. Under muP every line is flat in width; under
sp the readout's activations grow with width once training moves it, which is why sp's best lr shrinks.

The statistic is `mup`'s: `output.abs().mean()`, each module's output in the forward pass of each step
(train mode), before that step's update, so step 1 is the model at init. The trial is the sweep's first
`schemes` row at each width (`model.width`) under each parametrization, trained on each seed as
`run_trial` trains it (its init, optimizer param groups, lr schedule and data order), in this process.
"""

from __future__ import annotations

import torch
from pydantic import ValidationError
from torch import nn

from initsweep.config import ConfigError, SweepConfig, TrialConfig
from initsweep.config.errors import _one_line
from initsweep.engine.data import Data
from initsweep.engine.models import build_model, check_buildable
from initsweep.engine.parametrizations import width_plan
from initsweep.engine.tasks import TASKS
from initsweep.engine.train import _initialized_model, _optimizer, _schedule, seed_streams

__all__ = ["COLUMNS", "GROUP_SEPARATOR", "coord_check", "coord_trials", "module_groups"]

COLUMNS = ("parametrization", "width", "step", "module", "seed", "l1")
"""One row per measurement: `module` is `GROUP/NAME` (`readout/5`, `attention/blocks.0.attn.qkv`)."""
GROUP_SEPARATOR = "/"
ROLE_GROUPS = {
    "embedding": "embedding",
    "attention.qkv": "attention",
    "attention.q": "attention",
    "attention.k": "attention",
    "attention.v": "attention",
    "attention.out": "attention",
    "mlp.in": "mlp",
    "mlp.out": "mlp",
    "readout": "readout",
}
"""A module's `init_role` -> its group (norms are left out: a LayerNorm's output is normalized by design)."""
KIND_GROUPS = {"input": "input", "hidden": "hidden", "output": "readout"}
"""A weight's width kind (`ParamWidth.kind`) -> its group, for a model without roles (the mlp)."""
LOGITS = "logits"
"""The name of the network's own output, measured as the readout where no module is one (a tied gpt)."""


def coord_trials(sweep: SweepConfig) -> list[TrialConfig]:
    """The trial of the first `schemes` row at each width under each parametrization (parametrization
    slowest); every problem a `ConfigError` naming the `coord_check` key whose value caused it."""
    check = sweep.coord_check
    if check is None:
        raise ConfigError("coord_check: missing; give {widths: [...]} (and steps, parametrizations) to run one")
    if sweep.schemes is None:
        raise ConfigError("schemes: the coord check trains the first `schemes` row; a search sweep has none")
    trials = []
    for parametrization in check.parametrizations:
        for width in check.widths:
            axes = {"model.width": width, "model.parametrization": parametrization}
            try:
                trial = sweep.trial(sweep.schemes[0], axes)
            except ConfigError as err:
                raise ConfigError(f"coord_check: {err}") from None
            except ValidationError as err:
                problem = _one_line(err)
                if problem.startswith(("model.parametrization", "model.base_width")):
                    raise ConfigError(f"coord_check.parametrizations: {parametrization} fails: {problem}") from None
                raise ConfigError(f"coord_check.widths: {width} fails under {parametrization}: {problem}") from None
            if getattr(trial.model, "model_width", None) != width:
                raise ConfigError(
                    f"coord_check.widths: model.width {width} sets no layer's width of model {trial.model.name} "
                    "(an mlp's width needs model.depth)"
                )
            trials.append(trial)
    return trials


def module_groups(small: TrialConfig, large: TrialConfig, data: Data) -> dict[str, str]:
    """Qualified module name -> its group: by `init_role` where the model declares roles, else by its
    weight's width kind, found by comparing the model at two widths (as `mup`'s `set_base_shapes` does)."""
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        narrow = build_model(small.model, data.input_shape, data.num_classes)
        wide = build_model(large.model, data.input_shape, data.num_classes)
    roles = {n: m.init_role for n, m in wide.named_modules() if hasattr(m, "init_role")}
    if roles:
        groups = {n: ROLE_GROUPS[r] for n, r in roles.items() if r in ROLE_GROUPS}
    else:
        kinds = {n: w.kind for n, w in width_plan("mup", wide, narrow).widths.items()}
        groups = {}
        for name, _ in wide.named_modules():
            kind = kinds.get(f"{name}.weight" if name else "weight")
            if kind in KIND_GROUPS:
                groups[name] = KIND_GROUPS[kind]
    if "readout" not in groups.values():
        groups[""] = "readout"  # the root module's output: the logits
    return groups


def coord_check(sweep: SweepConfig, data: Data, device: str | torch.device = "cpu") -> list[dict]:
    """The coord check's rows (`COLUMNS`): each parametrization, width, seed, step and module's l1."""
    trials = coord_trials(sweep)
    for trial in trials:
        try:
            check_buildable(trial, data)
        except ConfigError as err:
            raise ConfigError(f"coord_check.widths: {trial.model.model_width} fails: {err}") from None
    groups = module_groups(trials[0], trials[-1], data)
    data = data.to(device)
    rows = []
    for trial in trials:
        for seed in sweep.seeds:
            for step, module, l1 in _train(trial, data, seed, groups, sweep.coord_check.steps, device):
                rows.append(
                    {
                        "parametrization": trial.model.parametrization,
                        "width": trial.model.model_width,
                        "step": step,
                        "module": module,
                        "seed": seed,
                        "l1": l1,
                    }
                )
    return rows


def _train(
    trial: TrialConfig, data: Data, seed: int, groups: dict[str, str], steps: int, device: str | torch.device
) -> list[tuple[int, str, float]]:
    """(step, module, l1) of one seed's model over `steps` training steps, as `run_trial` trains it."""
    _, order_seed, dropout_seed = seed_streams(seed)
    model, plan, _ = _initialized_model(trial, data, seed)
    model = model.to(device).train()
    optimizer = _optimizer(trial, plan, model.named_parameters())
    scheduler = _schedule(trial, optimizer, len(data.train))
    task, batch = TASKS[trial.task], trial.train.batch_size
    order = _batches(len(data.train), batch, steps, torch.Generator().manual_seed(order_seed))
    measured: dict[str, float] = {}
    out: list[tuple[int, str, float]] = []

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            if isinstance(output, torch.Tensor):
                measured[name] = output.detach().abs().mean().item()

        return record

    named = dict(model.named_modules())
    handles = [
        named[name].register_forward_hook(hook(f"{group}{GROUP_SEPARATOR}{name or LOGITS}"))
        for name, group in groups.items()
    ]
    try:
        with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
            torch.manual_seed(dropout_seed)
            for step, idx in enumerate(order, 1):
                x, y = data.train.rows(idx.to(device))
                measured.clear()
                loss = task.loss(model(x).unsqueeze(0), y.unsqueeze(0))[0]
                out += [(step, module, l1) for module, l1 in measured.items()]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    finally:
        for handle in handles:
            handle.remove()
    return out


def _batches(size: int, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """The first `steps` batches of the seed's epoch order (epochs as training draws them, if they run out)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(size, generator=generator)
        out += [perm[s : s + batch] for s in range(0, size, batch)]
    return out[:steps]
