"""Group-sequential boundaries: published values, an independent integration, the error they
spend, the t multiplier each look reads, and the looks past the plan."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.decide import sequential as sq


def test_obrien_fleming_type_boundaries_match_the_published_table():
    """Lan-DeMets O'Brien-Fleming spending in the published convention (each side the one-sided
    function at alpha/2), 5 equally spaced looks, two-sided alpha 0.05: gsDesign's sfLDOF with
    alpha = 0.025 one-sided and ldbounds give 4.877 3.357 2.680 2.290 2.031. (Plugging the
    two-sided alpha into the one-sided formula, as this module did before issue 41, gave 4.383
    3.100 2.553 2.254 2.063: valid, but not the convention the tables and users read.)"""
    got = sq.boundaries(tuple(np.arange(1, 6) / 5), 0.05)
    assert got == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=1e-3)


# Ten equally spaced looks, two-sided 0.05, the same convention. No published table for K = 10
# was found to pin; these are the recursion's values, and
# test_ten_look_table_spends_the_function_by_an_independent_integration checks them with Genz's
# multivariate normal integration, which shares no code with the grid recursion. The second look
# (t = 0.2) equals the 5-look table's first, as it must: the first look spends 3e-12.
TEN_LOOKS = (6.9913, 4.8769, 3.9297, 3.3671, 2.9893, 2.7148, 2.5041, 2.3358, 2.1975, 2.0812)


def test_ten_look_boundaries_are_pinned():
    got = sq.boundaries(tuple(np.arange(1, 11) / 10), 0.05)
    assert got == pytest.approx(TEN_LOOKS, abs=1e-4)


def test_ten_look_table_spends_the_function_by_an_independent_integration():
    """Under no effect, Z_1..Z_K at t = 0.1..1 are jointly normal with corr(Z_i, Z_j) =
    sqrt(t_i / t_j); the chance that some |Z_j| >= c_j by look k is 1 minus a k-dimensional normal
    box probability, which scipy integrates by Genz's quasi-Monte Carlo method (error ~1e-5 at
    these settings, 1.6 s here). It must equal the spending function at t_k for every k: a
    boundary 0.001 off moves the last look's spending by ~9e-5."""
    from scipy.stats import multivariate_normal

    t = np.arange(1, 11) / 10
    c = np.array(TEN_LOOKS)
    corr = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    for k in range(1, 11):
        mvn = multivariate_normal(np.zeros(k), corr[:k, :k], maxpts=30_000 * k, abseps=1e-6, releps=0, seed=1)
        crossed = 1.0 - mvn.cdf(c[:k], lower_limit=-c[:k])
        assert crossed == pytest.approx(sq.spent(t[k - 1], 0.05), abs=3e-5), k


def test_pocock_type_boundaries_match_the_published_table():
    # Lan-DeMets Pocock-type spending, 5 equally spaced looks, two-sided alpha 0.05
    # (Jennison and Turnbull 2000, table 7.6; gsDesign's sfLDPocock gives the same to 3 decimals).
    got = sq.boundaries(tuple(np.arange(1, 6) / 5), 0.05, "pocock")
    assert got == pytest.approx((2.438, 2.427, 2.410, 2.397, 2.386), abs=1.5e-3)


@pytest.mark.parametrize("kind", sq.SPENDING)
def test_boundaries_spend_exactly_the_stated_error(kind):
    """A Brownian motion read at the looks crosses the boundaries with probability alpha (Monte
    Carlo, 200,000 paths: standard error 0.0005), and the first look's boundary is the spending
    function's first step in closed form."""
    fr = np.array([6, 9, 12, 15, 20, 24]) / 24
    c = np.array(sq.boundaries(tuple(fr), 0.05, kind))
    from scipy.stats import norm

    assert c[0] == pytest.approx(norm.isf(sq.spent(fr[0], 0.05, kind) / 2))
    rng = np.random.default_rng(7)
    inc = rng.normal(0.0, 1.0, (200_000, len(fr))) * np.sqrt(np.diff(np.r_[0.0, fr]))
    z = inc.cumsum(axis=1) / np.sqrt(fr)
    assert (np.abs(z) >= c).any(axis=1).mean() == pytest.approx(0.05, abs=0.002)
    if kind == "obrien-fleming":  # spends little early: the last boundary is near the fixed 1.96
        assert c[0] > 3.5 and 1.96 < c[-1] < 2.1
    # each side spends half: the one-sided Lan-DeMets function at alpha/2 (Monte Carlo, se 0.00035)
    assert (z >= c).any(axis=1).mean() == pytest.approx(0.025, abs=0.0015)


