"""Mean-field theory (initsweep.theory) against known values, quadrature references and random networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from initsweep import theory

# --- critical points -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "bias_variance", "expected"),
    [
        ("relu", 0.0, 2.0),  # He et al.
        ("relu", 0.3, 2.0),  # χ1 = σ_w²/2 whatever the bias
        ("tanh", 0.0, 1.0),
        ("tanh", 0.05, 1.76),  # Schoenholz et al. 2017, Fig. 1
        ("identity", 0.0, 1.0),
    ],
)
def test_critical_weight_variance_known_values(activation, bias_variance, expected):
    assert theory.critical_weight_variance(activation, bias_variance) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("activation", "bias_variance"), [("tanh", 0.05), ("tanh", 0.5), ("selu", 0.05)])
def test_critical_point_is_critical_with_diverging_depth_scale(activation, bias_variance):
    mf = theory.mean_field(activation, theory.critical_weight_variance(activation, bias_variance), bias_variance)
    assert mf.phase == "critical"
    assert mf.chi1 == pytest.approx(1.0, abs=1e-8)
    assert mf.xi_c > 50 and mf.trainable_depth > 300


def test_gelu_without_bias_has_no_critical_point():
    """χ1 jumps over 1 where q* jumps from 0 (χ1 = σ_w²/4) to inf (χ1 = σ_w²/2): no σ_w² sits at χ1 = 1."""
    with pytest.raises(ValueError, match="jumps"):
        theory.critical_weight_variance("gelu", 0.0)


# --- phases and fixed points ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight_variance", "bias_variance", "phase"),
    [
        (3.0, 0.05, "chaotic"),
        (1.2, 0.05, "ordered"),
        (0.8, 0.05, "ordered"),
        (0.5, 0.0, "ordered"),
        (2.0, 0.0, "chaotic"),
    ],
)
def test_tanh_phase_labels(weight_variance, bias_variance, phase):
    assert theory.mean_field("tanh", weight_variance, bias_variance).phase == phase


GRID = [
    (activation, sw2, sb2)
    for activation in ("tanh", "selu", "gelu")
    for sw2 in (0.6, 1.0, 1.5, 2.0, 3.0)
    for sb2 in (0.02, 0.1, 0.5)
    if not (activation != "tanh" and sw2 >= 2.0)  # selu/gelu signals explode there: q* = inf, covered elsewhere
]


@pytest.mark.parametrize(("activation", "sw2", "sb2"), GRID)
def test_c_star_is_one_exactly_when_ordered(activation, sw2, sb2):
    mf = theory.mean_field(activation, sw2, sb2)
    assert 0 < mf.q_star < math.inf
    assert theory.length_map(activation, sw2, sb2, mf.q_star) == pytest.approx(mf.q_star, rel=1e-10)
    if mf.chi1 < 1:
        assert mf.c_star == pytest.approx(1.0, abs=1e-6)
        assert mf.xi_c == pytest.approx(-1 / math.log(mf.chi1), rel=1e-6)  # χ_c = χ1 at c* = 1
    else:
        assert mf.c_star < 1 - 1e-6
        # a stable fixed point of the correlation map: c* maps to itself, a point just below maps closer
        assert theory.correlation_map(activation, sw2, sb2, mf.q_star, mf.c_star) == pytest.approx(mf.c_star, abs=1e-9)
        below = max(-1.0, mf.c_star - 0.1)
        assert abs(theory.correlation_map(activation, sw2, sb2, mf.q_star, below) - mf.c_star) < mf.c_star - below


def test_tanh_without_bias_in_chaotic_phase_decorrelates_fully():
    assert theory.mean_field("tanh", 3.0, 0.0).c_star == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("activation", "bias_variance"), [("tanh", 0.05), ("tanh", 0.3), ("selu", 0.1)])
def test_xi_c_diverges_at_the_critical_line(activation, bias_variance):
    crit = theory.critical_weight_variance(activation, bias_variance)

    def xi(sw2):
        return theory.mean_field(activation, sw2, bias_variance).xi_c

    assert xi(crit - 0.05) > xi(crit - 0.5)
    assert xi(crit + 0.05) > xi(crit + 0.5)
    assert min(xi(crit - 0.05), xi(crit + 0.05)) > 5.0


@pytest.mark.parametrize(("activation", "sw2", "sb2"), [("tanh", 3.0, 0.05), ("gelu", 1.5, 0.5), ("selu", 1.0, 0.0)])
def test_xi_q_is_the_length_maps_slope(activation, sw2, sb2):
    """χ_q = σ_w² E[φ''φ + φ'²] (the registry's φ'') equals a finite difference of the length map at q*."""
    mf = theory.mean_field(activation, sw2, sb2)
    h = 1e-5 * mf.q_star
    slope = (
        theory.length_map(activation, sw2, sb2, mf.q_star + h) - theory.length_map(activation, sw2, sb2, mf.q_star - h)
    ) / (2 * h)
    assert mf.xi_q == pytest.approx(1 / abs(math.log(slope)), rel=1e-6)


def test_relu_closed_forms():
    mf = theory.mean_field("relu", 1.0, 0.1)  # linear length map q -> q/2 + 0.1
    assert (mf.q_star, mf.chi1, mf.c_star, mf.phase) == (pytest.approx(0.2), 0.5, 1.0, "ordered")
    assert mf.xi_c == pytest.approx(1 / math.log(2))
    critical = theory.mean_field("relu", 2.0, 0.0)  # every q is fixed: q* stays at q0
    assert (critical.q_star, critical.phase, critical.xi_c, critical.trainable_depth) == (
        1.0,
        "critical",
        math.inf,
        math.inf,
    )
    assert theory.mean_field("relu", 3.0, 0.0).q_star == math.inf
    assert theory.mean_field("relu", 1.0, 0.0).q_star == 0.0
    # arc-cosine kernel: two orthogonal inputs through ReLU without bias come out at correlation 1/π
    assert theory.correlation_map("relu", 2.0, 0.0, 1.0, 0.0) == pytest.approx(1 / math.pi, abs=1e-15)


def _gauss_quad(f, lo=-12.0, hi=12.0, kink=0.0):
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    k = min(max(kink, lo), hi)
    opts = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 200}
    return (
        integrate.quad(lambda z: f(z) * pdf(z), lo, k, **opts)[0]
        + integrate.quad(lambda z: f(z) * pdf(z), k, hi, **opts)[0]
    )


def test_selu_correlation_map_matches_adaptive_quadrature():
    """SELU's derivative jumps at 0; the module's sector quadrature must still agree with adaptive quad to 1e-9."""
    selu = lambda x: float(theory.ACTIVATIONS["selu"].phi(np.asarray(x)))  # noqa: E731
    q, c, sw2, sb2 = 1.3, 0.4, 1.1, 0.05
    s, sc = math.sqrt(q), math.sqrt(1 - c * c)

    def inner(z1):  # E[φ(u2) | z1], kink where c z1 + sc z2 = 0
        return _gauss_quad(lambda z2: selu(s * (c * z1 + sc * z2)), kink=-c * z1 / sc)

    cross = _gauss_quad(lambda z1: selu(s * z1) * inner(z1))
    square = _gauss_quad(lambda z: selu(s * z) ** 2)
    expected = (sw2 * cross + sb2) / (sw2 * square + sb2)
    assert theory.correlation_map("selu", sw2, sb2, q, c) == pytest.approx(expected, abs=1e-9)
    assert theory.length_map("selu", sw2, sb2, q) == pytest.approx(sw2 * square + sb2, rel=1e-10)


# --- random networks -----------------------------------------------------------------------------------------------

TORCH_ACT = {"tanh": torch.tanh, "relu": torch.relu, "selu": torch.selu, "gelu": torch.nn.functional.gelu}


def _two_input_network(activation, sw2, sb2, q0, c0, depth, width, seed):
    """Two inputs through a random network of `width` units per layer; measured q^l and c^l per layer.

    Exact in distribution without storing W: given layer l's activations x1, x2, the next pre-activations
    h_a = W x_a + b are, unit by unit, independent Gaussian pairs with covariance σ_w² x_a·x_b / width + σ_b²
    (W's rows and b's entries are independent), so each layer draws `width` such pairs. That allows widths in
    the hundreds of thousands, where finite-width noise (~1/sqrt(width) per layer) is far below the tolerances.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, width, generator=g)
    h1, h2 = math.sqrt(q0) * z[0], math.sqrt(q0) * (c0 * z[0] + math.sqrt(1 - c0 * c0) * z[1])
    phi, qs, cs = TORCH_ACT[activation], [], []
    for layer in range(depth + 1):
        a, b, ab = float(h1 @ h1) / width, float(h2 @ h2) / width, float(h1 @ h2) / width
        qs.append((a + b) / 2)
        cs.append(ab / math.sqrt(a * b))
        if layer == depth:
            break
        x1, x2 = phi(h1), phi(h2)
        cov = torch.tensor([[x1 @ x1, x1 @ x2], [x1 @ x2, x2 @ x2]], dtype=torch.float64) * sw2 / width + sb2
        chol = torch.linalg.cholesky(cov)
        z = torch.randn(2, width, generator=g)
        h1, h2 = chol[0, 0] * z[0], chol[1, 0] * z[0] + chol[1, 1] * z[1]
    return np.array(qs), np.array(cs)


