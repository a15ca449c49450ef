"""Mean-field signal propagation: which weight variance lets a deep, wide, random network carry a signal?

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), "Exponential expressivity in deep neural networks through
transient chaos", and Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (ICLR 2017), "Deep Information Propagation",
study fully-connected networks of infinite width with weights W_ij ~ N(0, σ_w²/fan_in), biases b_i ~ N(0, σ_b²)
and pre-activations h^l = W^l φ(h^{l-1}) + b^l. With z, z1, z2 independent N(0, 1):

- q^l, one input's mean squared pre-activation, follows the length map
  q^{l+1} = σ_w² E[φ(√q^l z)²] + σ_b², to a fixed point q*.
- c^l, the correlation of two inputs' pre-activations (both of length q), follows the correlation map
  c^{l+1} = (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q^{l+1}, u1 = √q z1, u2 = √q (c z1 + √(1 - c²) z2), to a fixed point c*.
  c = 1 is always a fixed point; c* is the one a pair of distinct inputs approaches.
- χ1 = σ_w² E[φ'(√q* z)²] is the correlation map's slope at c = 1 and the factor by which gradients grow per
  layer. It splits the (σ_w², σ_b²) plane into an ordered phase (χ1 < 1: every pair of inputs ends up perfectly
  correlated, c* = 1, gradients vanish), a chaotic phase (χ1 > 1: nearby inputs decorrelate, c* < 1, gradients
  explode) and the critical line between them (χ1 = 1, "the edge of chaos").
- χ_q = σ_w² E[φ''(√q* z) φ(√q* z) + φ'(√q* z)²] is the length map's slope at q*, χ_c = σ_w² E[φ'(u1) φ'(u2)] at
  (q*, c*) the correlation map's. ξ_q = 1/|ln χ_q| and ξ_c = 1/|ln χ_c| are the depths over which a deviation
  from the fixed point shrinks (or grows) by a factor e. Schoenholz et al. find that networks train up to about
  6 ξ_c layers; ξ_c is infinite at criticality.

Expectations are Gauss-Legendre quadratures split where the activations have kinks (at 0), in polar coordinates
for the two-input integrals: Gauss-Hermite converges slowly on ReLU's and SELU's kinks, this is exact to ~1e-12.
Positively homogeneous activations (relu, identity) use closed forms instead (the arc-cosine kernel, Cho & Saul
2009). Nothing here samples.

Where there is no finite, positive q*, the network behaves like a "cone" φ(x) = a x (x > 0), b x (x < 0), whose
correlation map does not depend on q:
- relu, identity are their own cone: the length map is linear, q → σ_w² k q + σ_b² with k = E[φ(z)²]. q* is
  σ_b² / (1 - σ_w² k) when σ_w² k < 1 (0 without bias: the signal dies geometrically), inf when σ_w² k > 1 or when
  σ_w² k = 1 with a bias (the signal grows without bound), and the starting length q0 when σ_w² k = 1 without bias
  (ReLU at σ_w² = 2, σ_b² = 0: every q is a fixed point).
- the others take the cone of φ near 0 when the signal dies (q* = 0, only without bias: tanh behaves like the
  identity) and that of φ at infinity when it explodes (q* = inf: gelu and selu behave like a ReLU).
In these regimes c* is 1 (nan when the cone is linear and there is no bias: every correlation is then a fixed
point) and χ_c = χ1 still measures how fast the distance between two inputs' representations, and gradients,
shrink or grow per layer; the normalized correlation itself may converge only polynomially (ReLU without bias).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "PHASE_TOL",
    "Activation",
    "MeanField",
    "correlation_map",
    "critical_weight_variance",
    "get_activation",
    "length_map",
    "mean_field",
    "propagate",
    "weight_variance",
]

PHASE_TOL = 1e-3
"""|χ1 - 1| up to which a point counts as critical: ξ_c > ~1000 layers there, deeper than any network we train."""

Array = np.ndarray
Fn = Callable[[Array], Array]


@dataclass(frozen=True)
class Activation:
    """φ with its first two derivatives (numpy, elementwise), and the cones it behaves like.

    `small` is (φ'(0+), φ'(0-)) for φ(0) = 0, the cone φ looks like when the signal dies; `large` is
    (lim φ(x)/x at +inf, at -inf), the one it looks like when the signal explodes (None: φ is bounded, q* is
    finite). `homogeneous`: φ is exactly its cone, so closed forms replace quadrature.
    """

    phi: Fn
    dphi: Fn
    d2phi: Fn
    small: tuple[float, float] | None = None
    large: tuple[float, float] | None = None
    homogeneous: bool = False


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)


def _selu(x: Array) -> Array:
    return np.where(x > 0, SELU_SCALE * x, SELU_SCALE * SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _dselu(x: Array) -> Array:
    return np.where(x > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _d2selu(x: Array) -> Array:
    return np.where(x > 0, 0.0, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _gauss_pdf(x: Array) -> Array:
    return np.exp(-0.5 * x * x) / _SQRT_2PI


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _ndtr(x: Array) -> Array:
    """The standard normal CDF, exact (math.erfc element-wise: NumPy has no erf, and SciPy is not needed)."""
    return 0.5 * _erfc(-np.asarray(x) / math.sqrt(2.0)).astype(float)


# The kinks of relu's and selu's derivatives sit at 0, where φ = 0, so the delta in φ'' adds nothing to χ_q.
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(
        lambda x: np.maximum(x, 0.0),
        lambda x: (x > 0).astype(float),
        np.zeros_like,
        small=(1.0, 0.0),
        large=(1.0, 0.0),
        homogeneous=True,
    ),
    "tanh": Activation(
        np.tanh,
        lambda x: 1.0 - np.tanh(x) ** 2,
        lambda x: -2.0 * np.tanh(x) * (1.0 - np.tanh(x) ** 2),
        small=(1.0, 1.0),
    ),
    "gelu": Activation(  # the exact erf form, torch's default
        lambda x: x * _ndtr(x),
        lambda x: _ndtr(x) + x * _gauss_pdf(x),
        lambda x: (2.0 - x * x) * _gauss_pdf(x),
        small=(0.5, 0.5),
        large=(1.0, 0.0),
    ),
    "selu": Activation(_selu, _dselu, _d2selu, small=(SELU_SCALE, SELU_SCALE * SELU_ALPHA), large=(SELU_SCALE, 0.0)),
    "identity": Activation(
        lambda x: np.asarray(x, dtype=float), np.ones_like, np.zeros_like, (1.0, 1.0), (1.0, 1.0), True
    ),
}
"""name -> Activation: a model activation added later is one entry here."""


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r} (valid: {', '.join(ACTIVATIONS)})") from None


# --- quadrature ---------------------------------------------------------------------------------------------------

_R_MAX = 12.0  # P(|z| > 12) ~ 1e-33
_RADIAL_EDGES = (0.0, 0.25, 0.75, 1.5, 2.5, 4.0, 6.0, 8.5, _R_MAX)


def _panels(edges: tuple[float, ...], n: int) -> tuple[Array, Array]:
    """Composite Gauss-Legendre nodes and weights over consecutive intervals."""
    x, w = np.polynomial.legendre.leggauss(n)
    lo, hi = np.asarray(edges[:-1])[:, None], np.asarray(edges[1:])[:, None]
    return ((hi - lo) / 2 * x + (hi + lo) / 2).ravel(), ((hi - lo) / 2 * w).ravel()


_X, _WX = _panels(_RADIAL_EDGES, 24)
_W1 = _WX * np.exp(-0.5 * _X**2) / _SQRT_2PI  # E[g(z)] = Σ W1 (g(x) + g(-x)): a kink at 0 costs nothing
_W2 = _WX * _X * np.exp(-0.5 * _X**2) / (2.0 * np.pi)  # radial weight of E over the plane, polar coordinates
_T, _WT = np.polynomial.legendre.leggauss(48)


def _expect1(g: Fn, q: float) -> float:
    """E[g(√q z)]."""
    s = math.sqrt(q)
    return float(np.dot(_W1, g(s * _X) + g(-s * _X)))


def _expect2(g1: Fn, g2: Fn, q: float, c: float) -> float:
    """E[g1(u1) g2(u2)] for u1, u2 ~ N(0, q) with correlation c.

    In polar coordinates z = r (cos θ, sin θ): u1 = √q r cos θ, u2 = √q r cos(θ - θc), c = cos θc, so the kinks
    at u1 = 0 and u2 = 0 are rays; integrating each sector between them separately keeps the rule exponential.
    """
    tc = math.acos(min(1.0, max(-1.0, c)))
    half = math.pi / 2
    cuts = {0.0, half, 3 * half, 2 * math.pi, (tc + half) % (2 * math.pi), (tc + 3 * half) % (2 * math.pi)}
    edges = sorted(cuts)
    lo, hi = np.asarray(edges[:-1])[:, None], np.asarray(edges[1:])[:, None]
    theta = ((hi - lo) / 2 * _T + (hi + lo) / 2).ravel()
    wtheta = ((hi - lo) / 2 * _WT).ravel()
    s = math.sqrt(q)
    u1 = s * np.outer(np.cos(theta), _X)
    u2 = s * np.outer(np.cos(theta - tc), _X)
    return float(wtheta @ (g1(u1) * g2(u2)) @ _W2)


# --- cones: φ(x) = a x for x > 0, b x for x < 0, in closed form ----------------------------------------------------


def _arccos_kernel(c: float) -> float:
    """E[relu(z1) relu(z2)] for unit-variance z1, z2 with correlation c (arc-cosine kernel of degree 1)."""
    return (math.sqrt(max(0.0, 1.0 - c * c)) + (math.pi - math.acos(c)) * c) / (2.0 * math.pi)


def _cone_k(cone: tuple[float, float], c: float) -> float:
    """E[φ(z1) φ(z2)] for the cone φ = a relu(x) - b relu(-x), unit variance."""
    a, b = cone
    return (a * a + b * b) * _arccos_kernel(c) - 2.0 * a * b * _arccos_kernel(-c)


def _cone_sq(cone: tuple[float, float]) -> float:
    """E[φ(z)²] = E[φ'(z)²] = (a² + b²) / 2."""
    return (cone[0] ** 2 + cone[1] ** 2) / 2.0


def _clip_c(c: float) -> float:
    return min(1.0, max(-1.0, c))


# --- the maps --------------------------------------------------------------------------------------------------------


def _check_variances(weight_variance: float, bias_variance: float) -> None:
    if not (math.isfinite(weight_variance) and weight_variance > 0):
        raise ValueError(f"weight_variance must be finite and > 0, not {weight_variance!r}")
    if not (math.isfinite(bias_variance) and bias_variance >= 0):
        raise ValueError(f"bias_variance must be finite and >= 0, not {bias_variance!r}")


def _length(act: Activation, sw2: float, sb2: float, q: float) -> float:
    if act.homogeneous:
        return sw2 * _cone_sq(act.small) * q + sb2
    return sw2 * _expect1(lambda x: act.phi(x) ** 2, q) + sb2


def length_map(activation: str, weight_variance: float, bias_variance: float, q: float) -> float:
    """q^{l+1} from q^l: σ_w² E[φ(√q z)²] + σ_b²."""
    _check_variances(weight_variance, bias_variance)
    return _length(get_activation(activation), weight_variance, bias_variance, q)


def _correlation(act: Activation, sw2: float, sb2: float, q: float, c: float) -> float:
    c = _clip_c(c)
    if act.homogeneous:
        num, den = sw2 * q * _cone_k(act.small, c) + sb2, sw2 * q * _cone_sq(act.small) + sb2
    else:  # the same rule at c and at 1, so that c = 1 stays exactly fixed
        num = sw2 * _expect2(act.phi, act.phi, q, c) + sb2
        den = sw2 * _expect2(act.phi, act.phi, q, 1.0) + sb2
    return num / den if den > 0 else math.nan


def correlation_map(activation: str, weight_variance: float, bias_variance: float, q: float, c: float) -> float:
    """c^{l+1} from two inputs of length q^l and correlation c^l: (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q^{l+1}.

    This is the exact layer-to-layer map (normalized by q^{l+1}, not q*), so it also holds away from q*.
    """
    _check_variances(weight_variance, bias_variance)
    return _correlation(get_activation(activation), weight_variance, bias_variance, q, c)


def propagate(
    activation: str, weight_variance: float, bias_variance: float, q0: float, c0: float, depth: int
) -> tuple[Array, Array]:
    """The theory's q^l and c^l for l = 0..depth of two inputs starting with length q0 and correlation c0.

    Index 0 is the start (layer 0's pre-activations); each step is one more linear layer after φ.
    """
    _check_variances(weight_variance, bias_variance)
    act = get_activation(activation)
    q, c = np.empty(depth + 1), np.empty(depth + 1)
    q[0], c[0] = q0, c0
    for layer in range(depth):
        q[layer + 1] = _length(act, weight_variance, bias_variance, q[layer])
        c[layer + 1] = _correlation(act, weight_variance, bias_variance, q[layer], c[layer])
    return q, c


# --- fixed points ----------------------------------------------------------------------------------------------------

_SCAN = 1.25  # the grid the fixed-point search steps along (geometric), fine enough not to step over two roots
_Q_MIN, _Q_MAX = 1e-12, 1e12


def _root(f: Callable[[float], float], a: float, b: float, xtol: float, rtol: float = 4 * _EPS) -> float:
    """A root of f in [a, b], where f(a) and f(b) differ in sign: Brent's method (bisection's guarantee at
    secant speed), as in Brent (1973) and Numerical Recipes' zbrent, so that this module needs only NumPy."""
    fa, fb = f(a), f(b)
    if fa == 0 or fb == 0:
        return a if fa == 0 else b
    if (fa > 0) == (fb > 0):
        raise ValueError(f"no sign change in [{a}, {b}]")
    c, fc, d, e = b, fb, b - a, b - a
    for _ in range(300):
        if (fb > 0) == (fc > 0):  # keep the root between b and c
            c, fc, d, e = a, fa, b - a, b - a
        if abs(fc) < abs(fb):
            a, b, c, fa, fb, fc = b, c, b, fb, fc, fb
        tol = 2 * rtol * abs(b) + 0.5 * xtol
        m = 0.5 * (c - b)
        if abs(m) <= tol or fb == 0:
            return b
        if abs(e) >= tol and abs(fa) > abs(fb):  # interpolate: secant, or inverse quadratic
            s = fb / fa
            if a == c:
                p, q = 2 * m * s, 1 - s
            else:
                qa, r = fa / fc, fb / fc
                p, q = s * (2 * m * qa * (qa - r) - (b - a) * (r - 1)), (qa - 1) * (r - 1) * (s - 1)
            p, q = (p, -q) if p > 0 else (-p, q)
            d, e = (p / q, d) if 2 * p < min(3 * m * q - abs(tol * q), abs(e * q)) else (m, m)
        else:  # bisect
            d = e = m
        a, fa = b, fb
        b += d if abs(d) > tol else math.copysign(tol, m)
        fb = f(b)
    return b


def _brentq(f: Callable[[float], float], lo: float, hi: float) -> float:
    return _root(f, lo, hi, xtol=max(lo * 1e-14, 1e-300))


def _q_star(act: Activation, sw2: float, sb2: float, q0: float) -> float:
    """The fixed point the length map reaches from q0 (0 if the signal dies, inf if it explodes).

    The map is increasing in q, so iterating it from q0 moves monotonically to the nearest root of L(q) - q
    in the direction of L(q0) - q0; a geometric scan brackets that root.
    """
    if act.homogeneous:
        slope = sw2 * _cone_sq(act.small)
        if math.isclose(slope, 1.0, rel_tol=1e-12):
            return q0 if sb2 == 0 else math.inf
        return math.inf if slope > 1 else sb2 / (1.0 - slope)

    def gap(q: float) -> float:
        return _length(act, sw2, sb2, q) - q

    g0 = gap(q0)
    if g0 == 0:
        return q0
    if g0 < 0:  # shrinking: the largest root below q0
        hi = q0
        while hi > _Q_MIN:
            lo = hi / _SCAN
            if gap(lo) >= 0:
                return _brentq(gap, lo, hi)
            hi = lo
        return _brentq(gap, 0.0, hi) if gap(0.0) > 0 else 0.0
    lo = q0  # growing: the smallest root above q0
    while lo < _Q_MAX:
        hi = lo * _SCAN
        if gap(hi) <= 0:
            return _brentq(gap, lo, hi)
        lo = hi
    return math.inf


def _depth_scale(chi: float) -> float:
    """1/|ln χ|: the depth over which a deviation changes by a factor e (inf at χ = 1, 0 at χ = 0)."""
    if chi <= 0:
        return 0.0
    rate = abs(math.log(chi))
    return math.inf if rate < 1e-12 else 1.0 / rate  # χ within rounding of 1 (a gain of √2 squared)


def _phase(chi1: float) -> str:
    if chi1 < 1 - PHASE_TOL:
        return "ordered"
    return "chaotic" if chi1 > 1 + PHASE_TOL else "critical"


@dataclass(frozen=True)
class MeanField:
    """The mean-field fixed point of one (activation, σ_w², σ_b²): see the module docstring for each symbol.

    q_star may be 0 (the signal dies), inf (it explodes) or q0 (every q is fixed); c_star is nan when every
    correlation is fixed (a linear network without bias). phase is "ordered", "chaotic" or "critical".
    """

    activation: str
    weight_variance: float
    bias_variance: float
    q_star: float
    chi1: float
    c_star: float
    xi_q: float
    xi_c: float
    phase: str

    @property
    def trainable_depth(self) -> float:
        """6 ξ_c: about how deep a network still trains (Schoenholz et al. 2017); inf at criticality."""
        return 6.0 * self.xi_c


def _cone_regime(act: Activation, q: float) -> tuple[float, float] | None:
    """The cone the network behaves like at q* = q, or None when q* is finite and positive (quadrature)."""
    if act.homogeneous:
        return act.small
    if q == 0:
        return act.small
    if math.isinf(q):
        if act.large is None:
            raise ValueError("the length map diverges for a bounded activation: weight_variance is absurd")
        return act.large
    return None


def _chi1(act: Activation, sw2: float, sb2: float, q: float) -> float:
    cone = _cone_regime(act, q)
    if cone is not None:
        return sw2 * _cone_sq(cone)
    return sw2 * _expect1(lambda x: act.dphi(x) ** 2, q)


def mean_field(activation: str, weight_variance: float, bias_variance: float, *, q0: float = 1.0) -> MeanField:
    """Fixed points, slopes, depth scales and phase of the (activation, σ_w², σ_b²) network.

    q0 is the length the signal starts from; it matters only where the length map has several attractors
    (gelu without bias: 0 and inf) or none (ReLU at σ_w² = 2 without bias, which keeps q0).
    """
    _check_variances(weight_variance, bias_variance)
    if not (math.isfinite(q0) and q0 > 0):
        raise ValueError(f"q0 must be finite and > 0, not {q0!r}")
    act, sw2, sb2 = get_activation(activation), weight_variance, bias_variance
    q = _q_star(act, sw2, sb2, q0)
    chi1 = _chi1(act, sw2, sb2, q)
    cone = _cone_regime(act, q)
    if cone is not None:
        # slope of the length map there; the bias enters only through q* (homogeneous) or not at all (q* = 0, inf)
        chi_q = sw2 * _cone_sq(cone)
        offset = sb2 / q if (sb2 > 0 and 0 < q < math.inf) else 0.0  # σ_b² / q*
        # A linear cone leaves c alone unless a bias pulls it to 1: not at all without bias, and by a vanishing
        # amount per layer when q explodes geometrically (c then stops wherever it started).
        linear = cone[0] == cone[1]
        c_star = math.nan if (linear and offset == 0 and (sb2 == 0 or chi_q > 1)) else 1.0
        chi_c = chi1
    else:
        chi_q = sw2 * _expect1(lambda x: act.d2phi(x) * act.phi(x) + act.dphi(x) ** 2, q)
        norm = sw2 * _expect2(act.phi, act.phi, q, 1.0) + sb2  # = q* up to quadrature error
        c_star = 1.0 if chi1 <= 1 else _c_star_chaotic(act, sw2, sb2, q, norm)
        chi_c = sw2 * q * _expect2(act.dphi, act.dphi, q, c_star) / norm
    return MeanField(
        activation=activation,
        weight_variance=float(sw2),
        bias_variance=float(sb2),
        q_star=float(q),
        chi1=float(chi1),
        c_star=float(c_star),
        xi_q=_depth_scale(chi_q),
        xi_c=_depth_scale(chi_c),
        phase=_phase(chi1),
    )


def _c_star_chaotic(act: Activation, sw2: float, sb2: float, q: float, norm: float) -> float:
    """The stable fixed point in [0, 1) when c = 1 is unstable (χ1 > 1).

    On [0, 1] the map is convex (its Hermite expansion has non-negative coefficients), at or above 0 at c = 0 and
    below c just under 1, so it crosses c exactly once there. For an odd φ without bias that crossing is c = 0;
    two inputs x and -x then stay at c = -1.
    """

    def gap(c: float) -> float:
        return (sw2 * _expect2(act.phi, act.phi, q, c) + sb2) / norm - c

    prev, g = 0.0, gap(0.0)
    if g <= 1e-13:
        return 0.0
    for k in range(1, 53):
        c = 1.0 - 2.0**-k
        if gap(c) < 0:
            return _root(gap, prev, c, xtol=1e-15)
        prev = c
    return 1.0  # within quadrature error of critical


def critical_weight_variance(activation: str, bias_variance: float, *, q0: float = 1.0) -> float:
    """The σ_w² at which χ1 = 1 for this σ_b²: the edge of chaos, where ξ_c diverges.

    Raises ValueError where χ1 jumps over 1 instead (gelu without bias: below the jump the signal dies, above
    it explodes, and no σ_w² keeps a finite signal at χ1 = 1).
    """
    _check_variances(1.0, bias_variance)
    act, sb2 = get_activation(activation), bias_variance
    if act.homogeneous:
        return 1.0 / _cone_sq(act.small)

    def excess(sw2: float) -> float:
        return _chi1(act, sw2, sb2, _q_star(act, sw2, sb2, q0)) - 1.0

    hi = 1.0
    while excess(hi) < 0:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"no σ_w² up to 1e6 makes {activation} critical at bias_variance={sb2}")
    lo = hi / 2.0
    while excess(lo) > 0:
        lo /= 2.0
        if lo < 1e-6:
            raise ValueError(f"no σ_w² down to 1e-6 makes {activation} critical at bias_variance={sb2}")
    root = _root(excess, lo, hi, xtol=1e-12)
    below, above = excess(root * (1 - 1e-7)), excess(root * (1 + 1e-7))
    if min(abs(below), abs(above)) > 10 * PHASE_TOL:
        raise ValueError(
            f"{activation} has no critical σ_w² at bias_variance={sb2}: χ1 jumps from {below + 1:.3f} to "
            f"{above + 1:.3f} at σ_w² = {root:.4f} (q* jumps between 0 and inf)"
        )
    return root