def test_the_interval_of_a_look_widens_early_and_closes_at_the_plan():
    early = sq.look([6], 24)
    late = sq.look(list(range(6, 25)), 24)
    assert early.nominal_confidence > 0.999 and 0.95 < late.nominal_confidence < 0.975
    # past the planned rounds no error is left: no interval can decide
    assert math.isinf(sq.look(list(range(6, 26)), 24).z_boundary)
    # the t multiplier carries the boundary's tail probability to the estimated spread
    from scipy.stats import t

    assert sq.t_quantile_for(1.959963984540054, 7) == pytest.approx(t.ppf(0.975, 7))


def test_the_multiplier_adds_the_cornish_fisher_skewness_allowance():
    """q + g (2 q^2 + 1) / (6 sqrt(n)) with q the t quantile of the boundary's tail: worked by hand
    for the fixed-sample 1.96 at 8 rounds, t(0.975; 7) = 2.364624, g = 0.7:
    2.364624 + 0.7 x 12.182896 / 16.970563 = 2.867143. With g = 0 it is the significance-level
    approach alone; the design's confidence is the t level whose quantile is the multiplier."""
    from scipy.stats import t

    assert sq.multiplier(1.959963984540054, 8) == pytest.approx(2.867143, abs=2e-6)
    assert sq.multiplier(1.959963984540054, 8, skew=0.0) == pytest.approx(t.ppf(0.975, 7))
    assert math.isinf(sq.multiplier(math.inf, 8))
    d = sq.Design(14, 6)
    for n in (6, 10, 14):
        m = sq.multiplier(d.z_boundary(n, 0.05), n)
        assert t.isf((1 - d.confidence(n, 0.05)) / 2, n - 1) == pytest.approx(m, rel=1e-7)
    assert sq.Design(14, 6, skew_allowance=0.0).confidence(14, 0.05) == pytest.approx(
        sq.confidence_of(d.z_boundary(14, 0.05)), abs=1e-12)


def test_bad_designs_are_refused():
    with pytest.raises(ValueError, match="spending"):
        sq.spent(0.5, 0.05, "haybittle")
    with pytest.raises(ValueError, match="increase"):
        sq.boundaries((0.5, 0.5), 0.05)


def test_a_designs_boundaries_are_those_of_its_looks_so_far():
    """Design reads look k's boundary from one recursion over the whole plan: the same as
    look() over the looks taken so far, since a spending boundary depends only on the looks
    before it."""
    d = sq.Design(14, 6)
    for n in range(6, 15):
        assert d.z_boundary(n, 0.05) == pytest.approx(sq.look(d.looks(n), 14, 0.05).z_boundary, abs=1e-9)
        # without the skewness allowance the look reads the boundary's level through t
        assert sq.Design(14, 6, skew_allowance=0.0).confidence(n, 0.05) == pytest.approx(
            sq.look(d.looks(n), 14, 0.05).nominal_confidence, abs=1e-12)
    assert d.looks(9) == (6, 7, 8, 9) and d.looks(4) == (4,)  # a check that lost rounds: one look
    assert math.isinf(d.z_boundary(15, 0.05)) and d.confidence(15, 0.05) == 1.0
    # a design whose first look is its last spends everything there: the fixed-sample 1.96
    assert sq.Design(6, 6).z_boundary(6, 0.05) == pytest.approx(1.959964, abs=1e-6)
    assert d.to_dict() == {"n_max": 14, "min_rounds": 6, "spending": "obrien-fleming",
                           "skew_allowance": sq.SKEW_ALLOWANCE}
    with pytest.raises(ValueError, match="min_rounds <= n_max"):
        sq.Design(5, 6)


def test_the_plan_is_the_rounds_the_budget_allows():
    # 180 s at 12.4 s a round: 14 rounds; never below the first look nor above --max-rounds
    assert sq.planned_rounds(180, 12.4, 6, 40) == 14
    assert sq.planned_rounds(180, 60, 6, 40) == 6
    assert sq.planned_rounds(3600, 1.0, 6, 40) == 40
    assert sq.planned_rounds(math.inf, 1.0, 6, 40) == 40
