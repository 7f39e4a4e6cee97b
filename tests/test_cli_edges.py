"""CLI edges a newcomer hits: `runs` lists what show/compare can be given, --retry-* need --resume,
a GPU cell on a CPU machine is said before the run (and in --dry-run), not discovered after."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli, envinfo, measure
from bench.commands import listing
from bench.records import results

ROOT = Path(__file__).resolve().parent.parent


def test_runs_lists_stored_runs_and_baselines_with_date_profile_host_and_counts(tmp_path, capsys):
    rdir = tmp_path / "results"
    results.write_manifest(rdir / "b", {"run_id": "b", "created_utc": "2026-12-07T10:00:00Z", "profile": "quick",
                                        "status": "complete", "cells": [{"key": "k1"}, {"key": "k2"}],
                                        "env": {"cpu_model": "Xeon", "cpu_logical_cores": 2, "machine_id": "abcdef0123"}})
    results.write_manifest(rdir / "a", {"run_id": "a", "created_utc": "2026-12-06T09:00:00Z", "cells": []})
    (rdir / "broken").mkdir()
    (rdir / "broken" / "manifest.json").write_text("{")
    (rdir / "b" / "cells").mkdir()
    (rdir / "b" / "cells" / "k1.json").write_text("{}")
    (rdir / "b" / "cells" / "k1.m1.json").write_text("{}")
    rows = listing.run_rows(rdir)
    by = {r["run"]: r for r in rows}
    assert [r["run"] for r in rows if "problem" not in r] == ["a", "b"]  # by date
    assert (by["b"]["cells"], by["b"]["processes"], by["b"]["profile"]) == (2, 2, "quick")
    assert by["b"]["host"] == "Xeon (2 CPUs, machine abcdef01)" and "not valid JSON" in by["broken"]["problem"]
    assert cli.main(["--results-dir", str(rdir), "runs"]) == 0
    out = capsys.readouterr().out
    assert "2026-12-07 10:00" in out and "unreadable" in out


def test_runs_lists_the_committed_baselines():
    rows = listing.run_rows(ROOT / "results")
    names = {r["run"].rsplit("/", 1)[-1] for r in rows}
    assert {"cpu-2core-quick-tensor-memory", "cpu-2core-claim-2026-12-02"} <= names


def test_runs_on_an_empty_results_dir_says_how_to_make_one(tmp_path, capsys):
    assert cli.main(["--results-dir", str(tmp_path / "none"), "runs"]) == 0
    assert "run --all makes one" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--retry-failed", "--retry-suspect"])
def test_retry_flags_without_resume_are_refused(tmp_path, capsys, flag):
    code = cli.main(["--results-dir", str(tmp_path), "run", "-f", "torch", "-m", "lstm128", flag])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} reruns cells of an earlier run: give it with --resume RUN_ID" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(envinfo.gpus() != (), reason="this machine has a GPU")
def test_a_gpu_plan_on_a_cpu_machine_says_so_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(measure, "calibrate_matmul_gflops", lambda threads, *a, **k: 100.0)
    code = cli.main(["--results-dir", str(tmp_path), "run", "-f", "torch", "-m", "lstm128,cnn_small", "-d", "gpu",
                     "--profile", "smoke", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 of 2 cells are GPU cells and no GPU on this machine" in " ".join(out.split())
    assert out.count("(skipped here: no GPU on this machine") == 2


def test_a_relative_floor_without_percent_reads_as_percent_and_a_bad_one_says_the_form():
    from bench.decide import compare

    assert {r.name: r.floor for r in compare.parse_rules("train:3")}["train"] == pytest.approx(0.03)
    assert compare.parse_rules("train:3") == compare.parse_rules("train:3%")
    with pytest.raises(compare.RuleError, match=r"train takes a percentage, e.g. train:3%"):
        compare.parse_rules("train:abc")
    with pytest.raises(compare.RuleError, match=r"accuracy takes an absolute number, e.g. accuracy:0.02"):
        compare.parse_rules("accuracy:x")


def test_an_inconclusive_check_of_stored_runs_advises_more_processes_not_a_budget(tmp_path, capsys):
    from test_compare import proc, write_run

    rd = tmp_path / "results"
    write_run(rd, "base", [proc("c1", 0, 1000.0, mem=80e6)])  # one process a side: no spread to judge
    write_run(rd, "head", [proc("c1", 0, 990.0, mem=80e6)])
    assert cli.main(["--results-dir", str(rd), "check", "base", "head", "--gate", "train"]) == 3
    out = " ".join(capsys.readouterr().out.split())
    assert "run --rounds N" in out and "--budget-s" not in out


def test_overhead_says_repeats_for_its_in_process_rounds_and_keeps_the_old_name():
    from bench.commands.parser import build_parser

    p = build_parser()
    assert p.parse_args(["overhead", "--repeats", "3"]).rounds == 3
    assert p.parse_args(["overhead", "--rounds", "4"]).rounds == 4  # scripts written before keep working
