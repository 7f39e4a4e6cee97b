"""The regression check's decision logic, on synthetic samples whose truth is known: a known
shift is detected with its size, identical distributions are never called regressed, the
interval's words and exit codes are right, and sets that cannot be compared are refused."""
from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from bench import cli, measure
from bench.decide import compare, stats
from bench.records import results
from bench.runner import schedule
from bench.workers import turns
from bench.records.pool import pool_records
from test_cli import FAKE, bench


# ------------------------------------------------------------------------------- estimates
def test_paired_interval_recovers_a_known_slowdown():
    rng = np.random.default_rng(0)
    drift = rng.normal(0, 0.08, 12)  # machine speed per round: shared by both processes of a round
    base = 1000 * np.exp(drift + rng.normal(0, 0.02, 12))
    head = 0.90 * 1000 * np.exp(drift + rng.normal(0, 0.02, 12))
    est = stats.ratio_ci(base, head, paired=True)
    assert est.lo < 0.90 < est.hi and est.hi < 0.97  # the truth inside, the whole interval past 3%
    assert stats.decide(est, 0.03, higher_is_better=True).verdict == "regressed"
    # Unpaired, the same numbers carry the round-to-round drift: a wider interval.
    wide = stats.ratio_ci(base, head, paired=False)
    assert (wide.hi - wide.lo) > 2 * (est.hi - est.lo)


def test_identical_distributions_are_rarely_and_identical_samples_never_regressed():
    """2,000 A/A checks of 6 paired rounds at 5% process noise (what this machine shows when
    quiet): at most 1% are called regressed, as the check's target says; the rest pass
    (unchanged or not regressed) or are inconclusive. Exactly identical samples are never a change."""
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(2000):
        base, head = 1000 * np.exp(rng.normal(0, 0.05, 6)), 1000 * np.exp(rng.normal(0, 0.05, 6))
        verdicts.append(stats.decide(stats.ratio_ci(base, head, paired=True), 0.03, True).verdict)
    assert verdicts.count("regressed") <= 0.01 * len(verdicts)
    assert verdicts.count("regressed") + verdicts.count("improved") <= 0.02 * len(verdicts)
    for n in (2, 3, 6, 12):
        same = list(1000 * np.exp(rng.normal(0, 0.05, n)))
        assert stats.decide(stats.ratio_ci(same, same, paired=True), 0.03, True).verdict == "unchanged"
        assert stats.decide(stats.ratio_ci(same, same, paired=False), 0.03, True).verdict != "regressed"
    quiet = [stats.decide(stats.ratio_ci(1000 * np.exp(rng.normal(0, 0.004, 8)),
                                         1000 * np.exp(rng.normal(0, 0.004, 8)), True), 0.03, True).verdict
             for _ in range(50)]
    assert quiet.count("unchanged") == 50  # little noise: identical code is called unchanged


def test_exactly_equal_values_give_a_zero_width_interval():
    est = stats.ratio_ci([100.0, 100.0, 100.0], [100.0, 100.0, 100.0], paired=True)
    assert (est.ratio, est.lo, est.hi) == (1.0, 1.0, 1.0)
    assert stats.decide(est, 0.03, True).verdict == "unchanged"


def test_one_round_cannot_decide():
    est = stats.ratio_ci([100.0], [50.0], paired=True)
    assert math.isinf(est.hi) and stats.decide(est, 0.03, True).verdict == "inconclusive"


def test_words_and_interval_are_printed_as_a_change():
    # A throughput ratio below 1 reads as the step-time increase, base/head - 1 (issue 26): 1/0.902
    # = 1.1086, the interval's ends 1/0.929 = 1.0764 and 1/0.876 = 1.1416.
    est = stats.RatioEstimate(0.902, 0.876, 0.929, 0.95, 8, 8, True, 0.02, "t")
    assert stats.describe(est) == "slower by 10.9% (95% CI 7.6..14.2%)"
    up = stats.RatioEstimate(1.05, 1.02, 1.08, 0.95, 8, 8, True, 0.02, "t")
    assert stats.describe(up, ("more memory", "less memory")) == "more memory by 5.0% (95% CI +2.0..+8.0%)"


