"""The RNN-vs-CNN verdict and the tables, on fabricated records."""
from bench.decide import claim
from bench.show import report


def rec(model, family, rate, mem, fw="torch", device="cpu", batch=128, status="ok", source="tensor-level",
        rss=None, rss_rounds=None):
    rss_rounds = rss_rounds or ([rss] if rss else None)
    memory = {}
    if rss_rounds:
        memory = {"rss_delta_train_bytes": sorted(rss_rounds)[len(rss_rounds) // 2], "rss_delta_rounds_bytes": rss_rounds,
                  "rss_delta_spread": (max(rss_rounds) - min(rss_rounds)) / sorted(rss_rounds)[len(rss_rounds) // 2]}
    return {
        "key": f"{fw}.{model}.b{batch}", "framework": fw, "variant": "default", "model": model, "device": device,
        "batch_size": batch, "status": status, "cell": {"model": {"family": family}}, "kernel": "k",
        "fast_path": True, "suspect": False, "memory": memory,
        "metrics": {"train_samples_per_s": {"median": rate, "iqr": 2.0}, "test_accuracy": 0.9, "test_samples": 10000,
                    "trained_steps": 100, "step_ms": {"median": 1.0}, "infer_samples_per_s": {"median": 5.0},
                    "compile_s": 0.5},
        "analytic": {"measured_memory_bytes": mem, "measured_memory_source": source, "memory_over_floor": 2.0,
                     "achieved_gflops": 10.0, "pct_of_achievable": 50.0},
    }


def test_claim_holds_when_rnn_is_slower_and_leaner():
    rows = claim.claim_rows([rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6)])
    assert len(rows) == 1 and rows[0].holds and rows[0].speed_ratio == 0.5 and rows[0].memory_ratio == 0.5


def test_claim_fails_when_rnn_needs_more_memory_or_is_faster():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm3x256", "rnn", 500, 300e6),
            rec("lstm128", "rnn", 2000, 100e6)]
    v = claim.verdict(recs)
    assert "holds in 0 of 2" in v and "lstm3x256" in v and "fails in 2" in v


def test_claim_compares_only_like_with_like():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6, batch=128), rec("lstm128", "rnn", 500, 100e6, batch=64),
            rec("lstm512", "rnn", 500, 100e6, fw="jax"), rec("lstm128", "rnn", 1, 1, status="failed")]
    assert claim.claim_rows(recs) == []
    assert "not tested" in claim.verdict(recs)


def test_markdown_has_every_record_and_the_verdict():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6),
            {**rec("lstm512", "rnn", 0, 0), "status": "skipped", "reason": "tensorflow not installed"}]
    md = report.to_markdown(recs)
    lines = md.splitlines()
    assert lines[0].startswith("| cell |") and len([ln for ln in lines if ln.startswith("| torch")]) == 3
    assert "skipped" in md and "tensorflow not installed" in md and "holds in 1 of 1" in md
    assert "| lstm128 | torch:default cpu b128 | 0.50x | 0.50x |" in md and "holds (slower, less memory)" in md
    assert "500 +- 1" in md  # median +- half the IQR


def test_plot_writes_a_png(tmp_path):
    import pytest

    pytest.importorskip("matplotlib")
    from bench.show import plot

    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6, fw="jax")]
    for r in recs:
        r["metrics"]["train_samples_per_s"].update(q1=r["metrics"]["train_samples_per_s"]["median"] - 1,
                                                   q3=r["metrics"]["train_samples_per_s"]["median"] + 1)
    out = plot.plot_run(recs, tmp_path / "p.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_claim_band_treats_a_few_percent_as_the_same():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm3x256", "rnn", 300, 199e6),
            rec("lstm512", "rnn", 980, 100e6, fw="tf"), rec("cnn_tutorial", "cnn", 1000, 200e6, fw="tf")]
    lines = claim.verdict_lines(recs)
    assert "holds in 0 of 2" in lines[0]
    assert any("lstm3x256" in ln and "fails: same memory" in ln for ln in lines)
    # One process per cell: a 0.98x speed ratio is inside the process noise, nothing is decided.
    assert any("lstm512" in ln and "undecided: less memory, speed inside the process noise" in ln for ln in lines)
    # Three processes per cell that agree: the interval lies inside +-5%, so "same speed".
    tight = [with_rounds(rec("lstm512", "rnn", 980, 100e6, fw="tf"), [975, 980, 985]),
             with_rounds(rec("cnn_tutorial", "cnn", 1000, 200e6, fw="tf"), [998, 1000, 1002])]
    (row,) = claim.claim_rows(tight)
    assert row.speed == "same" and "fails: same speed" in row.state and "3+3 processes" in row.speed_basis


