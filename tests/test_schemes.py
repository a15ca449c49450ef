"""Every registered scheme against its formula, on a Linear(784, 256) and a Conv2d(16, 32, 3).

Statistical tolerance: with N weights drawn i.i.d., the sample mean is within 5 standard errors
(5 * sigma / sqrt(N)) of the formula's mean, and the sample std within 5 / sqrt(2N) relative of the
formula's std (the normal-kurtosis bound, which also covers uniform and truncated-normal draws).
Hard bounds (uniform, truncated normal) are checked exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from initsweep.catalog.schemes import (
    NONLINEARITIES,
    SCHEMES,
    SchemeError,
    get_scheme,
    matching_gain,
    resolve_auto,
    validate_params,
)
from initsweep.config import InitConfig, resolve_scheme
from initsweep.engine.schemes import ROLE_SCHEMES, RULES, apply_scheme


def _uniform(lo, hi):
    return {"mean": (lo + hi) / 2, "std": (hi - lo) / math.sqrt(12), "lo": lo, "hi": hi}


def _normal(mean, std):
    return {"mean": mean, "std": std}


RELU_GAIN = math.sqrt(2)

# scheme -> (params, expected(fan_in, fan_out) -> {mean, std[, lo, hi]})
EXPECTED = {
    "constant": ({"value": 0.3}, lambda fi, fo: {"mean": 0.3, "std": 0.0, "lo": 0.3, "hi": 0.3}),
    "uniform": ({"low": -0.2, "high": 0.6}, lambda fi, fo: _uniform(-0.2, 0.6)),
    "uniform_symmetric": ({"y": 0.07}, lambda fi, fo: _uniform(-0.07, 0.07)),
    "normal": ({"mean": 0.1, "std": 0.05}, lambda fi, fo: _normal(0.1, 0.05)),
    "uniform_fan_in": ({"c": 2.0}, lambda fi, fo: _uniform(-2 / math.sqrt(fi), 2 / math.sqrt(fi))),
    "normal_fan_in": ({"c": 2.0}, lambda fi, fo: _normal(0.0, 2 / math.sqrt(fi))),
    "xavier_uniform": (
        {"gain": 1.5},
        lambda fi, fo: _uniform(-1.5 * math.sqrt(6 / (fi + fo)), 1.5 * math.sqrt(6 / (fi + fo))),
    ),
    "xavier_normal": ({"gain": 1.5}, lambda fi, fo: _normal(0.0, 1.5 * math.sqrt(2 / (fi + fo)))),
    "kaiming_uniform": (
        {"mode": "fan_out", "nonlinearity": "leaky_relu", "a": 0.1},
        lambda fi, fo: _uniform(-math.sqrt(2 / 1.01) * math.sqrt(3 / fo), math.sqrt(2 / 1.01) * math.sqrt(3 / fo)),
    ),
    "kaiming_normal": ({}, lambda fi, fo: _normal(0.0, RELU_GAIN / math.sqrt(fi))),
    "orthogonal": ({"gain": 1.3}, None),  # checked as W W^T = gain^2 I below
    "trunc_normal": (
        {"std": 0.02, "bound": 2.0},
        lambda fi, fo: {"mean": 0.0, "std": 0.02 * stats.truncnorm(-2, 2).std(), "lo": -0.04, "hi": 0.04},
    ),
    "sparse": ({"sparsity": 0.3, "std": 0.01}, None),  # checked per column below
    "lsuv": ({}, None),  # a property of the whole model: tests below
    "pytorch_default": ({}, lambda fi, fo: _uniform(-1 / math.sqrt(fi), 1 / math.sqrt(fi))),
    "critical": ({"weight_variance": 1.76}, lambda fi, fo: _normal(0.0, math.sqrt(1.76 / fi))),
    # The role-aware schemes need a transformer's roles: their formulas are checked in tests/test_roles.py.
    "gpt2": ({"std": 0.03}, None),
    "t_fixup": ({}, None),
    "deepnorm": ({}, None),
    "zero_residual": ({}, None),
    "small_embedding": ({"scale": 1e-3}, None),
}
PER_LAYER_OR_MODEL = [name for name, s in SCHEMES.items() if not s.needs_roles]
"""The schemes that work on a single layer (the role-aware ones refuse a model without their roles)."""

LAYERS = {
    "linear": (lambda: nn.Linear(784, 256), 784, 256),
    "conv": (lambda: nn.Conv2d(16, 32, 3), 16 * 9, 32 * 9),
}


def test_every_scheme_has_an_expectation():
    assert set(EXPECTED) == set(SCHEMES)


def _init(layer_kind: str, scheme: str, params: dict, seed: int = 0) -> nn.Module:
    make, _, _ = LAYERS[layer_kind]
    layer = make()
    batch = torch.randn(
        64, *((784,) if layer_kind == "linear" else (16, 12, 12)), generator=torch.Generator().manual_seed(1)
    )
    apply_scheme(nn.Sequential(layer), scheme, params, seed=seed, batch=batch, activation="relu")
    return layer


@pytest.mark.parametrize("layer_kind", list(LAYERS))
@pytest.mark.parametrize("scheme", [s for s, (_, f) in EXPECTED.items() if f is not None])
def test_weight_moments_match_formula(scheme, layer_kind):
    params, expected = EXPECTED[scheme]
    _, fan_in, fan_out = LAYERS[layer_kind]
    w = _init(layer_kind, scheme, params).weight.detach().double().flatten()
    want = expected(fan_in, fan_out)
    n = w.numel()
    assert abs(w.mean().item() - want["mean"]) <= 5 * want["std"] / math.sqrt(n) + 1e-6  # + float32 rounding
    assert w.std().item() == pytest.approx(want["std"], rel=5 / math.sqrt(2 * n), abs=1e-12)
    if "lo" in want:
        assert w.min().item() >= want["lo"] - 1e-7
        assert w.max().item() <= want["hi"] + 1e-7


@pytest.mark.parametrize("layer_kind", list(LAYERS))
def test_orthogonal_rows_are_orthonormal_times_gain(layer_kind):
    w = _init(layer_kind, "orthogonal", {"gain": 1.3}).weight.detach().double()
    w = w.reshape(w.shape[0], -1)  # (out, in*k): fewer rows than columns in both layers
    gram = w @ w.T
    assert torch.allclose(gram, 1.3**2 * torch.eye(w.shape[0], dtype=torch.double), atol=1e-5)


@pytest.mark.parametrize("layer_kind", list(LAYERS))
def test_sparse_zeroes_the_fraction_of_each_column(layer_kind):
    w = _init(layer_kind, "sparse", {"sparsity": 0.3, "std": 0.01}).weight.detach()
    w = w.reshape(w.shape[0], -1)
    zeros_per_column = (w == 0).sum(0)
    assert (zeros_per_column == math.ceil(0.3 * w.shape[0])).all()
    nonzero = w[w != 0].double()
    assert nonzero.std().item() == pytest.approx(0.01, rel=5 / math.sqrt(2 * nonzero.numel()))


@pytest.mark.parametrize("layer_kind", list(LAYERS))
@pytest.mark.parametrize("scheme", PER_LAYER_OR_MODEL)  # the role-aware: tests/test_roles.py
def test_same_seed_same_weights_other_seed_other_weights(scheme, layer_kind):
    params = EXPECTED[scheme][0]
    a = _init(layer_kind, scheme, params, seed=7).weight
    b = _init(layer_kind, scheme, params, seed=7).weight
    c = _init(layer_kind, scheme, params, seed=8).weight
    assert torch.equal(a, b)
    if scheme != "constant":
        assert not torch.equal(a, c)


@pytest.mark.parametrize("init,expected", [({}, 0.0), ({"bias": "constant", "bias_value": 0.25}, 0.25)])
def test_bias_modes(init, expected):
    model = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3))
    apply_scheme(model, "uniform_fan_in", seed=0, init=InitConfig(**init))
    for layer in (model[0], model[2]):
        assert torch.all(layer.bias == expected)


def test_bias_normal_draws_sigma_b_per_unit_and_leaves_the_weights_alone():
    """Moments within the module's tolerance (mean: 5 standard errors; std: 5 / sqrt(2N) relative),
    over N = 4096 biases in each of three layers; the weights are the ones zero biases get."""
    make = lambda: nn.Sequential(nn.Linear(64, 4096), nn.Tanh(), nn.Linear(4096, 4096), nn.Linear(4096, 4096))  # noqa: E731
    model = apply_scheme(make(), "normal_fan_in", seed=3, init=InitConfig(bias="normal", bias_std=0.3))
    zeros = apply_scheme(make(), "normal_fan_in", seed=3)
    n = 4096
    for i in (0, 2, 3):
        b = model[i].bias.detach().double()
        assert abs(b.mean().item()) <= 5 * 0.3 / math.sqrt(n)
        assert b.std().item() == pytest.approx(0.3, rel=5 / math.sqrt(2 * n))
        assert torch.equal(model[i].weight, zeros[i].weight)
    assert not torch.equal(model[2].bias, model[3].bias)  # each layer its own draw
    again = apply_scheme(make(), "normal_fan_in", seed=3, init=InitConfig(bias="normal", bias_std=0.3))
    assert torch.equal(again[3].bias, model[3].bias)  # the init seed fixes them


def test_bias_variance_is_the_biases_mean_square():
    assert InitConfig(bias="normal", bias_std=0.5).bias_variance == 0.25
    assert InitConfig(bias="constant", bias_value=-0.3).bias_variance == pytest.approx(0.09)
    assert InitConfig().bias_variance == 0.0
    assert InitConfig(bias="default").bias_variance is None


@pytest.mark.parametrize(
    "activation,bias_std,weight_variance",
    [("relu", 0.0, 2.0), ("tanh", 0.0, 1.0), ("tanh", math.sqrt(0.05), 1.76)],
)
def test_critical_auto_is_the_edge_of_chaos(activation, bias_std, weight_variance):
    """Published critical points (Schoenholz et al. 2017) within 0.01; the draw's std within 5 / sqrt(2N)."""
    init = InitConfig(bias="normal", bias_std=bias_std) if bias_std else InitConfig()
    resolved = resolve_scheme("critical", {}, activation, init)["weight_variance"]
    assert resolved == pytest.approx(weight_variance, abs=0.01)
    w = apply_scheme(nn.Sequential(nn.Linear(784, 256)), "critical", seed=0, activation=activation, init=init)[0].weight
    assert w.std().item() == pytest.approx(math.sqrt(resolved / 784), rel=5 / math.sqrt(2 * w.numel()))