def test_memory_direction_is_lower_is_better():
    est = stats.RatioEstimate(1.2, 1.1, 1.3, 0.95, 5, 5, True, 0.02, "t")
    assert stats.decide(est, 0.03, higher_is_better=False).verdict == "regressed"
    assert stats.decide(est, 0.03, higher_is_better=True).verdict == "improved"


def test_rounds_to_decide_is_about_what_settles_it():
    rng = np.random.default_rng(2)
    base, head = 1000 * np.exp(rng.normal(0, 0.06, 4)), 900 * np.exp(rng.normal(0, 0.06, 4))
    est = stats.ratio_ci(base, head, paired=True)
    d = stats.decide(est, 0.03, True)
    assert d.verdict == "inconclusive" and d.more_rounds is not None and d.more_rounds > 4
    # With that many rounds at the same spread and effect, the interval clears the floor.
    from scipy import stats as st

    n = d.more_rounds
    room = abs(math.log(est.ratio) - math.log(1 / 1.03))  # the band's lower end: a step 3% slower
    assert st.t.ppf(0.975, n - 1) * est.sd_log / math.sqrt(n) < room
    assert st.t.ppf(0.975, n - 2) * est.sd_log / math.sqrt(n - 1) >= room  # and not fewer


def test_detectable_slowdown_shrinks_with_rounds_and_grows_with_noise():
    a = stats.power_detectable(0.05, 6, 0.03)
    b = stats.power_detectable(0.05, 24, 0.03)
    c = stats.power_detectable(0.10, 24, 0.03)
    assert 0.03 < b < a and b < c
    assert math.isinf(stats.power_detectable(0.05, 1, 0.03))


# ------------------------------------------------------------------------ process records
def proc(key, round_, train, mem=None, rss=100e6, acc=0.95, machine="m1", dropout=0.0, versions=None, threads=2,
         device="cpu", status="ok"):
    return {"key": key, "round": round_, "mode": "full", "status": status, "framework": "torch", "variant": "default",
            "model": "m", "device": device, "batch_size": 128, "threads": threads, "precision": "fp32",
            "env": {"machine_id": machine, "cpu_model": "cpu", "cpu_logical_cores": 2},
            "framework_versions": versions or {"torch": "2.13.0"},
            "cell": {"model": {"dropout": dropout, "name": "m"}, "train": {"steps": 10, "seed": 0}},
            "metrics": {"train_samples_per_s": {"median": float(train)}, "infer_samples_per_s": {"median": 5000.0},
                        "step_ms": {"median": 1.0}, "test_accuracy": acc},
            "memory": {"rss_delta_train_bytes": rss, **({"tensor_peak_bytes": mem} if mem is not None else {})},
            "analytic": {"train_floor_bytes": 50e6}}


def side(values, **kw):
    return [proc("c1", i, v, **kw) for i, v in enumerate(values)]


def findings(base, head, paired=True, **kw):
    return {f.rule: f for f in compare.compare(base, head, paired=paired, **kw).findings}


def test_compare_pairs_rounds_and_catches_a_slowdown():
    rng = np.random.default_rng(3)
    drift = rng.normal(0, 0.05, 8)
    base = side(1000 * np.exp(drift + rng.normal(0, 0.01, 8)), mem=80e6)
    head = side(850 * np.exp(drift + rng.normal(0, 0.01, 8)), mem=80e6)
    f = findings(base, head)
    assert f["train"].verdict == "regressed" and "slower by" in f["train"].why
    assert f["memory"].verdict == "unchanged" and f["accuracy"].verdict == "unchanged"
    assert compare.compare(base, head, paired=True).exit_code() == 1


