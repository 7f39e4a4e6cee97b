"""`bench overhead`'s verdict: a ratio over processes with its interval, judged against 0.97.
Synthetic per-process results only (the timings themselves are a benchmark, never a test)."""
from __future__ import annotations

import numpy as np
import pytest

from bench import overhead


def _processes(ratios: list[float], rounds: int = 6, rng_seed: int = 0) -> list[dict]:
    """One dict per process as bench.overhead's worker writes it: the bare loop at ~3,000
    samples/s with 3% round noise, the harness at `ratio` x that, the own step equal to bare."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for r in ratios:
        bare = 3000 * np.exp(rng.normal(0, 0.03, rounds))
        out.append({"bare_samples_per_s": list(bare), "harness_samples_per_s": list(bare * r),
                    "step_loop_samples_per_s": list(bare)})
    return out


def test_process_medians_are_the_paired_samples():
    procs = _processes([0.9, 0.8, 1.0])
    est = overhead.process_ratio_ci(procs)
    assert est.paired and est.n_base == 3  # one sample per process, not per round
    assert est.ratio == pytest.approx((0.9 * 0.8 * 1.0) ** (1 / 3), rel=1e-9)  # geometric mean


def test_a_clear_tax_misses_and_no_tax_meets():
    tax = overhead.summarize_framework("jax", "lstm128", _processes([0.86, 0.87, 0.85, 0.86, 0.88]))
    assert tax["verdict"] == "misses" and tax["harness_over_bare"]["hi"] < 0.97
    none = overhead.summarize_framework("tf", "lstm128", _processes([1.0, 1.005, 0.995, 1.0, 1.002]))
    assert none["verdict"] == "meets" and none["harness_over_bare"]["lo"] >= 0.97
    # The own step equals bare here: the machinery ratio is 1 (an A/A comparison).
    assert none["harness_over_own_step"]["ratio"] == pytest.approx(none["harness_over_bare"]["ratio"])


def test_a_process_lottery_cannot_be_told_from_a_tax():
    # 0.84 in one process, 1.00 in another (what one-process comparisons read on JAX): the
    # interval spans the target, so the verdict must not claim either way.
    v = overhead.summarize_framework("jax", "lstm128", _processes([0.84, 1.0, 0.93, 0.98, 0.9]))
    assert v["verdict"] == "cannot tell"
    assert v["harness_over_bare"]["lo"] < 0.97 <= v["harness_over_bare"]["hi"]


@pytest.mark.parametrize("argv, msg", [(["--processes", "1"], "--processes >= 2"),
                                       (["-m", "cnn_small"], "not 'cnn_small'"), (["-f", "caffe"], "caffe"),
                                       (["-f", "tf", "--variant", "channels_last"], "unknown variant 'channels_last' for tf")])
def test_overhead_bad_arguments_are_one_line_exit_2(argv, msg, capsys, tmp_path):
    from bench.cli import main

    assert main(["--results-dir", str(tmp_path), "overhead", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert list(tmp_path.iterdir()) == []  # refused before any process or file