@pytest.mark.parametrize(
    ("activation", "sw2", "sb2", "c0", "width", "q_rtol", "c_atol"),
    [
        # tolerances are >= 4 finite-width standard deviations, measured over 8 seeds at these widths
        ("tanh", 0.8, 0.05, 0.2, 250_000, 0.03, 0.02),  # ordered: c -> 1, q -> q* ~ 0.14
        ("tanh", 3.0, 0.05, 0.9, 250_000, 0.03, 0.02),  # chaotic: c -> c* ~ 0.30
        ("selu", 1.0, 0.0, 0.5, 500_000, 0.03, 0.03),  # q* = 1, c* = 0 but ξ_c ~ 34: noise in c lingers
        ("gelu", 1.5, 0.5, 0.3, 250_000, 0.03, 0.02),
        # q's log does a random walk of variance ~5/width per layer at the ReLU critical point: a wider net
        ("relu", 2.0, 0.0, 0.2, 1_000_000, 0.05, 0.02),
    ],
)
def test_theory_tracks_a_wide_random_network_layer_by_layer(activation, sw2, sb2, c0, width, q_rtol, c_atol):
    depth, q0 = 30, 1.0
    q_theory, c_theory = theory.propagate(activation, sw2, sb2, q0, c0, depth)
    q_net, c_net = _two_input_network(activation, sw2, sb2, q0, c0, depth, width, seed=0)
    np.testing.assert_allclose(q_net, q_theory, rtol=q_rtol)
    np.testing.assert_allclose(c_net, c_theory, atol=c_atol)
    # and the iterated length map ends at the q* that mean_field reports (ξ_q <= 4 layers here)
    assert q_theory[-1] == pytest.approx(theory.mean_field(activation, sw2, sb2, q0=q0).q_star, rel=1e-3)