@pytest.mark.parametrize(
    "activation,init,match",
    [
        (None, InitConfig(), "weight_variance: 'auto' needs a model activation mean-field theory knows"),
        ("relu", InitConfig(bias="default"), "weight_variance: 'auto' needs init.bias zeros, constant or normal"),
        ("gelu", InitConfig(), "weight_variance: 'auto' has no edge of chaos here: gelu has no critical"),
    ],
)
def test_critical_auto_that_theory_cannot_resolve_names_the_parameter(activation, init, match):
    with pytest.raises(SchemeError, match=match):
        resolve_scheme("critical", {}, activation, init)


def test_bias_default_is_the_layers_own_init():
    model = nn.Sequential(nn.Linear(20, 10))
    apply_scheme(model, "normal", seed=0, init=InitConfig(bias="default"))
    bound = 1 / math.sqrt(20)
    assert model[0].bias.abs().max() <= bound and model[0].bias.abs().max() > 0


def test_pytorch_default_equals_torch_init_under_the_same_seed():
    torch.manual_seed(3)
    reference = nn.Linear(784, 256)
    ours = apply_scheme(nn.Sequential(nn.Linear(784, 256)), "pytorch_default", seed=3)[0]
    assert torch.equal(ours.weight, reference.weight) and torch.equal(ours.bias, reference.bias)