# --- the project's init schemes --------------------------------------------------------------------------------------

_GAINS = {"linear": 1.0, "sigmoid": 1.0, "relu": 2.0, "tanh": (5.0 / 3.0) ** 2, "selu": (3.0 / 4.0) ** 2}
"""gain² per torch.nn.init.calculate_gain; leaky_relu's, 2 / (1 + a²), depends on a."""


def _num(scheme: str, params: Mapping[str, object], key: str) -> float:
    if key not in params:
        raise ValueError(f"scheme {scheme!r} needs parameter {key!r}")
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{scheme}.{key} must be a number (resolve 'auto' first), not {value!r}")
    return float(value)


def _kaiming_gain2(params: Mapping[str, object]) -> float:
    nonlinearity = params.get("nonlinearity", "leaky_relu")
    if nonlinearity == "leaky_relu":
        a = _num("kaiming", params, "a") if "a" in params else 0.0
        return 2.0 / (1.0 + a * a)
    if nonlinearity not in _GAINS:
        valid = ", ".join([*_GAINS, "leaky_relu"])
        raise ValueError(f"unknown kaiming nonlinearity {nonlinearity!r} (valid: {valid})")
    return _GAINS[nonlinearity]


def weight_variance(scheme: str, params: Mapping[str, object], fan_in: int, fan_out: int) -> float:
    """σ_w² = fan_in E[W²] of a (fan_out, fan_in) weight drawn by one of the project's init schemes.

    The theory assumes zero-mean weights; for `uniform`, `normal` and `constant` with a non-zero mean this is the
    second moment, which sets q but not the mean field a shared mean adds. `orthogonal` and `sparse` are exact
    for a Linear weight (a conv's rows are its out_channels, not its fan_out). `lsuv` depends on the data: nan.
    `critical` is a Gaussian with {"weight_variance": σ_w²}.
    """
    p, name = params, scheme
    if name == "uniform_fan_in":
        return _num(name, p, "c") ** 2 / 3.0
    if name == "normal_fan_in":
        return _num(name, p, "c") ** 2
    if name == "uniform":
        low, high = _num(name, p, "low"), _num(name, p, "high")
        return fan_in * ((high - low) ** 2 / 12.0 + ((high + low) / 2.0) ** 2)
    if name == "uniform_symmetric":
        return fan_in * _num(name, p, "y") ** 2 / 3.0
    if name == "normal":
        return fan_in * (_num(name, p, "std") ** 2 + _num(name, p, "mean") ** 2)
    if name == "constant":
        return fan_in * _num(name, p, "value") ** 2
    if name in ("xavier_uniform", "xavier_normal"):
        return fan_in * _num(name, p, "gain") ** 2 * 2.0 / (fan_in + fan_out)
    if name in ("kaiming_uniform", "kaiming_normal"):
        mode = p.get("mode", "fan_in")
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"{name}.mode must be fan_in or fan_out, not {mode!r}")
        return fan_in * _kaiming_gain2(p) / (fan_in if mode == "fan_in" else fan_out)
    if name == "orthogonal":  # rows (fan_in >= fan_out) or columns orthonormal, times gain
        return fan_in * _num(name, p, "gain") ** 2 / max(fan_in, fan_out)
    if name == "trunc_normal":
        std, bound = _num(name, p, "std"), _num(name, p, "bound")
        mass = math.erf(bound / math.sqrt(2.0))  # N(0, 1) truncated to [-bound, bound] has this variance:
        return fan_in * std**2 * (1.0 - 2.0 * bound * math.exp(-0.5 * bound * bound) / _SQRT_2PI / mass)
    if name == "sparse":  # ceil(sparsity * rows) zeros in each column
        zeros = math.ceil(_num(name, p, "sparsity") * fan_out) / fan_out
        return fan_in * _num(name, p, "std") ** 2 * (1.0 - zeros)
    if name == "pytorch_default":  # kaiming_uniform(a=√5): U(±1/√fan_in)
        return 1.0 / 3.0
    if name == "lsuv":
        return math.nan
    if name == "critical":
        return _num(name, p, "weight_variance")
    raise ValueError(f"unknown scheme {scheme!r} (valid: {', '.join(_SCHEMES)})")


_SCHEMES = [
    "constant",
    "uniform",
    "uniform_symmetric",
    "normal",
    "uniform_fan_in",
    "normal_fan_in",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "trunc_normal",
    "sparse",
    "lsuv",
    "pytorch_default",
    "critical",
]