def test_torch_linear_stack_follows_the_theory():
    """A real stack of 30 Linear+tanh layers (σ_w² = 3, σ_b² = 0.05: chaotic), width 2000, 64 random inputs
    (q0 = 1, pairwise c0 ~ 0), q and c averaged over inputs and over input pairs.

    At this width each layer's q and c carry ~1/sqrt(2000) sampling noise, amplified where the correlation map
    contracts slowly (ξ_c ~ 9 layers): hence 5% on q and 0.05 on c per layer, and 1% and 0.02 on the mean of
    layers 10-30. (The ordered phase collapses every input onto one direction, so averaging over inputs would
    not shrink the noise there; the exact two-input test covers it.)
    """
    sw2, sb2, width, depth, batch = 3.0, 0.05, 2000, 30, 64
    g = torch.Generator().manual_seed(1)
    h = torch.randn(batch, width, generator=g)
    upper = torch.triu_indices(batch, batch, 1)
    qs, cs = [], []
    with torch.no_grad():
        for layer in range(depth + 1):
            sq = h.pow(2).mean(1)
            qs.append(float(sq.mean()))
            corr = (h @ h.T / width) / torch.sqrt(sq[:, None] * sq[None, :])
            cs.append(float(corr[upper[0], upper[1]].mean()))
            if layer < depth:
                w = torch.randn(width, width, generator=g) * math.sqrt(sw2 / width)
                b = torch.randn(width, generator=g) * math.sqrt(sb2)
                h = torch.nn.functional.linear(torch.tanh(h), w, b)
    q_net, c_net = np.array(qs), np.array(cs)
    q_theory, c_theory = theory.propagate("tanh", sw2, sb2, 1.0, 0.0, depth)
    np.testing.assert_allclose(q_net, q_theory, rtol=0.05)
    np.testing.assert_allclose(c_net, c_theory, atol=0.05)
    assert q_net[10:].mean() == pytest.approx(q_theory[10:].mean(), rel=0.01)
    assert c_net[10:].mean() == pytest.approx(c_theory[10:].mean(), abs=0.02)
    assert q_theory[-1] == pytest.approx(theory.mean_field("tanh", sw2, sb2).q_star, rel=1e-6)