def test_rounds_timed_on_a_busy_machine_are_dropped_and_counted():
    """Identical code, 8 paired rounds, 3 of them with the head side slowed to 60% by another
    program (its record says machine busy): with them the check reads a slowdown; without them,
    as `check` judges, it reads unchanged and says how many rounds it dropped."""
    rng = np.random.default_rng(5)
    drift = rng.normal(0, 0.01, 8)
    base = side(1000 * np.exp(drift + rng.normal(0, 0.003, 8)), mem=80e6)
    head = side(1000 * np.exp(drift + rng.normal(0, 0.003, 8)), mem=80e6)
    for r in (1, 4, 6):
        head[r]["metrics"]["train_samples_per_s"] = {"median": 600.0, "values": [600.0] * 5}
        head[r]["contention"] = {"timed": {"busy": True, "foreign_cores": 0.9}}
    cmp = compare.compare(base, head, paired=True)
    assert cmp.dropped_busy == {"c1": 3} and cmp.to_dict()["dropped_busy_rounds"] == {"c1": 3}
    assert {f.rule: f for f in cmp.findings}["train"].verdict == "unchanged"
    for rec in head:
        rec.pop("contention", None)  # the same figures with nobody saying the machine was busy
    assert findings(base, head)["train"].verdict != "unchanged"
    # Every round busy: no timing is left to judge, so the check is inconclusive (exit 3, not a
    # usage error), and memory, which the load does not move, is still judged.
    for rec in head:
        rec["contention"] = {"timed": {"busy": True}}
    cmp = compare.compare(base, head, paired=True)
    f = {f.rule: f for f in cmp.findings}
    assert f["train"].verdict == "inconclusive" and "all 8 paired round(s)" in f["train"].why
    assert f["memory"].verdict == "unchanged" and cmp.exit_code() == 3


def test_deterministic_memory_catches_a_two_percent_growth_and_flags_non_determinism():
    base = side([1000] * 4, mem=80e6)
    assert findings(base, side([1000] * 4, mem=81.6e6))["memory"].verdict == "regressed"
    assert findings(base, side([1000] * 4, mem=80.2e6))["memory"].verdict == "unchanged"
    wobbly = [proc("c1", i, 1000, mem=m) for i, m in enumerate((80e6, 84e6, 80e6, 80e6))]
    f = findings(base, wobbly)["memory"]
    assert f.verdict == "inconclusive" and "not deterministic" in f.why and "straddle" in f.why
    # One-sided like the rest of the gate (issue 41): processes that disagree by more than the
    # 0.5% a deterministic figure may, but all within the floor of every base one, pass; all past it
    # regress; only a range that straddles the floor stays inconclusive.
    within = [proc("c1", i, 1000, mem=m) for i, m in enumerate((80.0e6, 80.5e6, 80.1e6, 80.0e6))]
    f = findings(base, within)["memory"]
    assert f.verdict == "not regressed" and "not deterministic" in f.why and "within the floor" in f.why
    past = [proc("c1", i, 1000, mem=m) for i, m in enumerate((82e6, 85e6, 82e6, 82e6))]
    assert findings(base, past)["memory"].verdict == "regressed"
    # less memory than every base process, however it wobbles: a pass
    less = [proc("c1", i, 1000, mem=m) for i, m in enumerate((70e6, 72e6, 70e6, 70e6))]
    assert findings(base, less)["memory"].verdict == "not regressed"


def test_rss_is_judged_in_rounds_and_is_advisory_by_default():
    base = side([1000] * 4, rss=100e6)
    head = [proc("c1", i, 1000, rss=r) for i, r in enumerate((160e6, 90e6, 140e6, 100e6))]
    f = findings(base, head)["rss"]
    assert f.verdict == "inconclusive" and not f.gated  # +22% on average, but within the spread


