"""`Run`: the one owner of a run directory (layout, typed manifest with named updates, the one
writer of records) and `Pending`, the rounds policy both executors follow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.records import results
from bench.runner import schedule
from bench.runner.plan import Selection, plan
from bench.records.run import Manifest, Run
from helpers import new_run

ROOT = Path(__file__).resolve().parent.parent
BASELINES = sorted(p for p in (ROOT / "results" / "baselines").iterdir() if (p / "manifest.json").is_file())
CELLS = plan(Selection(frameworks=("torch",), models=("lstm128", "cnn_small", "gru128"), devices=("cpu",),
                       profile="smoke", threads=1))
A, B, C = CELLS


@pytest.mark.parametrize("run_dir", BASELINES, ids=lambda p: p.name)
def test_every_committed_manifest_reads_and_writes_back_unchanged(run_dir):
    raw = json.loads((run_dir / "manifest.json").read_text())
    m = Manifest.from_dict(raw)
    assert {"schema": raw["schema"], "schema_version": raw["schema_version"], **m.to_dict()} == raw
    assert [c.key for c in m.planned_cells()] == [c["key"] for c in raw["cells"]]


@pytest.mark.parametrize("run_dir", BASELINES, ids=lambda p: p.name)
def test_a_runs_records_are_what_the_readers_give(run_dir):
    run = Run.open(run_dir)
    assert run.rounds() == results.read_rounds(run_dir)
    assert run.pooled() == results.read_records(run_dir)


def test_a_new_manifest_has_the_keys_manifests_always_had_and_named_updates_write_at_once(tmp_path):
    run = new_run(tmp_path / "r", CELLS, rounds={"full": 2, "memory": 3})
    on_disk = results.read_manifest(tmp_path / "r")
    assert set(on_disk) == {"schema", "schema_version", "run_id", "created_utc", "argv", "status", "profile", "data",
                            "rounds", "cells", "env"}
    assert on_disk["status"] == "running" and on_disk["rounds"] == {"full": 2, "memory": 3}
    run.planned(12.345, "local")
    run.duet(((0,), (1,)), False)
    run.sequential_plan("obrien-fleming", 0.05, 4, 3)
    run.planned_rounds(A.key, 14)
    run.planned_rounds(B.key, 9)
    on_disk = results.read_manifest(tmp_path / "r")
    assert (on_disk["estimate_s"], on_disk["executor"]) == (12.3, "local")
    assert on_disk["duet_cpus"] == [[0], [1]] and on_disk["duet_handshake"] is False
    assert on_disk["sequential"]["n_max"] == {A.key: 14, B.key: 9} and on_disk["sequential"]["holm_family"] == 3
    run.finish("complete")
    on_disk = results.read_manifest(tmp_path / "r")
    assert on_disk["status"] == "complete" and on_disk["finished_utc"]
    assert Run.open(tmp_path / "r").manifest == run.manifest  # what was written is what reads back


def test_unknown_manifest_keys_are_kept(tmp_path):
    run = new_run(tmp_path / "r", CELLS)
    raw = {**results.read_manifest(tmp_path / "r"), "from_the_future": {"x": 1}}
    results.write_manifest(tmp_path / "r", raw)
    run = Run.open(tmp_path / "r")
    run.finish("complete")
    assert results.read_manifest(tmp_path / "r")["from_the_future"] == {"x": 1}


def test_file_puts_the_record_under_the_runners_round_and_keeps_it_in_memory(tmp_path):
    run = new_run(tmp_path / "r", CELLS)
    # A worker of older code says round 0 / full whatever it ran: the runner's say wins.
    run.file({"key": A.key, "status": "ok", "round": 0, "mode": "full"}, 2, "memory", (1,))
    run.file({"key": B.key, "status": "failed"}, 0, "full")
    path = results.cell_path(tmp_path / "r", A.key, 2, "memory")
    on_disk = results.read_json(path, results.RECORD_SCHEMA)
    assert (on_disk["round"], on_disk["mode"], on_disk["cpus"]) == (2, "memory", [1])
    assert run.rounds() == results.read_rounds(tmp_path / "r")  # memory and disk agree, in the readers' order
    assert [r["key"] for r in run.rounds()] == [A.key, B.key]
    run.remove(on_disk)
    assert not path.exists() and not run.has(A.key, 2, "memory")
    with pytest.raises(ValueError, match="bad record status"):
        run.file({"key": C.key, "status": None}, 0, "full")


def test_the_layout_lives_inside_the_run_and_a_bad_key_cannot_leave_it(tmp_path):
    run = new_run(tmp_path / "r", CELLS)
    for p in (run.cell_path(A.key, 1, "full"), run.staging(A.key, 1, "full"), run.job_path(A.key, 0, "memory"),
              run.counts_dir(A.key)):
        assert p.resolve().is_relative_to((tmp_path / "r").resolve())
    assert run.staging(A.key, 1, "full").name == f"{A.key}.r1" and run.job_path(A.key, 0, "memory").name == \
        f"{A.key}.m0.json"
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(results.ResultsError, match="bad cell key"):
            run.counts_dir(bad)


def test_pending_asks_for_what_is_missing_in_round_order_and_drops_a_failed_cells_rest(tmp_path):
    run = new_run(tmp_path / "r", CELLS)
    rounds = schedule.Rounds(full=2, memory=3)
    run.file({"key": A.key, "status": "ok"}, 0, "full")
    run.file({"key": A.key, "status": "ok"}, 2, "memory")
    run.file({"key": B.key, "status": "skipped", "reason": "no GPU"}, 0, "full")
    p = schedule.Pending(run, CELLS, rounds)
    assert (p.count(A), p.count(B), p.count(C)) == (1, 0, 3)  # A lacks round 1; B's first did not end ok
    assert [p.next(C), p.next(C)] == [(0, "full"), (1, "full")]
    assert p.wants(A, 1, "full") and not p.wants(A, 2, "memory") and not p.wants(A, 0, "full")
    q = schedule.Pending(run, CELLS, rounds)
    assert q.done(C, 0, "full", "failed") == 2 and q.count(C) == 0  # the rest of C dropped with its first
    assert q.done(A, 1, "full", "failed") == 0 and q.count(A) == 0  # a later round failing drops nothing more
    assert q.count() == 0
