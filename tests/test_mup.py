"""muP (`model.parametrization: mup`): the init's scale and the per-group lrs at two widths, against the
rules (statistically) and against the `mup` package; the same model as sp at the base width; refused
combinations; and what `mup` users trip on: torch.compile, tied embeddings, lr schedules, checkpoints."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from initsweep.config import ConfigError, DataConfig, parse_config
from initsweep.engine.data import load_configured
from initsweep.engine.models import build_model, check_buildable, initialize
from initsweep.engine.train import PackingFallbackWarning, _optimizer, _schedule, run_trial
from initsweep.engine.transformers import Block

BASE = 64
SHAPE, CLASSES = (1, 28, 28), 10


def sweep(width=256, parametrization="mup", scheme=None, optimizer="adam", model=None, **extra):
    raw = {
        "name": "mup-test",
        "seeds": [0],
        "schemes": [scheme or {"scheme": "kaiming_normal", "nonlinearity": "relu"}],
        "model": model
        or {
            "name": "mlp",
            "depth": 2,
            "width": width,
            "dropout": 0.0,
            "parametrization": parametrization,
            "base_width": BASE,
        },
        "train": {"optimizer": optimizer},
    }
    return parse_config(raw | extra)


def initialized(cfg, seed=0):
    trial = cfg.trials()[0]
    model = build_model(trial.model, SHAPE, CLASSES)
    plan = initialize(model, trial, SHAPE, CLASSES, seed=seed, batch=None)
    return model, plan, trial


def weights(model) -> list[torch.Tensor]:
    return [m.weight.detach() for m in model if isinstance(m, nn.Linear)]


def close(value: float, want: float, rel: float) -> bool:
    return abs(value - want) <= rel * want


@pytest.mark.parametrize("width", [256, 1024])
def test_mup_init_std_follows_the_rules_at_two_widths(width):
    """kaiming_normal (std sqrt(2/fan_in) at the base width) under mup, base 64: input weights keep
    sqrt(2/784), hidden weights sqrt(2/width) (the base draw x sqrt(64/width)), the readout sqrt(2/64) x
    64/width (variance 1/fan_in^2). Tolerances: 2% on 200k+ entries (input, hidden), 6% on the readout's
    2,560 entries at width 256 (its std's standard error is 1.4%)."""
    model, _, _ = initialized(sweep(width))
    inp, hidden, out = weights(model)
    assert close(inp.std().item(), math.sqrt(2 / 784), 0.02)
    assert close(hidden.std().item(), math.sqrt(2 / width), 0.02)
    assert close(out.std().item(), math.sqrt(2 / BASE) * BASE / width, 0.06)
    sp, _, _ = initialized(sweep(width, "sp"))
    assert close(weights(sp)[2].std().item(), math.sqrt(2 / width), 0.06)  # sp's readout: 1/fan_in variance


def test_a_width_free_scheme_moves_as_mup_says():
    """normal(std=0.1) sets the scale at the base width; mup moves it: hidden x sqrt(64/w), readout x 64/w."""
    width = 1024
    model, _, _ = initialized(sweep(width, scheme={"scheme": "normal", "mean": 0.0, "std": 0.1}))
    inp, hidden, out = weights(model)
    assert close(inp.std().item(), 0.1, 0.02)
    assert close(hidden.std().item(), 0.1 * math.sqrt(BASE / width), 0.02)
    assert close(out.std().item(), 0.1 * BASE / width, 0.04)


def lrs_by_layer(model, plan, optimizer, lr=1e-3) -> dict[str, float]:
    groups = plan.param_groups(model.named_parameters(), lr, optimizer)
    by_tensor = {id(p): g["lr"] for g in groups for p in g["params"]}
    return {name: by_tensor[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize("width", [256, 1024])
def test_mup_lrs_per_group_at_two_widths(width):
    """Tensor Programs V, Table 3, relative to the base width: Adam's hidden and readout lrs x 64/w, the
    input weights' and every bias's unscaled; SGD's input weights and hidden biases x w/64, hidden weights
    x 1, the readout x 64/w, its bias (no width dimension) unscaled."""
    m = width / BASE
    model, plan, _ = initialized(sweep(width))
    adam = lrs_by_layer(model, plan, "adam")
    assert adam == pytest.approx(
        {"1.weight": 1e-3, "1.bias": 1e-3, "3.weight": 1e-3 / m, "3.bias": 1e-3, "5.weight": 1e-3 / m, "5.bias": 1e-3}
    )
    sgd = lrs_by_layer(model, plan, "sgd")
    assert sgd == pytest.approx(
        {
            "1.weight": 1e-3 * m,
            "1.bias": 1e-3 * m,
            "3.weight": 1e-3,
            "3.bias": 1e-3 * m,
            "5.weight": 1e-3 / m,
            "5.bias": 1e-3,
        }
    )
    assert {p.kind for p in plan.widths.values()} == {"input", "hidden", "output", "fixed"}


def test_at_the_base_width_mup_is_sp(small_data):
    """The same weights, one lr, the same metrics: muP only moves things away from the base width."""
    mup, plan, _ = initialized(sweep(BASE))
    sp, _, _ = initialized(sweep(BASE, "sp"))
    for a, b in zip(mup.parameters(), sp.parameters(), strict=True):
        assert torch.equal(a, b)
    assert set(lrs_by_layer(mup, plan, "adam").values()) == {1e-3}
    ran = [run_trial(sweep(BASE, p, train={"epochs": 1}).trials()[0], small_data) for p in ("mup", "sp")]
    assert ran[0].seeds[0].epochs == ran[1].seeds[0].epochs


def _mup_package_mlp(width: int):
    """The same MLP as the `mup` package writes it: MuReadout, set_base_shapes against widths 64 and 128,
    mup.init's kaiming_normal on every weight, biases 0."""
    import mup  # a dev extra (pyproject.toml), installed by the README's test command

    def make(w):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), mup.MuReadout(w, CLASSES)
        )

    model = mup.set_base_shapes(make(width), make(BASE), delta=make(2 * BASE))
    torch.manual_seed(0)
    for m in model:
        if isinstance(m, nn.Linear):
            mup.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model, mup


@pytest.mark.parametrize("width", [256, 1024])
def test_mup_mlp_matches_the_mup_package(width, small_data):
    """Our Table 3 form against the package's Table 8 form (its readout multiplies its input by base/width,
    draws at the base scale and trains at the unscaled Adam lr): the effective readout (the package's
    weight x base/width) has our std, and the effective per-parameter Adam lr is ours (readout: the
    package's lr x base/width). Stronger: from the same effective weights, ten Adam steps of both on the
    same FashionMNIST batches give the same logits (within 1e-4)."""
    theirs, mup = _mup_package_mlp(width)
    ours, plan, _ = initialized(sweep(width, train={"lr": 1e-2}))
    m = width / BASE
    their_weights = [layer.weight.detach() for layer in theirs if isinstance(layer, nn.Linear)]
    for i, (a, b) in enumerate(zip(weights(ours), their_weights, strict=True)):
        effective = b / m if i == 2 else b
        assert close(a.std().item(), effective.std().item(), 0.08), i
    their_opt = mup.MuAdam(theirs.parameters(), lr=1e-2)
    their_lr = {id(p): g["lr"] for g in their_opt.param_groups for p in g["params"]}
    their_names = {n: their_lr[id(p)] for n, p in theirs.named_parameters()}
    ours_lr = lrs_by_layer(ours, plan, "adam", lr=1e-2)
    for name, lr in ours_lr.items():
        want = their_names[name] / (m if name == "5.weight" else 1)  # the same Sequential indices
        assert lr == pytest.approx(want), name
    with torch.no_grad():  # the same effective weights in both
        linears = [layer for layer in theirs if isinstance(layer, nn.Linear)]
        mine_linears = [layer for layer in ours if isinstance(layer, nn.Linear)]
        for i, (mine, their) in enumerate(zip(mine_linears, linears, strict=True)):
            their.weight.copy_(mine.weight * (m if i == 2 else 1.0))
            their.bias.copy_(mine.bias)
    # Adam's eps is the one thing the two forms do not share (the package's readout gradients are base/width
    # of ours, so eps weighs differently on near-zero gradients): off, for the comparison.
    their_opt = mup.MuAdam(theirs.parameters(), lr=1e-2, eps=1e-30)
    our_opt = torch.optim.Adam(plan.param_groups(ours.named_parameters(), 1e-2, "adam"), eps=1e-30)
    for step in range(10):
        x, y = small_data.train.x[step * 100 : (step + 1) * 100], small_data.train.y[step * 100 : (step + 1) * 100]
        for model, opt in ((ours, our_opt), (theirs, their_opt)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x = small_data.val.x[:200]
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"model": {"name": "mlp", "parametrization": "mup"}}, "model.base_width: parametrization mup needs"),
        ({"schemes": [{"scheme": "orthogonal"}]}, "orthogonal cannot train under model.parametrization mup"),
        ({"schemes": [{"scheme": "lsuv"}]}, "lsuv cannot train under model.parametrization mup"),
        (
            {"init": {"overrides": [{"match": "5", "scheme": "orthogonal"}]}},
            "init.overrides.0.scheme: orthogonal cannot train under",
        ),
        ({"model": {"name": "cnn", "parametrization": "mup"}}, "model.parametrization"),
        (
            {"model": {"name": "gpt", "width": 64, "heads": 4, "parametrization": "mup", "base_width": 30}},
            "model.heads: base_width 30 does not split into 4 heads",
        ),
        (
            {"model": {"name": "import", "target": "lm_modules:bigram", "parametrization": "mup"}},
            "model.base_kwargs: parametrization mup needs",
        ),
        ({"model": {"name": "mlp", "base_kwargs": {"width": 4}}}, "model.base_kwargs"),
    ],
)
def test_refused_combinations_name_the_key(change, problem):
    raw = {"name": "x", "seeds": [0], "schemes": [{"scheme": "kaiming_normal"}]}
    raw["model"] = {"name": "mlp", "depth": 2, "width": 256, "parametrization": "mup", "base_width": BASE}
    if "model" in change and change["model"]["name"] == "gpt":
        raw["task"] = "language_model"
    with pytest.raises(ConfigError) as err:
        parse_config(raw | change)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_a_refused_combination_exits_2_in_one_line(tmp_path):
    from conftest import run_cli

    config = tmp_path / "mup.yaml"
    config.write_text(
        "name: mup-lsuv\nseeds: [0]\ndata: {limit: 2000}\nschemes: [{scheme: lsuv}]\n"
        "model: {name: mlp, width: 128, depth: 2, parametrization: mup, base_width: 64}\n"
    )
    proc = run_cli(str(config), "--storage-path", str(tmp_path / "ray"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "lsuv cannot train under model.parametrization mup" in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists()  # nothing written


class _WithMHA(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.emb, self.attn, self.head = (
            nn.Embedding(256, width),
            nn.MultiheadAttention(width, 2),
            nn.Linear(width, 256),
        )

    def forward(self, x):
        h = self.emb(x)
        return self.head(self.attn(h, h, h, need_weights=False)[0])


def with_mha(input_shape, num_classes, width=16):
    return _WithMHA(width)


def test_mup_refuses_a_fixed_attention_scale():
    """nn.MultiheadAttention scales its logits 1/sqrt(d_head), which muP cannot move: one line, at the check."""
    data = load_configured(DataConfig(dataset="fortunes", limit=5000, context=16), "language_model")
    cfg = parse_config(
        {
            "name": "x",
            "seeds": [0],
            "task": "language_model",
            "data": {"limit": 5000, "context": 16},
            "schemes": [{"scheme": "pytorch_default"}],
            "model": {
                "name": "import",
                "target": f"{__name__}:with_mha",
                "kwargs": {"width": 32},
                "parametrization": "mup",
                "base_kwargs": {"width": 16},
            },
        }
    )
    with pytest.raises(ConfigError, match=r"nn\.MultiheadAttention attn fixes its own"):
        check_buildable(cfg.trials()[0], data)


@pytest.fixture(scope="module")
def text():
    return load_configured(DataConfig(dataset="fortunes", limit=30_000, context=32), "language_model")


def gpt_sweep(width, parametrization="mup", **train):
    return parse_config(
        {
            "name": "gpt-mup",
            "seeds": [0, 1],
            "task": "language_model",
            "data": {"limit": 30_000, "context": 32},
            "schemes": [{"scheme": "gpt2"}],
            "model": {
                "name": "gpt",
                "width": width,
                "depth": 2,
                "heads": 2,
                "tie_embeddings": True,
                "parametrization": parametrization,
                "base_width": 32,
            },
            "train": {"epochs": 2, "batch_size": 32, **train},
        }
    )


def test_tied_embeddings_under_mup(text):
    """One matrix cannot take an embedding's and a readout's rules: it is an embedding (base scale, lr
    unscaled) and the logits carry base/width; attention logits are q.k sqrt(16)/d_head (1/d_head, equal to
    sp's at the base width); at the base width the model is sp's."""
    trial = gpt_sweep(128).trials()[0]
    model = build_model(trial.model, text.input_shape, text.num_classes)
    plan = initialize(model, trial, text.input_shape, text.num_classes, seed=0, batch=None)
    assert model.readout_scale == 32 / 128 and model.head is None
    assert plan.widths["tok_emb.weight"].kind == "input"
    assert lrs_by_layer(model, plan, "adam")["tok_emb.weight"] == 1e-3
    assert lrs_by_layer(model, plan, "adam")["blocks.0.attn.qkv.weight"] == pytest.approx(1e-3 / 4)
    assert model.blocks[0].attn.scale == pytest.approx(math.sqrt(16) / 64)
    assert close(model.tok_emb.weight.std().item(), 0.02, 0.02)  # gpt2's 0.02 at the base width, kept
    assert close(model.blocks[0].mlp.fc_in.weight.std().item(), 0.02 * math.sqrt(32 / 128), 0.03)
    base, sp = (
        build_model(gpt_sweep(32, p).trials()[0].model, text.input_shape, text.num_classes) for p in ("mup", "sp")
    )
    assert base.readout_scale == 1.0 and base.blocks[0].attn.scale == pytest.approx(1 / math.sqrt(16))
    assert sp.blocks[0].attn.scale is None


def test_mup_survives_torch_compile(text):
    """The compiled model computes what the eager one does (nothing of muP lives on the tensors), and trains."""
    trial = gpt_sweep(64).trials()[0]
    model = build_model(trial.model, text.input_shape, text.num_classes)
    plan = initialize(model, trial, text.input_shape, text.num_classes, seed=0, batch=None)
    compiled = torch.compile(model)
    x = text.train.x[:8]
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    opt = _optimizer(trial, plan, model.named_parameters())
    loss = nn.functional.cross_entropy(compiled(x).flatten(0, 1), text.train.y[:8].flatten())
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item())


def test_a_schedule_keeps_the_groups_ratios():
    """Cosine with warm-up is a factor on each group's own lr: muP's per-group ratios hold at every step."""
    cfg = sweep(1024, train={"lr_schedule": "cosine", "warmup_steps": 5, "epochs": 1, "batch_size": 100})
    model, plan, trial = initialized(cfg)
    opt = _optimizer(trial, plan, model.named_parameters())
    schedule = _schedule(trial, opt, train_size=2000)  # 20 steps
    start = {g["name"]: g["lr"] for g in opt.param_groups}
    seen = []
    for _ in range(20):
        opt.step()
        schedule.step()
        now = {g["name"]: g["lr"] for g in opt.param_groups}
        ratios = {k: now[k] / start[k] for k in now}
        assert max(ratios.values()) == pytest.approx(min(ratios.values()))
        seen.append(next(iter(ratios.values())))
    assert max(seen) == pytest.approx(5.0)  # warm-up from lr / 5 to lr
    assert seen[-1] == pytest.approx(0.0, abs=1e-12)  # cosine decays to 0 at the last step


@pytest.mark.parametrize("kind", ["mlp", "gpt"])
def test_a_mup_trial_resumes_exactly_and_packs_as_it_trains_alone(kind, small_data, text):
    """A checkpoint needs no shape information: a trial resumed after epoch 1 ends with the metrics of an
    uninterrupted one (weights, Adam state, per-group lrs and the schedule restored), packed seeds train as
    each seed alone, and each seed's record holds its groups' lrs."""
    if kind == "mlp":
        cfg, data = (
            sweep(256, train={"epochs": 2, "lr_schedule": "cosine", "warmup_steps": 3}, seeds=[0, 1]),
            small_data,
        )
    else:
        cfg, data = gpt_sweep(64, lr_schedule="cosine", warmup_steps=3), text
    trial = cfg.trials()[0]
    snapshots = {}
    whole = run_trial(trial, data, pack=True, on_epoch=lambda e, _s, snap: snapshots.setdefault(e, snap()))
    resumed = run_trial(trial, data, pack=True, resume=snapshots[1])
    alone = run_trial(trial, data, pack=False)
    for a, b, c in zip(whole.seeds, resumed.seeds, alone.seeds, strict=True):
        assert a.epochs == b.epochs and a.test == b.test
        for ma, mc in zip(a.epochs, c.epochs, strict=True):
            assert ma == pytest.approx(mc, rel=1e-4)
    if kind == "mlp":  # a width's seeds share every shape: they pack by default (no fallback)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PackingFallbackWarning)
            default = run_trial(trial, data)
        assert [s.epochs for s in default.seeds] == [s.epochs for s in whole.seeds]
    lrs = whole.seeds[0].lrs
    assert lrs["hidden"] == pytest.approx(
        trial.train.lr * (32 if kind == "gpt" else BASE) / (64 if kind == "gpt" else 256)
    )
    assert lrs["input"] == trial.train.lr


@pytest.mark.parametrize("norm", ["pre", "none"])
def test_depth_mup_scales_every_branch(norm):
    """residual_scaling depth_mup: x + f(x)/sqrt(depth) on each branch (Depth-muP); none: x + f(x)."""
    from initsweep.catalog.models import GPTConfig

    torch.manual_seed(0)
    plain = Block(GPTConfig(width=32, depth=16, heads=2, norm=norm), causal=True)
    scaled = Block(GPTConfig(width=32, depth=16, heads=2, norm=norm, residual_scaling="depth_mup"), causal=True)
    scaled.load_state_dict(plain.state_dict())
    assert scaled.branch_scale == 0.25
    x = torch.randn(2, 5, 32)
    if norm == "none":  # one branch at a time: attention alone, then the MLP alone
        attn = plain.attn(x)
        torch.testing.assert_close(scaled.attn(x), attn)
        h = x + 0.25 * attn
        torch.testing.assert_close(scaled(x), h + 0.25 * scaled.mlp(h))
    else:
        h = x + 0.25 * plain.attn(plain.ln1(x))
        torch.testing.assert_close(scaled(x), h + 0.25 * plain.mlp(plain.ln2(h)))


def test_the_transfer_studies_are_what_the_issue_asks():
    """At least 4 widths over 8x or more, a log2 grid of at least 7 lrs, sp and mup, 3 or more seeds."""
    from initsweep.config import load_config

    for name in ("mup_transfer.yaml", "mup_transfer_lm.yaml"):
        cfg = load_config(Path(__file__).parents[1] / "sweeps" / name)
        widths, lrs = sorted(cfg.grid["model.width"]), sorted(cfg.grid["train.lr"])
        assert len(widths) >= 4 and widths[-1] / widths[0] >= 8 and cfg.model.base_width == widths[0]
        steps = {round(math.log2(b / a), 9) for a, b in itertools.pairwise(lrs)}
        assert len(lrs) >= 7 and steps == {1.0}
        assert set(cfg.grid["model.parametrization"]) == {"sp", "mup"} and len(cfg.seeds) >= 3


@pytest.mark.slow
def test_a_mup_sweep_logs_each_groups_lr_and_reports_the_transfer(tmp_path):
    """Through `sweeps/run.py` on real Ray and a SQLite MLflow store: each trial run carries its groups' lrs
    (`lr.hidden` = lr x 64/width), and the report answers the width x lr grid with the transfer section."""
    from conftest import mlflow_runs, run_cli

    config = tmp_path / "transfer.yaml"
    config.write_text(
        "name: mup-transfer-test\nseeds: [0, 1]\ndata: {limit: 2000}\nschemes: [{scheme: pytorch_default}]\n"
        "model: {name: mlp, depth: 2, width: 64, base_width: 64, dropout: 0.0}\ntrain: {epochs: 1}\n"
        "objective: {metric: train_loss}\n"
        "grid: {model.parametrization: [sp, mup], model.width: [64, 128], train.lr: [0.001, 0.002]}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(str(config), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = mlflow_runs(uri, "mup-transfer-test")["trial"]
    assert len(trials) == 8
    for run in trials:
        p = run.data.params
        lr, width = float(p["train.lr"]), int(p["model.width"])
        if p["model.parametrization"] == "mup" and width == 128:
            assert float(p["lr.hidden"]) == pytest.approx(lr * 64 / 128) and float(p["lr.input"]) == lr
        else:
            assert "lr.hidden" not in p  # one lr: train.lr
    report = next(tmp_path.glob("reports/*/report.md")).read_text()
    assert "## Learning-rate transfer across width" in report and "parametrization=mup" in report
    assert "is at the grid's edge" in report  # two lrs: every best lr is at an edge, and the report says so
    assert next(tmp_path.glob("reports/*/plots/lr_transfer.png")).stat().st_size > 10_000
