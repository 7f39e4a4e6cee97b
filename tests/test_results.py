"""bench.records.results: atomic writes leave the whole file or none, a corrupt or foreign file is a
ResultsError (one line for the user), record files are named by key, round and mode, and
--resume sees exactly the cells whose first full measurement is on disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.records import results

ROOT = Path(__file__).resolve().parent.parent


def record(key: str, round_: int = 0, mode: str = "full", status: str = "ok", **more) -> dict:
    return {"key": key, "round": round_, "mode": mode, "status": status, **more}


def test_atomic_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "sub" / "r.json"
    results.atomic_write_json(path, {"b": 1, "a": float("nan")})
    assert path.read_text() == '{\n "a": NaN,\n "b": 1\n}\n'  # sorted keys, indent 1, NaN kept
    results.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second" and os.listdir(path.parent) == ["r.json"]


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "r.json"
    results.atomic_write_bytes(path, b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, fail_at, boom)
    with pytest.raises(OSError):
        results.atomic_write_bytes(path, b"new and longer")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["r.json"]


def test_an_interrupt_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "new.json"

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        results.atomic_write_json(path, {"x": 1})
    assert os.listdir(tmp_path) == []


def test_read_json_round_trips_and_refuses_corrupt_foreign_and_other_versions(tmp_path):
    run = tmp_path / "run"
    written = results.write_record(run, record("k1", metrics={"test_accuracy": 0.5}))
    rec = results.read_json(written, results.RECORD_SCHEMA)
    assert (rec["schema"], rec["schema_version"], rec["metrics"]) == \
        ("lstm-bench/record", results.SCHEMA_VERSION, {"test_accuracy": 0.5})

    cases = {
        "truncated.json": ('{"schema": "lstm-bench/rec', "is not valid JSON"),
        "binary.json": (b"\xff\xfe\x00", "is not valid JSON"),
        "list.json": ("[1, 2]", "is not a lstm-bench/record file"),
        "foreign.json": (json.dumps({"schema": "something/else", "schema_version": 1}), "is not a lstm-bench/record"),
        "manifest.json": (json.dumps({"schema": results.MANIFEST_SCHEMA, "schema_version": 1}),
                          "is not a lstm-bench/record file"),
        "future.json": (json.dumps({"schema": results.RECORD_SCHEMA, "schema_version": 2}),
                        "has schema version 2; this lstm-bench reads version 1"),
    }
    for name, (content, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(results.ResultsError, match=msg) as e:
            results.read_json(p, results.RECORD_SCHEMA)
        assert "\n" not in str(e.value) and str(p) in str(e.value)
    with pytest.raises(results.ResultsError, match="cannot read"):
        results.read_json(tmp_path / "absent.json", results.RECORD_SCHEMA)


def test_write_record_refuses_a_status_it_does_not_know(tmp_path):
    with pytest.raises(ValueError, match="bad record status 'crashed'"):
        results.write_record(tmp_path, record("k", status="crashed"))
    assert not (tmp_path / "cells").exists()
    assert results.STATUSES == ("ok", "failed", "oom", "timeout", "skipped")


def test_cell_path_names_round_zero_full_plainly_and_the_rest_by_round_and_mode(tmp_path):
    cells = tmp_path / "cells"
    assert results.cell_path(tmp_path, "torch.x") == cells / "torch.x.json"
    assert results.cell_path(tmp_path, "torch.x", 2) == cells / "torch.x.r2.json"
    assert results.cell_path(tmp_path, "torch.x", 0, "memory") == cells / "torch.x.m0.json"
    assert results.cell_path(tmp_path, "torch.x", 3, "memory") == cells / "torch.x.m3.json"
    with pytest.raises(ValueError, match="bad record mode 'timing'"):
        results.cell_path(tmp_path, "torch.x", 0, "timing")
    # write_record puts each process record where cell_path says, defaults round 0, full
    assert results.write_record(tmp_path, {"key": "k", "status": "ok"}) == cells / "k.json"
    assert results.write_record(tmp_path, record("k", 1, "memory")) == cells / "k.m1.json"


def test_finished_keys_are_first_full_measurements_and_a_corrupt_one_is_missing(tmp_path):
    for r in (record("a"), record("a", 1), record("b", 1), record("c", 0, "memory"), record("d", status="failed")):
        results.write_record(tmp_path, r)
    (tmp_path / "cells" / "e.json").write_text('{"schema": "lstm-bench/record", "sch')  # killed mid-write by hand
    assert results.finished_keys(tmp_path) == {"a", "d"}  # a failed cell is finished: --retry-failed reruns it


def test_read_rounds_orders_by_plan_then_full_before_memory_then_round(tmp_path):
    results.write_manifest(tmp_path, {"run_id": "r", "cells": [{"key": "z"}, {"key": "a"}]})
    for r in (record("a", 1), record("a", 0, "memory"), record("a"), record("z", 2), record("z"), record("extra")):
        results.write_record(tmp_path, r)
    got = [(r["key"], r["mode"], r["round"]) for r in results.read_rounds(tmp_path)]
    assert got == [("z", "full", 0), ("z", "full", 2), ("a", "full", 0), ("a", "full", 1), ("a", "memory", 0),
                   ("extra", "full", 0)]
    (tmp_path / "cells" / "a.r1.json").write_text("{")
    with pytest.raises(results.ResultsError, match="a.r1.json is not valid JSON"):
        results.read_rounds(tmp_path)  # never silently dropped


def test_resolve_run_takes_an_id_or_a_directory_and_names_both_places_it_looked(tmp_path):
    results.write_manifest(tmp_path / "runs" / "r1", {"run_id": "r1"})
    assert results.resolve_run("r1", tmp_path / "runs") == tmp_path / "runs" / "r1"
    assert results.resolve_run(tmp_path / "runs" / "r1", tmp_path) == tmp_path / "runs" / "r1"
    with pytest.raises(results.ResultsError, match="no run 'r2'"):
        results.resolve_run("r2", tmp_path / "runs")
    assert results.read_manifest(tmp_path / "runs" / "r1")["run_id"] == "r1"
    assert results.list_runs(tmp_path / "runs") == [tmp_path / "runs" / "r1"]
    assert results.list_runs(tmp_path / "nowhere") == []


def test_the_committed_baseline_reads_back_pooled_one_record_per_cell():
    run = ROOT / "results" / "baselines" / "cpu-2core-quick-tensor-memory"  # 18 cells, each 1 full + 2 memory-only
    rounds, pooled = results.read_rounds(run), results.read_records(run)
    manifest = results.read_manifest(run)
    assert len(rounds) == 54 and [r["key"] for r in pooled] == [c["key"] for c in manifest["cells"]]
    assert all(r["rounds"] == {"full": 1, "memory": 2, "failed": 0} for r in pooled)
    assert all(len(r["memory"]["rss_delta_rounds_bytes"]) == 3 for r in pooled)


def test_flatten_gives_dotted_keys_for_nested_dicts_only():
    assert results.flatten({"a": 1, "m": {"t": {"median": 2.0, "values": [1, 2]}}, "e": {}}) == \
        {"a": 1, "m.t.median": 2.0, "m.t.values": [1, 2]}
