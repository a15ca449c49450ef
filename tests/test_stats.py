"""Confidence intervals and paired tests against SciPy on known numbers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from initsweep.report.stats import mean_ci, paired_difference

A = [85.1, 85.6, 84.9, 86.0, 85.4]
B = [84.7, 85.5, 84.2, 85.6, 85.0]


def test_t_interval_matches_scipy():
    ci = mean_ci(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=sum(A) / 5, scale=stats.sem(A))
    assert ci.mean == pytest.approx(85.4) and ci.n == 5
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert mean_ci(A, 0.99).half_width > ci.half_width


def test_known_numbers_by_hand():
    # [1, 2, 3]: mean 2, sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.302653
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_paired_difference_matches_scipy():
    paired = paired_difference(A, B)
    diffs = [a - b for a, b in zip(A, B, strict=True)]
    assert paired.difference.mean == pytest.approx(sum(diffs) / 5)
    assert paired.p_value == pytest.approx(stats.ttest_rel(A, B).pvalue)
    low, high = stats.t.interval(0.95, 4, loc=sum(diffs) / 5, scale=stats.sem(diffs))
    assert (paired.difference.low, paired.difference.high) == (pytest.approx(low), pytest.approx(high))
    assert paired_difference(B, A).difference.mean == pytest.approx(-paired.difference.mean)


def test_one_seed_has_no_interval_and_no_p_value():
    ci = mean_ci([84.2])
    assert ci.mean == 84.2 and math.isnan(ci.low) and math.isnan(ci.high) and str(ci) == "84.20 (n=1)"
    paired = paired_difference([84.2], [83.0])
    assert paired.difference.mean == pytest.approx(1.2) and math.isnan(paired.p_value)


def test_all_diverged_rows_are_degenerate_but_finite():
    diverged = [0.0, 0.0, 0.0]  # every seed at the accuracy penalty
    ci = mean_ci(diverged)
    assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)
    worse = paired_difference(diverged, [85.0, 85.0, 85.0])  # the same difference for every seed
    assert worse.difference.mean == -85.0 and worse.p_value == 0.0
    assert paired_difference(diverged, diverged).p_value == 1.0


def test_mismatched_or_empty_samples_are_errors():
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])


def test_adjusted_p_values_are_benjamini_hochberg_and_skip_single_seeds():
    from initsweep.report.stats import adjust_p_values

    # BH by hand: sorted p (0.01, 0.03, 0.04, 0.5) times m/rank (4, 2, 4/3, 1), then the running minimum
    # from the largest down: 0.04, 0.0533, 0.0533, 0.5.
    got = adjust_p_values([0.01, 0.04, float("nan"), 0.03, 0.5])
    assert got[0] == pytest.approx(0.04) and got[1] == pytest.approx(0.16 / 3) and got[3] == pytest.approx(0.16 / 3)
    assert got[4] == pytest.approx(0.5) and math.isnan(got[2])
    assert adjust_p_values([]) == [] and all(math.isnan(p) for p in adjust_p_values([float("nan")]))
