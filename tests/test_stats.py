"""bench.decide.stats on synthetic numbers whose answers are known: the intervals against the t
formulas worked by hand (quantiles t(0.975; 3) = 3.18245, t(0.975; 9) = 2.26216, z(0.95) =
1.64485), the one-sided floor rule's verdicts in both directions, and the words it prints."""
from __future__ import annotations

import math

import pytest

from bench.decide import stats
from bench.records.record import Verdict


def est(ratio, lo, hi, sd_log=0.05, paired=True, n=6):
    return stats.RatioEstimate(ratio, lo, hi, 0.95, n, n, paired, sd_log, "synthetic")


def test_paired_interval_is_the_one_sample_t_interval_on_log_ratios():
    # head/base per round: 0.90, 0.95, 0.85, 0.90. Log ratios: mean -0.10614, sd 0.045416;
    # half width 3.18245 x 0.045416 / sqrt(4) = 0.072267.
    e = stats.ratio_ci([100, 100, 100, 100], [90, 95, 85, 90], paired=True)
    assert e.ratio == pytest.approx(0.8993048, rel=1e-6)
    assert (e.lo, e.hi) == (pytest.approx(0.8366069, rel=1e-6), pytest.approx(0.9667014, rel=1e-6))
    assert e.sd_log == pytest.approx(0.0454164, rel=1e-5)
    assert (e.n_base, e.n_head, e.paired, e.confidence) == (4, 4, True, 0.95)
    assert e.method == "paired t interval on per-round log ratios (4 rounds)"
    # pairing cancels what both sides of a round share: scaling a round scales both, nothing changes
    shifted = stats.ratio_ci([100, 200, 50, 100], [90, 190, 42.5, 90], paired=True)
    assert (shifted.lo, shifted.hi) == (pytest.approx(e.lo), pytest.approx(e.hi))


def test_unpaired_interval_is_welchs_on_log_values():
    # log base (100, 110, 90) and head (80, 88, 72, 80): Welch-Satterthwaite df 3.8578,
    # t(0.975; 3.8578) = 2.81729; ratio exp(mean difference) = 0.80067.
    e = stats.ratio_ci([100, 110, 90], [80, 88, 72, 80], paired=False)
    assert e.ratio == pytest.approx(0.8006703, rel=1e-6)
    assert (e.lo, e.hi) == (pytest.approx(0.6555479, rel=1e-6), pytest.approx(0.9779193, rel=1e-6))
    assert (e.n_base, e.n_head, e.paired) == (3, 4, False)
    assert e.method == "Welch t interval on log values (3 base, 4 head processes)"


def test_degenerate_samples_give_exact_or_unbounded_intervals():
    same = stats.ratio_ci([50, 50], [55, 55], paired=False)
    assert (same.ratio, same.lo, same.hi, same.sd_log) == (pytest.approx(1.1), pytest.approx(1.1),
                                                           pytest.approx(1.1), 0.0)
    one = stats.ratio_ci([100], [80], paired=False)
    assert one.ratio == pytest.approx(0.8) and (one.lo, one.hi) == (0.0, math.inf) and math.isinf(one.sd_log)
    assert stats.ratio_ci([100], [80], paired=True).hi == math.inf


@pytest.mark.parametrize("base, head, paired, msg", [
    ([100, 0], [100, 100], False, "base: need positive finite values"),
    ([100, 100], [100, float("nan")], True, "head: need positive finite values"),
    ([], [1.0], False, "base: need positive"),
    ([100, 100], [100, 100, 100], True, "one base and one head value per round"),
])
def test_bad_samples_are_refused(base, head, paired, msg):
    with pytest.raises(ValueError, match=msg):
        stats.ratio_ci(base, head, paired)


