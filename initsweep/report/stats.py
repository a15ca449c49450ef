"""Statistics over replicate seeds: t-based confidence intervals and paired comparisons (SciPy).

Seeds are paired across schemes: seed k of every scheme sees the same data order and dropout stream,
so "scheme A minus scheme B" is measured per seed and tested with a paired t-test.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

__all__ = ["Interval", "Paired", "adjust_p_values", "mean_ci", "paired_difference"]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.2f} (n=1)"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


@dataclass(frozen=True)
class Paired:
    difference: Interval
    """Mean of (a - b) over seeds with its t-interval."""
    p_value: float
    """Two-sided paired t-test; NaN for one seed."""
    p_adjusted: float = math.nan
    """`p_value` adjusted for every comparison in the same report (`adjust_p_values`)."""


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """The mean and its two-sided t confidence interval; no interval (NaN bounds) for a single value.

    Identical values (e.g. every seed diverged to the same penalty) give a zero-width interval.
    """
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = sps.t.ppf((1 + level) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Paired:
    """a - b over paired seeds: mean difference with its CI, and the paired t-test's p-value.

    When every seed shows the same difference (zero variance) the t statistic is infinite: p is 0 for a
    non-zero difference and 1 when there is none.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    interval = mean_ci(diffs, level)
    if len(diffs) < 2:
        return Paired(interval, math.nan)
    if statistics.pvariance(diffs) == 0:
        return Paired(interval, 1.0 if diffs[0] == 0 else 0.0)
    return Paired(interval, float(sps.ttest_rel(a, b).pvalue))


ADJUSTMENT = "Benjamini-Hochberg"
"""How p-values are adjusted for the number of comparisons (SciPy's `false_discovery_control`): an
adjusted p below 0.05 keeps the expected share of false discoveries among those rows under 5%."""


def adjust_p_values(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values of a family of comparisons; NaN (one seed) stays NaN and does
    not count as a comparison."""
    finite = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if finite:
        for i, q in zip(finite, sps.false_discovery_control([p_values[i] for i in finite]), strict=True):
            adjusted[i] = float(q)
    return adjusted