def with_rounds(r, rates):
    """A pooled record whose train samples/s come from len(rates) timing processes."""
    r["metrics"]["train_samples_per_s"] = {"median": sorted(rates)[len(rates) // 2], "iqr": 1.0,
                                           "values": list(rates), "per_process": True}
    return r


def test_speed_is_judged_over_processes_not_one_noisy_ratio():
    """Measured here: jax lstm512 vs cnn_tutorial read 0.84x in one run and 1.07x in the next.
    One process each: both ratios are inside the single-process band, so both runs say
    'undecided' (the same line), never 'holds' in one and 'fails: faster' in the other."""
    runs = [[rec("cnn_tutorial", "cnn", 452, 180e6, fw="jax"), rec("lstm512", "rnn", 381, 110e6, fw="jax")],
            [rec("cnn_tutorial", "cnn", 431, 180e6, fw="jax"), rec("lstm512", "rnn", 461, 110e6, fw="jax")]]
    lines = [claim.verdict_lines(r) for r in runs]
    assert lines[0] == lines[1] and "undecided in 1" in lines[0][0]
    # A ratio far outside the band decides with one process: 0.5x is slower.
    (row,) = claim.claim_rows([rec("cnn_tutorial", "cnn", 1000, 180e6), rec("lstm512", "rnn", 500, 110e6)])
    assert row.speed == "slower" and row.holds
    # With processes, the t interval decides: 5 rounds clearly slower -> holds; 3 rounds that
    # straddle the band -> undecided.
    slow = [with_rounds(rec("cnn_tutorial", "cnn", 0, 180e6), [1000, 1010, 990, 1005, 995]),
            with_rounds(rec("lstm512", "rnn", 0, 110e6), [800, 810, 790, 805, 795])]
    (row,) = claim.claim_rows(slow)
    assert row.speed == "slower" and row.holds and "95% CI" in row.speed_basis
    wide = [with_rounds(rec("cnn_tutorial", "cnn", 0, 180e6), [700, 1000, 1300]),
            with_rounds(rec("lstm512", "rnn", 0, 110e6), [650, 950, 1250])]
    assert claim.claim_rows(wide)[0].speed is None
    # More memory fails the claim whatever the speed, so the line does not move with it.
    fat = [claim.claim_rows([rec("cnn_tutorial", "cnn", 1000, 100e6), rec("lstm3x256", "rnn", r, 300e6)])[0].state
           for r in (600, 950, 1200, 2000)]
    assert fat == ["fails: more memory"] * 4


def test_terminal_table_shows_install_hints_literally():
    """'[tf]' in a reason is text, not rich markup: the install hint must survive rendering."""
    from rich.console import Console

    skipped = {**rec("lstm128", "rnn", 0, 0, fw="tf"), "status": "skipped",
               "reason": "tensorflow, keras not installed: pip install 'lstm-bench[tf]'"}
    console = Console(record=True, width=250)
    report.print_report([skipped], "t", console)
    assert "pip install 'lstm-bench[tf]'" in console.export_text()


def test_rss_only_difference_inside_the_spread_reads_same_within_noise():
    """No tensor-level figure: judged on RSS, whose per-process spread (here 40%) swamps a
    0.8x difference, so the verdict is neither holds nor fails."""
    cnn = rec("cnn_tutorial", "cnn", 1000, 250e6, source="RSS growth", rss_rounds=[230e6, 250e6, 330e6])
    rnn = rec("lstm512", "rnn", 300, 200e6, source="RSS growth", rss_rounds=[200e6, 240e6, 340e6])
    (row,) = claim.claim_rows([cnn, rnn])
    assert row.memory_within_noise and row.holds is None
    lines = claim.verdict_lines([cnn, rnn])
    assert "holds in 0 of 1" in lines[0] and "undecided in 1" in lines[0]
    assert "same within noise" in lines[1]
    # The same RSS figures, tight across processes, do decide.
    tight = [rec("cnn_tutorial", "cnn", 1000, 250e6, source="RSS growth", rss_rounds=[248e6, 250e6, 252e6]),
             rec("lstm512", "rnn", 300, 200e6, source="RSS growth", rss_rounds=[199e6, 200e6, 201e6])]
    assert claim.claim_rows(tight)[0].holds is True


def test_tensor_level_verdict_ignores_rss_noise_and_is_identical_across_runs():
    """The verdict lines carry decisions only: three 'runs' whose speeds and RSS move by +-25%
    but whose tensor-level figures are the same give identical lines."""
    import numpy as np

    rng = np.random.default_rng(0)
    runs = []
    for _ in range(3):
        j = lambda: float(np.exp(rng.normal(0, 0.1)))  # noqa: E731
        runs.append(claim.verdict_lines([
            rec("cnn_tutorial", "cnn", 1000 * j(), 300e6, rss_rounds=[250e6 * j(), 300e6 * j(), 280e6 * j()]),
            rec("lstm512", "rnn", 280 * j(), 120e6, rss_rounds=[240e6 * j(), 350e6 * j(), 236e6 * j()]),
            rec("lstm128", "rnn", 5000 * j(), 20e6, rss_rounds=[100e6 * j()] * 3),
            rec("lstm3x256", "rnn", 300 * j(), 340e6, rss_rounds=[300e6 * j()] * 3)]))
    assert runs[0] == runs[1] == runs[2]
    assert "holds in 1 of 3" in runs[0][0] and "lstm512" in runs[0][0]


def test_flip_points_name_the_batch_where_the_claim_changes_sides():
    recs = []
    for b, rnn_mb, cnn_mb in ((16, 20e6, 40e6), (64, 50e6, 60e6), (256, 180e6, 140e6), (1024, 700e6, 460e6)):
        recs += [rec("cnn_tutorial", "cnn", 1000, cnn_mb, batch=b), rec("lstm512", "rnn", 300, rnn_mb, batch=b)]
    flips = claim.flip_points(recs)
    assert len(flips) == 1 and "lstm512" in flips[0] and "less memory than cnn_tutorial below batch ~" in flips[0]
    cross = int(flips[0].split("below batch ~")[1].split()[0])
    assert 64 < cross < 256
    recs2 = [rec("cnn_tutorial", "cnn", 1000, 100e6, batch=b) for b in (16, 64)] + \
            [rec("lstm128", "rnn", 9000, 10e6, batch=b) for b in (16, 64)]
    assert claim.flip_points(recs2) == ["lstm128 [torch:default cpu] uses less memory than cnn_tutorial at every "
                                         "measured batch (b16..b64: 0.10x..0.10x)"]


def test_pct_of_sgemm_divides_by_the_runs_pooled_calibration_not_one_cells_outlier():
    """One worker's start-up sgemm figure can be far off (86 among 134-171 GFLOP/s in a real run);
    the % column uses the median over the set's cells on the same machine, device and threads."""
    recs = []
    for i, (model, calib) in enumerate([("lstm128", 160.0), ("lstm512", 80.0), ("cnn_small", 170.0)]):
        r = rec(model, "rnn", 100, 1e6)
        r["threads"], r["env"] = 2, {"machine_id": "m1"}
        r["analytic"].update(achieved_gflops=72.0, calibration_gflops=calib, pct_of_achievable=100 * 72.0 / calib)
        recs.append(r)
    other = rec("lstm128", "rnn", 100, 1e6, fw="jax")  # another thread count: its own pool
    other["threads"], other["env"] = 1, {"machine_id": "m1"}
    other["analytic"].update(achieved_gflops=30.0, calibration_gflops=60.0, pct_of_achievable=50.0)
    recs.append(other)
    assert report.pooled_sgemm(recs) == {("m1", "cpu", 2): 160.0, ("m1", "cpu", 1): 60.0}
    md = report.to_markdown(recs)
    assert md.count("72.0 (45%)") == 3  # 72 / 160, not 72 / 80 = 90% for the outlier cell
    assert "30.0 (50%)" in md
    gpu = rec("lstm128", "rnn", 100, 1e6, device="gpu")  # no calibration: the stored figure stands
    assert "10.0 (50%)" in report.row(gpu, report.pooled_sgemm(recs))


def test_a_seeds_run_pairs_each_rnn_seed_with_the_cnn_of_the_same_seed():
    def seeded(r, seed):
        r.setdefault("cell", {}).setdefault("train", {})["seed"] = seed
        return r

    recs = [seeded(rec("cnn_tutorial", "cnn", 1000, 200e6), 0), seeded(rec("cnn_tutorial", "cnn", 2000, 200e6), 1),
            seeded(rec("lstm128", "rnn", 500, 100e6), 0), seeded(rec("lstm128", "rnn", 500, 100e6), 1)]
    rows = claim.claim_rows(recs)
    assert [round(x.speed_ratio, 2) for x in rows] == [0.5, 0.25]  # seed 1's CNN, not seed 0's
    assert rows[1].group.endswith("seed 1") and not rows[0].group.endswith("seed 0")
    assert "lstm128 (x2)" in claim.verdict_lines(recs)[0]
