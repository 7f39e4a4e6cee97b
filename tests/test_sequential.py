"""Group-sequential boundaries: published values, the error they spend, and the looks past the plan."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.decide import sequential as sq


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


def test_the_interval_of_a_look_widens_early_and_closes_at_the_plan():
    early = sq.look([6], 24)
    late = sq.look(list(range(6, 25)), 24)
    assert early.nominal_confidence > 0.999 and 0.95 < late.nominal_confidence < 0.975
    # past the planned rounds no error is left: no interval can decide
    assert math.isinf(sq.look(list(range(6, 26)), 24).z_boundary)
    # the t multiplier carries the boundary's tail probability to the estimated spread
    from scipy.stats import t

    assert sq.t_quantile_for(1.959963984540054, 7) == pytest.approx(t.ppf(0.975, 7))


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
        assert d.confidence(n, 0.05) == pytest.approx(sq.look(d.looks(n), 14, 0.05).nominal_confidence, abs=1e-12)
    assert d.looks(9) == (6, 7, 8, 9) and d.looks(4) == (4,)  # a check that lost rounds: one look
    assert math.isinf(d.z_boundary(15, 0.05)) and d.confidence(15, 0.05) == 1.0
    # a design whose first look is its last spends everything there: the fixed-sample 1.96
    assert sq.Design(6, 6).z_boundary(6, 0.05) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError, match="min_rounds <= n_max"):
        sq.Design(5, 6)


def test_the_plan_is_the_rounds_the_budget_allows():
    # 180 s at 12.4 s a round: 14 rounds; never below the first look nor above --max-rounds
    assert sq.planned_rounds(180, 12.4, 6, 40) == 14
    assert sq.planned_rounds(180, 60, 6, 40) == 6
    assert sq.planned_rounds(3600, 1.0, 6, 40) == 40
    assert sq.planned_rounds(math.inf, 1.0, 6, 40) == 40