# The gate is one-sided (issue 41): a pass needs only the interval's end on the bad side to clear
# the floor, so intervals that used to read inconclusive because they could not rule out a
# speed-up (or, for memory, a saving) now pass as "not regressed"; every "regressed" is as before.
@pytest.mark.parametrize("lo, hi, higher_is_better, verdict", [
    (0.90, 0.96, True, Verdict.REGRESSED),  # throughput: the whole interval 3% or more down
    (0.90, 0.96, False, Verdict.IMPROVED),  # memory: down is good
    (1.04, 1.10, True, Verdict.IMPROVED),
    (1.04, 1.10, False, Verdict.REGRESSED),
    (0.98, 1.02, True, Verdict.UNCHANGED),  # inside the band [1/1.03, 1.03]
    (1 / 1.03, 1.03, False, Verdict.UNCHANGED),  # the band's ends count as inside
    (1 / 1.03, 1.03, True, Verdict.UNCHANGED),
    # memory 0.97..1.03: 0.97 is past the band on the good side, 1.03 clears the floor: a pass
    # (two-sided, this was inconclusive)
    (0.97, 1.03, False, Verdict.NOT_REGRESSED),
    (0.98, 1.05, True, Verdict.NOT_REGRESSED),  # -2%..+5%: a regression past 3% is ruled out
    (0.95, 1.02, False, Verdict.NOT_REGRESSED),  # memory: a saving it cannot rule out
    (0.99, 1.04, False, Verdict.INCONCLUSIVE),  # memory: straddles the floor 1.03
    (0.95, 1.01, True, Verdict.INCONCLUSIVE),  # straddles the floor 1/1.03
    (0.95, 1.10, True, Verdict.INCONCLUSIVE),  # straddles the floor and the band
    (0.0, math.inf, True, Verdict.INCONCLUSIVE),  # one round: unbounded
    (0.0, math.inf, False, Verdict.INCONCLUSIVE),
])
def test_the_floor_rule_is_one_sided(lo, hi, higher_is_better, verdict):
    d = stats.decide(est(math.sqrt(lo * hi) if hi < math.inf else 0.9, lo, hi), 0.03, higher_is_better)
    assert d.verdict == verdict and d.verdict in stats.VERDICTS
    assert stats.gate_of(d.verdict) == {Verdict.REGRESSED: "regressed", Verdict.INCONCLUSIVE: "inconclusive"}.get(
        verdict, "pass")
    if math.isfinite(hi):
        assert (d.more_rounds is None) == (verdict != Verdict.INCONCLUSIVE)
    # the direction is the metric's: throughput's interval turned over is memory's
    if 0 < lo and math.isfinite(hi):
        assert stats.verdict_of(est(1.0, 1 / hi, 1 / lo), 0.03, not higher_is_better) == verdict


def test_the_gate_words():
    assert [stats.gate_of(v) for v in Verdict] == ["regressed", "pass", "pass", "pass", "inconclusive", "pass"]


def test_words_say_the_change_in_the_direction_of_the_estimate():
    assert stats.describe(est(1.10, 1.05, 1.15)) == "faster by 10.0% (95% CI +5.0..+15.0%)"
    # Below 1 the change is base/head - 1, a step-time increase: throughput 1/1.10 is a step 10% slower.
    slower = est(1 / 1.10, 1 / 1.15, 1 / 1.05)
    assert stats.describe(slower) == "slower by 10.0% (95% CI 5.0..15.0%)"
    assert stats.describe(est(0.90, 0.85, 0.95)) == "slower by 11.1% (95% CI 5.3..17.6%)"  # 1/0.9, 1/0.95, 1/0.85
    # Straddling no change: signed, in the same terms (1/1.06 - 1 = -5.66%, 1/0.90 - 1 = +11.1%).
    assert stats.describe(est(0.98, 0.90, 1.06), ("less memory", "more memory")) == \
        "more memory by 2.0% (95% CI -5.7..+11.1%)"
    assert stats.describe(est(0.5, 0.0, math.inf)) == "slower 100.0% (95% CI unbounded: one round)"
    assert stats.describe(est(1.0, 0.0, math.inf)) == "no change 0.0% (95% CI unbounded: one round)"
    assert stats.decide(slower, 0.03, True).text == "slower by 10.0% (95% CI 5.0..15.0%)"
    # A repeated interval's level is printed with the digits that tell it from 100%.
    assert stats.confidence_words(0.9991) == "99.91% CI" and stats.confidence_words(0.975) == "97.5% CI"
    assert stats.confidence_words(1.0) == "100% CI"


def test_rounds_to_decide_is_the_first_n_whose_half_width_clears_the_floor():
    # 0.9 with a per-round log sd of 0.05, floor 3%: the room to log(1/1.03) is 0.07580; half widths
    # t(0.975; n-1) x 0.05 / sqrt(n) are 0.0796 at n=4 and 0.0621 at n=5.
    assert stats.rounds_to_decide(est(0.9, 0.8, 1.0), 0.03) == 5
    # unpaired: the sd of a difference of two processes is sqrt(2) larger (0.0742 < 0.0758 at n=6)
    assert stats.rounds_to_decide(est(0.9, 0.8, 1.0, paired=False), 0.03) == 6
    assert stats.rounds_to_decide(est(1 / 1.03, 0.9, 1.0), 0.03) is None  # on the boundary: never settles
    # The one-sided gate reads only the floor on the bad side: an estimate sitting on the band's
    # good end (1.03, throughput) settles as a pass once its interval clears 1/1.03 (room 0.0591:
    # t(0.975; n-1) x 0.05 / sqrt(n) is 0.0621 at n=5, 0.0525 at n=6); for memory 1.03 is the floor.
    assert stats.rounds_to_decide(est(1.03, 0.9, 1.2), 0.03) == 6
    assert stats.rounds_to_decide(est(1.03, 0.9, 1.2), 0.03, higher_is_better=False) is None
    # read at a wider level (a sequential check's last look), more rounds: t(0.99; n-1) x 0.05 /
    # sqrt(n) is 0.0838 at n=5 and 0.0687 at n=6
    assert stats.rounds_to_decide(est(0.9, 0.8, 1.0), 0.03, confidence=0.98) == 6
    assert stats.rounds_to_decide(est(0.9, 0.0, math.inf, sd_log=math.inf), 0.03) is None
    assert stats.rounds_to_decide(est(0.9, 0.8, 1.0, sd_log=5.0), 0.03, max_rounds=10) is None


