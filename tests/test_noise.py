"""A/A noise (check --calibrate's figures) on fabricated rounds: the process spread, the paired
interval of side 2 over side 1, and the smallest detectable slowdown, per rounds-judged metric."""
from __future__ import annotations

import numpy as np
import pytest

from bench.decide import compare, noise, stats
from test_compare import proc


def test_noise_is_measured_on_rounds_both_sides_have_ok():
    a = [proc("c1", i, v) for i, v in enumerate([1000, 1100, 900, 1000])]
    b = [proc("c1", i, v) for i, v in enumerate([1010, 1080, 910, 990])]
    b[3] = {**b[3], "status": "failed"}  # round 3 is not paired: left out
    rows = noise.aa_noise(a, b, compare.DEFAULT_RULES, rounds=10, confidence=0.95)
    assert [(n.key, n.rule.name) for n in rows] == [("c1", "train"), ("c1", "infer"), ("c1", "rss")]
    train = rows[0]
    xs, ys = [1000, 1100, 900], [1010, 1080, 910]
    assert train.process_sd_log == pytest.approx(float(np.std(np.log(xs + ys), ddof=1)))
    est = stats.ratio_ci(xs, ys, True, 0.95)
    assert train.estimate.ratio == pytest.approx(est.ratio) and train.estimate.sd_log == pytest.approx(est.sd_log)
    assert train.detectable == pytest.approx(stats.power_detectable(est.sd_log, 10, 0.03, 0.95))
    # identical infer and rss figures in every process: no spread, so any slowdown past the floor shows
    assert rows[1].process_sd_log == 0.0 and rows[1].estimate.sd_log == 0.0


def test_a_metric_with_fewer_than_two_paired_rounds_is_left_out():
    a = [proc("c1", 0, 1000), proc("c1", 1, 1000)]
    b = [proc("c1", 0, 1000), proc("c1", 1, 1000, status="failed")]
    assert noise.aa_noise(a, b, compare.DEFAULT_RULES, rounds=10, confidence=0.95) == []
    same = noise.aa_noise(a, a, compare.DEFAULT_RULES, rounds=2, confidence=0.95)
    assert [n.rule.name for n in same] == ["train", "infer", "rss"]
    assert all(n.estimate.ratio == pytest.approx(1.0) for n in same)


def test_detectable_is_read_at_the_checks_last_look():
    """With the check's first look given, the smallest detectable slowdown is for the level a
    check of that many rounds reads its last look at: wider than one look's 95%."""
    from bench.decide import sequential

    a = [proc("c1", i, v) for i, v in enumerate([1000, 1100, 900, 1000, 1050])]
    b = [proc("c1", i, v) for i, v in enumerate([1010, 1080, 910, 990, 1000])]
    one = noise.aa_noise(a, b, compare.DEFAULT_RULES, rounds=14, confidence=0.95)[0]
    seq = noise.aa_noise(a, b, compare.DEFAULT_RULES, rounds=14, confidence=0.95, min_rounds=6)[0]
    level = sequential.Design(14, 6).confidence(14, 0.05)
    # wider than 95%: the repeated interval's share of the error and the t multiplier's skewness
    # allowance (98.2% at the last of 14 rounds)
    assert 0.95 < level < 0.99 and noise.last_look_confidence(14, 0.95, 6) == pytest.approx(level)
    assert seq.detectable == pytest.approx(stats.power_detectable(seq.estimate.sd_log, 14, 0.03, level))
    assert seq.detectable > one.detectable