def test_apply_does_not_touch_the_global_rng():
    model, batch = nn.Sequential(nn.Linear(10, 10)), torch.rand(4, 10)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for scheme in PER_LAYER_OR_MODEL:  # the role-aware: tests/test_roles.py
        apply_scheme(model, scheme, EXPECTED[scheme][0], seed=5, batch=batch, activation="relu")
    assert torch.equal(torch.rand(3), expected)


def test_lsuv_gives_unit_output_variance_per_layer(small_data):
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    batch = small_data.train.x[:500]
    apply_scheme(model, "lsuv", {"tol": 0.05}, seed=0, batch=batch)
    x = batch
    for m in model:
        x = m(x)
        if isinstance(m, nn.Linear):
            assert abs(x.var().item() - 1) < 0.05


def test_lsuv_without_a_batch_is_an_error():
    with pytest.raises(SchemeError, match="lsuv needs a batch"):
        apply_scheme(nn.Sequential(nn.Linear(4, 4)), "lsuv", seed=0)


@pytest.mark.parametrize(
    "scheme,params,match",
    [
        ("nope", {}, r"scheme: unknown scheme 'nope' \(valid: constant, uniform"),
        ("uniform_fan_in", {"gain": 1.0}, r"gain: not a parameter of scheme 'uniform_fan_in' \(valid: c\)"),
        ("uniform", {"low": 1.0, "high": 0.0}, r"low \(1.0\) must be below high \(0.0\)"),
        ("normal", {"std": -1.0}, r"std: -1.0 is outside its domain \(0.0, inf\]"),
        ("xavier_uniform", {"gain": "big"}, r"gain: 'big' is not a number"),
        ("kaiming_normal", {"mode": "fan_both"}, r"mode: 'fan_both' is not one of fan_in, fan_out"),
        ("sparse", {"sparsity": 1.5}, r"sparsity: 1.5 is outside its domain"),
        ("constant", {"value": float("nan")}, r"value: nan is outside its domain"),
    ],
)
def test_bad_scheme_or_param_names_it(scheme, params, match):
    with pytest.raises(SchemeError, match=match):
        validate_params(scheme, params)