# --- init schemes --------------------------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 256, 128


def _draw(init, shape=(FAN_OUT, FAN_IN)):
    w = torch.empty(shape)
    init(w, torch.Generator().manual_seed(0))
    return w


@pytest.mark.parametrize(
    ("scheme", "params", "init"),
    [
        ("uniform_fan_in", {"c": 1.3}, lambda w, g: torch.nn.init.uniform_(w, -1.3 / 16, 1.3 / 16, generator=g)),
        ("normal_fan_in", {"c": 0.7}, lambda w, g: torch.nn.init.normal_(w, 0.0, 0.7 / 16, generator=g)),
        ("uniform", {"low": -0.2, "high": 0.5}, lambda w, g: torch.nn.init.uniform_(w, -0.2, 0.5, generator=g)),
        ("uniform_symmetric", {"y": 0.05}, lambda w, g: torch.nn.init.uniform_(w, -0.05, 0.05, generator=g)),
        ("normal", {"mean": 0.02, "std": 0.05}, lambda w, g: torch.nn.init.normal_(w, 0.02, 0.05, generator=g)),
        ("constant", {"value": 0.1}, lambda w, g: torch.nn.init.constant_(w, 0.1)),
        ("xavier_uniform", {"gain": 1.0}, lambda w, g: torch.nn.init.xavier_uniform_(w, 1.0, generator=g)),
        ("xavier_normal", {"gain": 5 / 3}, lambda w, g: torch.nn.init.xavier_normal_(w, 5 / 3, generator=g)),
        (
            "kaiming_uniform",
            {"a": 0.0, "mode": "fan_in", "nonlinearity": "relu"},
            lambda w, g: torch.nn.init.kaiming_uniform_(w, 0.0, "fan_in", "relu", generator=g),
        ),
        (
            "kaiming_normal",
            {"a": 0.2, "mode": "fan_out", "nonlinearity": "leaky_relu"},
            lambda w, g: torch.nn.init.kaiming_normal_(w, 0.2, "fan_out", "leaky_relu", generator=g),
        ),
        (
            "kaiming_normal",
            {"a": 0.0, "mode": "fan_in", "nonlinearity": "tanh"},
            lambda w, g: torch.nn.init.kaiming_normal_(w, 0.0, "fan_in", "tanh", generator=g),
        ),
        (
            "kaiming_uniform",
            {"a": 0.0, "mode": "fan_in", "nonlinearity": "selu"},
            lambda w, g: torch.nn.init.kaiming_uniform_(w, 0.0, "fan_in", "selu", generator=g),
        ),
        ("orthogonal", {"gain": 1.0}, lambda w, g: torch.nn.init.orthogonal_(w, 1.0, generator=g)),
        (
            "trunc_normal",
            {"std": 0.02, "bound": 2.0},
            lambda w, g: torch.nn.init.trunc_normal_(w, 0.0, 0.02, -0.04, 0.04, generator=g),
        ),
        (
            "trunc_normal",
            {"std": 0.1, "bound": 0.8},
            lambda w, g: torch.nn.init.trunc_normal_(w, 0.0, 0.1, -0.08, 0.08, generator=g),
        ),
        ("sparse", {"sparsity": 0.3, "std": 0.01}, lambda w, g: torch.nn.init.sparse_(w, 0.3, 0.01, generator=g)),
    ],
)
def test_weight_variance_matches_torch_init(scheme, params, init):
    """fan_in E[W²] of 32,768 drawn weights: sampling error ~0.8% (Gaussian), so 3% is a 4σ bound."""
    torch.manual_seed(0)  # sparse_ picks its zeros from the global RNG
    w = _draw(init)
    assert theory.weight_variance(scheme, params, FAN_IN, FAN_OUT) == pytest.approx(
        FAN_IN * float(w.double().pow(2).mean()), rel=0.03
    )