def test_accuracy_without_dropout_must_be_identical():
    """One-sided since it was written: only a drop past the tolerance fails; a rise, or any
    change without dropout (a numerics change, `changed`), passes."""
    base = side([1000] * 3, acc=0.9312)
    assert findings(base, side([1000] * 3, acc=0.9312))["accuracy"].verdict == "unchanged"
    f = findings(base, side([1000] * 3, acc=0.9315))["accuracy"]
    assert f.verdict == "changed" and "numerics changed" in f.why
    assert findings(base, side([1000] * 3, acc=0.90))["accuracy"].verdict == "regressed"
    drop = findings(side([1000] * 3, acc=0.95, dropout=0.5), side([1000] * 3, acc=0.945, dropout=0.5))
    assert drop["accuracy"].verdict == "unchanged"
    rise = findings(side([1000] * 3, acc=0.90, dropout=0.5), side([1000] * 3, acc=0.96, dropout=0.5))["accuracy"]
    assert rise.verdict == "improved" and stats.gate_of(rise.verdict) == "pass"
    assert stats.gate_of(f.verdict) == "pass"


def test_single_process_sets_are_inconclusive_never_a_false_alarm():
    f = findings([proc("c1", 0, 1000)], [proc("c1", 0, 800)], paired=False)
    assert f["train"].verdict == "inconclusive"


def test_sets_that_differ_are_named():
    base = side([1000] * 3)
    assert compare.differences(base, side([1000] * 3)) == []
    diffs = compare.differences(base, side([1000] * 3, machine="m2", threads=4, versions={"torch": "2.12.0"}))
    text = "; ".join(diffs)
    assert "machine differs" in text and "threads differs" in text and "torch 2.12.0" in text


def test_pooled_record_uses_the_median_of_process_medians():
    recs = side([1000, 1200, 900])
    recs.append({**proc("c1", 3, 0, rss=300e6), "mode": "memory", "metrics": {}})
    (p,) = pool_records(recs)
    assert p["metrics"]["train_samples_per_s"]["median"] == 1000 and p["rounds"] == {"full": 3, "memory": 1,
                                                                                      "failed": 0}
    assert p["memory"]["rss_delta_train_bytes"] == 100e6 and len(p["memory"]["rss_delta_rounds_bytes"]) == 4


# ---------------------------------------------------------------------------------- CLI
def write_run(rd, name, recs, check_id=None):
    results.write_manifest(rd / name, {"run_id": name, "cells": [], **({"check_id": check_id} if check_id else {})})
    for r in recs:
        results.write_record(rd / name, r)


def test_check_cli_exit_codes(tmp_path, capsys):
    rd = tmp_path / "results"
    rng = np.random.default_rng(4)
    drift = rng.normal(0, 0.03, 6)
    write_run(rd, "base", side(1000 * np.exp(drift), mem=80e6), "x")
    write_run(rd, "same", side(1000 * np.exp(drift + rng.normal(0, 0.002, 6)), mem=80e6), "x")
    write_run(rd, "slow", side(800 * np.exp(drift + rng.normal(0, 0.002, 6)), mem=80e6), "x")
    write_run(rd, "noisy", side(1000 * np.exp(rng.normal(0, 0.3, 6)), mem=80e6), "x")
    write_run(rd, "elsewhere", side(1000 * np.exp(drift), mem=80e6, machine="m9"), "x")
    main = lambda *a: cli.main(["--results-dir", str(rd), "check", *a])  # noqa: E731
    assert main("base", "slow") == 1
    assert "REGRESSED" in capsys.readouterr().out
    assert main("base", "same") == 0
    assert main("base", "noisy") == 3
    assert "INCONCLUSIVE" in capsys.readouterr().out
    assert main("base", "slow", "--fail-on", "bogus:1%") == 2
    assert "bad rule 'bogus:1%'" in capsys.readouterr().err
    assert main("base", "elsewhere") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "machine differs" in err and "--force" in err
    assert main("base", "elsewhere", "--force") == 0
    md = tmp_path / "summary.md"
    assert main("base", "slow", "--summary-md", str(md)) == 1
    assert "**REGRESSED**" in md.read_text() and "slower by" in md.read_text()