def test_power_detectable_against_the_normal_model_by_hand():
    # sd 0.05, 10 rounds, floor 3%: log(1.03) + 2.26216 x 0.05/sqrt(10) + 1.64485 x 0.05/sqrt(10)
    # = 0.029559 + 0.035768 + 0.026007 = 0.091334 on the log scale: a step exp(0.091334) - 1 = 9.56% slower.
    assert stats.power_detectable(0.05, 10, 0.03) == pytest.approx(0.0956350, rel=1e-5)
    assert stats.power_detectable(0.05, 1, 0.03) == math.inf
    assert stats.power_detectable(math.inf, 10, 0.03) == math.inf
    # more rounds detect less
    assert stats.power_detectable(0.05, 40, 0.03) < stats.power_detectable(0.05, 10, 0.03)


def test_an_estimate_serialises_every_field():
    e = est(0.9, 0.8, 1.0)
    assert e.to_dict() == {"ratio": 0.9, "lo": 0.8, "hi": 1.0, "confidence": 0.95, "n_base": 6, "n_head": 6,
                           "paired": True, "sd_log": 0.05, "method": "synthetic"}


def test_the_paired_interval_is_scipys_and_the_sequential_multiplier():
    """ratio_ci writes the one-sample t interval out (the check's replay reads one per look): it
    is scipy's ttest_1samp interval, and at a design's level its multiplier is
    sequential.multiplier of the look's boundary."""
    import numpy as np
    from scipy import stats as st

    from bench.decide import sequential

    d = np.log([0.91, 0.97, 0.88, 1.02, 0.93, 0.95, 0.90])
    for confidence in (0.95, 0.99, 0.9991):
        ci = st.ttest_1samp(d, 0.0).confidence_interval(confidence_level=confidence)
        e = stats.ratio_ci(np.ones(7), np.exp(d), paired=True, confidence=confidence)
        assert (math.log(e.lo), math.log(e.hi)) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    design = sequential.Design(14, 6)
    z = design.z_boundary(7, 0.05)
    e = stats.ratio_ci(np.ones(7), np.exp(d), paired=True, confidence=design.confidence(7, 0.05))
    half = sequential.multiplier(z, 7) * d.std(ddof=1) / math.sqrt(7)
    assert math.log(e.hi) - math.log(e.ratio) == pytest.approx(half, rel=1e-7)
    assert stats.ratio_ci([1.0, 1.0], [0.9, 0.8], paired=True, confidence=1.0).hi == math.inf  # past the plan


def test_holm_steps_down_and_says_where_each_fell():
    # p-like levels: test i rejects when the level reaches its threshold.
    thresholds = [0.01, 0.02, 0.04, 0.2]
    got = stats.holm([lambda a, t=t: a >= t for t in thresholds], bool, 0.05)
    # 0.05/4 = 0.0125 rejects the first; 0.05/3 = 0.0167 nothing new: stop.
    assert got == [(True, 0.0125), (False, 0.05 / 3), (False, 0.05 / 3), (False, 0.05 / 3)]
    got = stats.holm([lambda a, t=t: a >= t for t in (0.01, 0.016, 0.024, 0.2)], bool, 0.05)
    # 0.0125 rejects #1; 0.0167 rejects #2; 0.025 rejects #3; 0.05 does not reject #4
    assert got == [(True, 0.0125), (True, 0.05 / 3), (True, 0.025), (False, 0.05)]
    # hypotheses still to be tested count: 2 tests of a family of 4 are each held to 0.05/4 first
    assert stats.holm([lambda a: a >= 0.0125, lambda a: False], bool, 0.05, family=4) == \
        [(True, 0.0125), (False, 0.05 / 3)]
    assert stats.holm([], bool, 0.05) == []