def test_weight_variance_of_orthogonal_with_more_outputs_than_inputs():
    w = _draw(
        lambda w, g: torch.nn.init.orthogonal_(w, 2.0, generator=g), shape=(FAN_IN, FAN_OUT)
    )  # columns orthonormal
    assert theory.weight_variance("orthogonal", {"gain": 2.0}, FAN_OUT, FAN_IN) == pytest.approx(
        FAN_OUT * float(w.double().pow(2).mean()), rel=1e-4
    )


def test_weight_variance_of_pytorch_default_is_a_linear_layers_own_init():
    torch.manual_seed(0)
    w = torch.nn.Linear(FAN_IN, FAN_OUT).weight.detach()
    assert theory.weight_variance("pytorch_default", {}, FAN_IN, FAN_OUT) == pytest.approx(
        FAN_IN * float(w.double().pow(2).mean()), rel=0.03
    )
    assert theory.weight_variance("pytorch_default", {}, FAN_IN, FAN_OUT) == pytest.approx(1 / 3)


def test_weight_variance_special_schemes():
    assert math.isnan(theory.weight_variance("lsuv", {"tol": 0.1, "max_iter": 10}, FAN_IN, FAN_OUT))
    assert theory.weight_variance("critical", {"weight_variance": 1.76}, FAN_IN, FAN_OUT) == 1.76
    # kaiming gains are torch's calculate_gain squared
    for nl in ("linear", "relu", "tanh", "sigmoid", "selu"):
        p = {"a": 0.0, "mode": "fan_in", "nonlinearity": nl}
        assert theory.weight_variance("kaiming_normal", p, 64, 32) == pytest.approx(
            torch.nn.init.calculate_gain(nl) ** 2
        )


# --- bad input -----------------------------------------------------------------------------------------------------


def test_unknown_activation_names_it_and_the_valid_ones():
    for call in (
        lambda: theory.mean_field("swish", 1.0, 0.0),
        lambda: theory.critical_weight_variance("swish", 0.0),
        lambda: theory.propagate("swish", 1.0, 0.0, 1.0, 0.5, 3),
    ):
        with pytest.raises(ValueError, match=r"'swish'.*relu, tanh, gelu, selu, identity"):
            call()


def test_unknown_scheme_names_it():
    with pytest.raises(ValueError, match=r"'fixup'.*xavier_uniform"):
        theory.weight_variance("fixup", {}, 10, 10)
    with pytest.raises(ValueError, match="'gain'"):
        theory.weight_variance("xavier_normal", {}, 10, 10)
    with pytest.raises(ValueError, match="auto"):
        theory.weight_variance("orthogonal", {"gain": "auto"}, 10, 10)


def test_bad_variances_are_refused():
    with pytest.raises(ValueError, match="weight_variance"):
        theory.mean_field("tanh", 0.0, 0.1)
    with pytest.raises(ValueError, match="bias_variance"):
        theory.mean_field("tanh", 1.0, -0.1)
