"""The regression detector: catches an injected slowdown, stays quiet on an unchanged run."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench import cli, compare, results
from test_cli import bench


def test_mann_whitney_exact_small_samples():
    assert compare.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert compare.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert compare.mann_whitney_p([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]) > 0.5
    assert sum(compare._u_counts(5, 5)) == math.comb(10, 5)


def test_mann_whitney_normal_approximation_with_ties():
    rng = np.random.default_rng(0)
    x = list(np.round(rng.normal(0, 1, 40), 1))
    y = list(np.round(rng.normal(1.5, 1, 40), 1))
    assert compare.mann_whitney_p(x, y) < 1e-6
    assert compare.mann_whitney_p(x, x) > 0.9


def record(key, rate_values, mem=100e6, acc=0.95, machine="m1"):
    vals = [float(v) for v in rate_values]
    return {"key": key, "status": "ok", "env": {"machine_id": machine},
            "metrics": {"train_samples_per_s": {"median": float(np.median(vals)), "values": vals},
                        "test_accuracy": acc},
            "analytic": {"measured_memory_bytes": mem}}


RNG = np.random.default_rng(1)
BASE = [record("c1", RNG.normal(1000, 10, 5)), record("c2", RNG.normal(500, 5, 5))]


def verdicts(head, rules=compare.DEFAULT_RULES):
    return {(f.key, f.rule): f.verdict for f in compare.compare(BASE, head, rules).findings}


def test_unchanged_run_is_quiet():
    head = [record("c1", RNG.normal(1000, 10, 5)), record("c2", RNG.normal(500, 5, 5), mem=102e6, acc=0.945)]
    assert set(verdicts(head).values()) == {"unchanged"}


def test_injected_slowdown_is_caught_and_speed_up_is_improved():
    head = [record("c1", 0.8 * np.array(BASE[0]["metrics"]["train_samples_per_s"]["values"])),
            record("c2", 1.3 * np.array(BASE[1]["metrics"]["train_samples_per_s"]["values"]))]
    v = verdicts(head)
    assert v[("c1", "train")] == "regressed" and v[("c2", "train")] == "improved"


def test_large_but_noisy_change_is_not_significant():
    noisy = [record("c1", [1000, 400, 1600, 700, 1300])]
    head = [record("c1", [850, 1500, 350, 1200, 650])]  # median -15%, spread swamps it
    base_cmp = compare.compare(noisy, head)
    (f,) = [f for f in base_cmp.findings if f.rule == "train"]
    assert f.verdict == "unchanged" and f.p_value > 0.05


def test_memory_and_accuracy_regressions_are_caught():
    head = [record("c1", BASE[0]["metrics"]["train_samples_per_s"]["values"], mem=125e6),
            record("c2", BASE[1]["metrics"]["train_samples_per_s"]["values"], acc=0.90)]
    v = verdicts(head)
    assert v[("c1", "memory")] == "regressed" and v[("c2", "accuracy")] == "regressed"
    assert v[("c1", "train")] == "unchanged"


def test_rules_parse_and_reject_nonsense():
    r = {x.name: x for x in compare.parse_rules("train:5%,accuracy:0.01")}
    assert r["train"].threshold == pytest.approx(0.05) and r["accuracy"].threshold == 0.01
    assert r["memory"].threshold == 0.10  # untouched
    for bad in ("speed:5%", "train:5", "accuracy:1%", "train:-5%", "train:x%"):
        with pytest.raises(compare.RuleError):
            compare.parse_rules(bad)


def test_different_machines_are_flagged():
    head = [record("c1", BASE[0]["metrics"]["train_samples_per_s"]["values"], machine="m2")]
    assert compare.compare(BASE, head).machines_differ


def test_check_cli_exit_codes(tmp_path, capsys):
    rd = tmp_path / "results"
    for name, recs in (("base", BASE), ("slow", [record("c1", [700, 710, 690, 705, 695])])):
        results.write_manifest(rd / name, {"run_id": name, "cells": []})
        for r in recs:
            results.write_record(rd / name, r)
    assert cli.main(["--results-dir", str(rd), "check", "base", "slow"]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    assert cli.main(["--results-dir", str(rd), "check", "base", "base"]) == 0
    assert cli.main(["--results-dir", str(rd), "check", "base", "slow", "--fail-on", "bogus:1%"]) == 2


@pytest.mark.slow
def test_check_catches_a_real_injected_slowdown(tmp_path):
    """End to end: a worker slowed by 0.25 s per step (LSTM_BENCH_FAULT; a smoke step takes a
    few ms) fails `bench check`. Whether an
    unchanged rerun stays quiet is tested above on fixed samples, not on wall-clock times of
    this shared machine (two reruns here have differed 10x while other jobs ran)."""
    rd = str(tmp_path / "results")
    args = ["--results-dir", rd, "run", "-f", "torch", "-m", "cnn_small", "--profile", "smoke", "-q"]
    for run_id, fault in (("a", ""), ("slow", "slow:cnn_small:0.25")):
        p = bench(*args, "--run-id", run_id, env={"LSTM_BENCH_FAULT": fault})
        assert p.returncode == 0, p.stderr
    p = bench("--results-dir", rd, "check", "a", "slow", "--fail-on", "train:50%,infer:1000%,memory:1000%")
    assert p.returncode == 1 and "REGRESSED" in p.stdout, p.stdout
    p = bench("--results-dir", rd, "check", "a", "a")
    assert p.returncode == 0 and "OK: no regression in 1 cells" in p.stdout, p.stdout


def test_check_against_a_bad_ref_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["--results-dir", str(tmp_path), "check", "--against", "no-such-ref-xyz", "-f", "torch",
                     "-m", "cnn_small", "--profile", "smoke"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot check out 'no-such-ref-xyz'" in err


@pytest.mark.slow
def test_check_against_runs_base_code_and_head_code_interleaved(tmp_path):
    import subprocess

    from test_cli import ROOT

    head_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()
    if not head_commit:
        pytest.skip("not a git checkout")
    rd = tmp_path / "results"
    p = bench("--results-dir", str(rd), "check", "--against", "HEAD", "-f", "torch", "-m", "cnn_small",
              "--profile", "smoke", "-q", "--fail-on", "train:99%,infer:99%,memory:1000%")
    assert p.returncode in (0, 1), p.stderr
    base_dir = next(d for d in rd.iterdir() if d.name.endswith("-base"))
    head_dir = next(d for d in rd.iterdir() if d.name.endswith("-head"))
    (b,), (h,) = results.read_records(base_dir), results.read_records(head_dir)
    assert b["status"] == h["status"] == "ok" and b["key"] == h["key"]
    assert b["env"]["git"] == {"commit": head_commit, "dirty": False}  # REF's own clean tree ran the base
    assert h["env"]["executable"] == b["env"]["executable"]
    assert not [ln for ln in subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True,
                                            text=True).stdout.splitlines() if "lstm-bench-base-" in ln]