def test_every_scheme_has_a_weight_rule_or_works_on_the_whole_model():
    assert set(RULES) == {name for name, s in SCHEMES.items() if not s.whole_model}
    assert set(ROLE_SCHEMES) == {name for name, s in SCHEMES.items() if s.needs_roles}  # each a role table


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_the_gain_table_is_torchs_calculate_gain(nonlinearity):
    from initsweep.catalog import schemes as catalog

    assert catalog._GAIN_OF[nonlinearity] == pytest.approx(nn.init.calculate_gain(nonlinearity))


def test_registry_entries_are_self_consistent():
    for name, scheme in SCHEMES.items():
        assert get_scheme(name) is scheme and scheme.description
        full = validate_params(name, {})  # every default lies in its domain
        for key, p in scheme.params.items():
            if p.search is not None:  # every search range lies in the domain
                p.check(key, p.search[0]) and p.check(key, p.search[1])
            assert key in full


@pytest.mark.parametrize(
    "activation,gain",
    [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("selu", 0.75), ("identity", 1.0), ("gelu", math.sqrt(2))],
)
def test_auto_gain_is_torchs_gain_for_the_activation(activation, gain):
    assert matching_gain(activation) == pytest.approx(gain)
    assert resolve_auto("xavier_uniform", {}, activation) == {"gain": pytest.approx(gain)}
    nonlinearity = {"identity": "linear", "gelu": "relu"}.get(activation, activation)
    assert resolve_auto("kaiming_normal", {}, activation)["nonlinearity"] == nonlinearity
    assert resolve_auto("orthogonal", {"gain": 0.5}, activation) == {"gain": 0.5}  # a number stays


@pytest.mark.parametrize(
    "scheme", ["xavier_uniform", "xavier_normal", "orthogonal", "kaiming_uniform", "kaiming_normal"]
)
def test_auto_draws_the_same_weights_as_the_explicit_gain(scheme):
    explicit = resolve_auto(scheme, {}, "tanh")
    auto = apply_scheme(nn.Sequential(nn.Linear(784, 256)), scheme, seed=4, activation="tanh")[0].weight
    given = apply_scheme(nn.Sequential(nn.Linear(784, 256)), scheme, explicit, seed=4)[0].weight
    assert torch.equal(auto, given)


def test_xavier_auto_for_tanh_has_the_glorot_std_times_five_thirds():
    """Tolerance as above: the sample std within 5 / sqrt(2N) relative of the formula's."""
    w = apply_scheme(nn.Sequential(nn.Linear(784, 256)), "xavier_normal", seed=0, activation="tanh")[0].weight
    expected = 5 / 3 * math.sqrt(2 / (784 + 256))
    assert abs(w.std().item() / expected - 1) < 5 / math.sqrt(2 * w.numel())


def test_auto_without_an_activation_names_the_parameter():
    with pytest.raises(SchemeError, match="gain: 'auto' needs the model's activation"):
        apply_scheme(nn.Sequential(nn.Linear(4, 4)), "orthogonal", seed=0)
