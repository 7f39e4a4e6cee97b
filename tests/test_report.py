"""The RNN-vs-CNN verdict and the tables, on fabricated records."""
from bench import report


def rec(model, family, rate, mem, fw="torch", device="cpu", batch=128, status="ok"):
    return {
        "key": f"{fw}.{model}", "framework": fw, "variant": "default", "model": model, "device": device,
        "batch_size": batch, "status": status, "cell": {"model": {"family": family}}, "kernel": "k",
        "fast_path": True, "suspect": False,
        "metrics": {"train_samples_per_s": {"median": rate, "iqr": 2.0}, "test_accuracy": 0.9, "test_samples": 10000,
                    "trained_steps": 100, "step_ms": {"median": 1.0}, "infer_samples_per_s": {"median": 5.0},
                    "compile_s": 0.5},
        "analytic": {"measured_memory_bytes": mem, "memory_over_floor": 2.0, "achieved_gflops": 10.0,
                     "pct_of_achievable": 50.0},
    }


def test_claim_holds_when_rnn_is_slower_and_leaner():
    rows = report.claim_rows([rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6)])
    assert len(rows) == 1 and rows[0].holds and rows[0].speed_ratio == 0.5 and rows[0].memory_ratio == 0.5


def test_claim_fails_when_rnn_needs_more_memory_or_is_faster():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm3x256", "rnn", 500, 300e6),
            rec("lstm128", "rnn", 2000, 100e6)]
    v = report.verdict(recs)
    assert "holds in 0 of 2" in v and "lstm3x256" in v and "fails in 2" in v


def test_claim_compares_only_like_with_like():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6, batch=128), rec("lstm128", "rnn", 500, 100e6, batch=64),
            rec("lstm512", "rnn", 500, 100e6, fw="jax"), rec("lstm128", "rnn", 1, 1, status="failed")]
    assert report.claim_rows(recs) == []
    assert "not tested" in report.verdict(recs)


def test_markdown_has_every_record_and_the_verdict():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6),
            {**rec("lstm512", "rnn", 0, 0), "status": "skipped", "reason": "tensorflow not installed"}]
    md = report.to_markdown(recs)
    lines = md.splitlines()
    assert lines[0].startswith("| cell |") and len([ln for ln in lines if ln.startswith("| torch")]) == 3
    assert "skipped" in md and "tensorflow not installed" in md and "holds in 1 of 1" in md and "0.50x memory -> holds" in md
    assert "500 +- 1" in md  # median +- half the IQR


def test_plot_writes_a_png(tmp_path):
    import pytest

    pytest.importorskip("matplotlib")
    from bench import plot

    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm128", "rnn", 500, 100e6, fw="jax")]
    for r in recs:
        r["metrics"]["train_samples_per_s"].update(q1=r["metrics"]["train_samples_per_s"]["median"] - 1,
                                                   q3=r["metrics"]["train_samples_per_s"]["median"] + 1)
    out = plot.plot_run(recs, tmp_path / "p.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_claim_band_treats_a_few_percent_as_the_same():
    recs = [rec("cnn_tutorial", "cnn", 1000, 200e6), rec("lstm3x256", "rnn", 300, 199e6),
            rec("lstm512", "rnn", 980, 100e6, fw="tf"), rec("cnn_tutorial", "cnn", 1000, 200e6, fw="tf")]
    lines = report.verdict_lines(recs)
    assert "holds in 0 of 2" in lines[0]
    assert any("lstm3x256" in ln and "fails: same memory" in ln for ln in lines)
    assert any("lstm512" in ln and "fails: same speed" in ln for ln in lines)


def test_terminal_table_shows_install_hints_literally():
    """'[tf]' in a reason is text, not rich markup: the install hint must survive rendering."""
    from rich.console import Console

    skipped = {**rec("lstm128", "rnn", 0, 0, fw="tf"), "status": "skipped",
               "reason": "tensorflow, keras not installed: pip install 'lstm-bench[tf]'"}
    console = Console(record=True, width=250)
    report.print_report([skipped], "t", console)
    assert "pip install 'lstm-bench[tf]'" in console.export_text()
