import time

import numpy as np
import pytest

from bench import measure


def test_summarize_fixed_samples():
    s = measure.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.iqr, s.min, s.max) == (3.0, 2.0, 4.0, 2.0, 1.0, 5.0)
    assert s.values == (5.0, 1.0, 3.0, 2.0, 4.0)  # raw values kept in measured order
    s2 = measure.summarize([10.0, 20.0])
    assert s2.median == 15.0 and s2.q1 == 12.5 and s2.q3 == 17.5
    assert s.to_dict()["iqr"] == 2.0
    with pytest.raises(ValueError):
        measure.summarize([])


def test_rss_sampler_sees_a_known_allocation():
    size = 200 * 1024 * 1024
    before = measure.rss_bytes()
    with measure.RssSampler(interval_s=0.001) as s:
        a = np.ones(size, dtype=np.uint8)  # touched pages: really resident
        a[::4096] = 2
        time.sleep(0.02)  # several sampling intervals while it is alive
        del a
    assert s.samples >= 2
    grew = s.peak_bytes - before
    assert 0.9 * size <= grew <= 1.3 * size, grew


def test_calibration_gives_a_plausible_rate():
    g = measure.calibrate_matmul_gflops(0, n=256, seconds=0.05)
    assert 0.5 < g < 100_000


@pytest.mark.parametrize("cores,duet,expected", [(1, True, 1), (2, True, 1), (16, True, 8), (3, True, 1),
                                                  (1, False, 1), (2, False, 1), (16, False, 15)])
def test_check_threads_halve_the_cores_side_by_side_and_leave_one_one_after_the_other(monkeypatch, cores, duet,
                                                                                       expected):
    """Duet rounds run base and head at once: half the cores each. One after the other (--sequential),
    every core but one, left to the OS and the job's driver."""
    monkeypatch.setattr(measure, "cpu_threads_default", lambda: cores)
    assert measure.check_threads_default(duet=duet) == expected