def test_metrics_one_side_lacks_are_named_under_the_table_not_dropped(tmp_path, capsys):
    """Base measured RSS growth only (an older run), head tensor memory too; in cell c2 head did
    not train to an accuracy. Memory and c2's accuracy get no verdict, and the table, the
    markdown summary and --format json each say which metric, on which side, in which cells, why."""
    rd = tmp_path / "results"
    base = side([1000] * 3) + [proc("c2", i, 1000) for i in range(3)]
    head = side([1000] * 3, mem=80e6) + [proc("c2", i, 1000, mem=80e6, acc=None) for i in range(3)]
    write_run(rd, "old", base)
    write_run(rd, "new", head)
    cmp = compare.compare(base, head)
    assert {(f.key, f.rule) for f in cmp.findings} >= {("c1", "accuracy"), ("c1", "train")}
    assert not any(f.rule == "memory" or (f.key, f.rule) == ("c2", "accuracy") for f in cmp.findings)
    gaps = {x.metric: x for x in cmp.left_out}
    assert set(gaps) == {"memory", "accuracy"}
    assert (gaps["memory"].measured_in, gaps["memory"].cells) == ("head", ("c1", "c2"))
    assert "RSS growth only" in gaps["memory"].why and "compared as rss" in gaps["memory"].why
    assert (gaps["accuracy"].measured_in, gaps["accuracy"].cells) == ("base", ("c2",))
    assert "head did not train" in gaps["accuracy"].why
    line = compare.left_out_words(cmp)
    assert line.startswith("not compared: memory (c1, c2) measured in head only") and "accuracy (c2)" in line
    assert line in compare.summary_markdown(cmp)

    assert cli.main(["--results-dir", str(rd), "compare", "old", "new"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "not compared: memory (c1, c2) measured in head only: base's records have RSS growth only" in out
    assert cli.main(["--results-dir", str(rd), "compare", "old", "new", "--format", "json"]) == 0
    import json
    doc = json.loads(capsys.readouterr().out)
    assert {(x["metric"], x["measured_in"], tuple(x["cells"])) for x in doc["not_compared"]} == {
        ("memory", "head", ("c1", "c2")), ("accuracy", "base", ("c2",))}
    # Sets measuring the same metrics leave nothing out, and say nothing.
    same = compare.compare(head, head)
    assert same.left_out == () and compare.left_out_words(same) is None


def test_accuracy_after_different_training_is_said_to_be_left_out():
    base = side([1000] * 3)
    head = side([1000] * 3)
    for r in head:
        r["cell"]["train"]["steps"] = 20
    cmp = compare.compare(base, head)
    (gap,) = cmp.left_out
    assert (gap.metric, gap.measured_in, gap.cells) == ("accuracy", "both", ("c1",))
    assert "different recipes" in gap.why


def test_check_passes_when_a_regression_past_the_floor_is_ruled_out(tmp_path, capsys):
    """The one-sided gate (issue 41): head/base per round +1.5% with a spread giving a 95%
    interval of about -1%..+4% at a 3% floor. The interval cannot rule out a speed-up past 3%, so
    the two-sided rule called it inconclusive (exit 3); a regression past the floor is ruled out,
    so the check passes (exit 0) with the verdict "not regressed", and --format json says both."""
    rd = tmp_path / "results"
    z = np.array([-1.5, -1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 1.5])
    d = 0.015 + 0.03 * z / z.std(ddof=1)
    write_run(rd, "base", side([1000.0] * 8, mem=80e6), "x")
    write_run(rd, "head", side(list(1000.0 * np.exp(d)), mem=80e6), "x")
    main = lambda *a: cli.main(["--results-dir", str(rd), "check", "base", "head", *a])  # noqa: E731
    assert main() == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "not regressed" in out
    assert main("--format", "json") == 0
    import json
    doc = json.loads(capsys.readouterr().out)
    train = next(x for x in doc["decisions"] if x["metric"] == "train")
    assert (train["verdict"], train["gate"]) == ("not regressed", "pass")
    assert train["interval"]["lo"] > 1 / 1.03 and train["interval"]["hi"] > 1.03
    assert (doc["result"], doc["exit_code"]) == ("ok", 0)


@pytest.mark.slow
def test_check_catches_a_real_injected_slowdown(tmp_path):
    """End to end: workers slowed from 0.05 to 0.25 s per step (LSTM_BENCH_FAULT), three
    processes per side, fail `bench check` with exit 1; the same set against itself is never
    called regressed. Both sides sleep in every step, so the step time is the sleep's on a busy
    machine too: with the bare few-ms smoke step as the base, a loaded CI runner spread the base
    processes so widely (684/s median, 95% CI -98.7..+452%) that a 5x slowdown read inconclusive.
    The workers run the numpy test double (its step is a 3 ms sleep), not torch: with torch's
    cnn_small step under the sleep, a second program burning a core still left the two sides
    within the noise of each other once (2026-12-02), and this test is about the check, not torch."""
    rd = str(tmp_path / "results")
    args = ["--results-dir", rd, "run", "-f", "fake", "-m", "cnn_small", "--profile", "smoke", "-q", "--rounds", "3",
            "--memory-rounds", "0"]
    for run_id, fault in (("a", "slow:cnn_small:0.05"), ("slow", "slow:cnn_small:0.25")):
        p = bench(*args, "--run-id", run_id, env={"LSTM_BENCH_FAULT": fault, **FAKE})
        assert p.returncode == 0, p.stderr
    # One host by construction: on a loaded machine the two runs' sgemm rates can read 1.4x apart
    # (39 and 68 GFLOP/s seen), which the host check would refuse; this test is about the decision.
    p = bench("--results-dir", rd, "check", "a", "slow", "--gate", "train", "--allow-host-mismatch")
    assert p.returncode == 1 and "REGRESSED" in p.stdout and "slower by" in p.stdout, p.stdout
    p = bench("--results-dir", rd, "check", "a", "a")
    assert p.returncode in (0, 3), p.stdout


def test_check_against_a_bad_ref_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["--results-dir", str(tmp_path), "check", "--against", "no-such-ref-xyz", "-f", "torch",
                     "-m", "cnn_small", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot check out 'no-such-ref-xyz'" in err


def base_worktrees() -> set[str]:
    """The temporary git worktrees `check --against` makes (lstm-bench-base-*) that exist now."""
    import subprocess

    from test_cli import ROOT

    out = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if "lstm-bench-base-" in ln}


@pytest.mark.slow
def test_check_against_runs_base_code_and_head_code_in_interleaved_rounds(tmp_path):
    import subprocess

    from test_cli import ROOT

    head_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()
    if not head_commit:
        pytest.skip("not a git checkout")
    before = base_worktrees()  # another check (killed, or running beside this test) may own some
    rd = tmp_path / "results"
    p = bench("--results-dir", str(rd), "check", "--against", "HEAD", "-f", "torch", "-m", "cnn_small",
              "--profile", "smoke", "-q", "--rounds", "2", "--max-rounds", "2")
    assert p.returncode in (0, 1, 3), p.stderr
    assert "2+2 paired" in p.stdout
    base_dir = next(d for d in rd.iterdir() if d.name.endswith("-base"))
    head_dir = next(d for d in rd.iterdir() if d.name.endswith("-head"))
    b, h = results.read_rounds(base_dir), results.read_rounds(head_dir)
    assert [r["round"] for r in b] == [0, 1] and [r["round"] for r in h] == [0, 1]
    assert all(r["status"] == "ok" for r in b + h) and {r["key"] for r in b} == {r["key"] for r in h}
    assert b[0]["env"]["git"] == {"commit": head_commit, "dirty": False}  # REF's own clean tree ran the base
    # the sequential plan, fixed before the first look, is in both manifests: at most 2 rounds here
    for d in (base_dir, head_dir):
        plan = results.read_manifest(d)["sequential"]
        assert plan["n_max"] == {b[0]["key"]: 2} and (plan["spending"], plan["min_rounds"]) == ("obrien-fleming", 2)
    alternate = results.read_manifest(head_dir).get("duet_design") == "alternate"
    assert alternate is turns.supported(ROOT)  # taking turns is the default where both sides' code can
    assert {r["threads"] for r in b + h} == {measure.check_threads_default(alternate=alternate)}
    if alternate:
        # Taking turns: both sides on the same CPUs (every one this process may use), their timed
        # repeats one after the other; the records say so.
        assert all(r["cpus"] == b[0]["cpus"] for r in b + h)
        assert {r["duet"]["design"] for r in b + h} == {"alternate"}
        assert all(r["duet"]["went_alone"] == 0 for r in b + h)
    elif schedule.duet_cpus(measure.check_threads_default()):
        # Duet (the default where the CPUs suffice): base and head of a round ran at once, on
        # disjoint CPUs that swapped from round 0 to round 1.
        assert b[0]["cpus"] == h[1]["cpus"] and h[0]["cpus"] == b[1]["cpus"]
        assert not set(b[0]["cpus"]) & set(h[0]["cpus"])
        for rb, rh in zip(b, h):
            start_gap_s = abs(datetime.fromisoformat(rb["env"]["utc"]) - datetime.fromisoformat(rh["env"]["utc"]))
            assert start_gap_s.total_seconds() < min(rb["wall_s"], rh["wall_s"])
    else:
        # A B then B A: the base process of round 0 started before the head's, of round 1 after it.
        assert b[0]["env"]["utc"] <= h[0]["env"]["utc"] and h[1]["env"]["utc"] <= b[1]["env"]["utc"]
    assert base_worktrees() <= before  # the check removed the worktree it made


@pytest.mark.slow
def test_a_check_cancelled_with_sigterm_removes_its_worktree(tmp_path):
    """CI cancels jobs with SIGTERM: the check must clean up as on Ctrl-C, not leave a worktree."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from test_cli import ROOT

    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")

    before = base_worktrees()
    rd = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--results-dir", str(rd), "check", "--against", "HEAD",
                             "-f", "torch", "-m", "cnn_small", "--profile", "smoke", "-q", "--rounds", "2",
                             "--max-rounds", "2"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (base_worktrees() - before):
        time.sleep(0.1)
    assert base_worktrees() - before, "the check never made its worktree"
    time.sleep(1.0)  # let a worker start, so the signal lands mid-round
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert base_worktrees() <= before


@pytest.mark.slow
def test_calibrate_reports_noise_and_detectable_slowdown(tmp_path):
    """A/A rounds of this checkout against itself: one row per rounds-judged metric with the
    process spread and the smallest slowdown the budget can detect."""
    p = bench("--results-dir", str(tmp_path), "check", "--calibrate", "-f", "torch", "-m", "cnn_small",
              "--profile", "smoke", "--rounds", "4", "-q")
    assert p.returncode == 0, p.stderr
    assert "A/A noise on this machine (4 rounds per cell" in p.stdout
    for metric in ("train", "infer", "rss"):
        assert f"│ {metric} " in p.stdout
    assert "in " in p.stdout and "rounds" in p.stdout
    assert not [d for d in tmp_path.iterdir() if d.name.endswith(("-base", "-head"))]  # A/A sides are a1, a2
