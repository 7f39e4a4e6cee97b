"""Warm workers (bench/workers/warm.py, bench/workers/zygote.py): a cell forked from a warm parent is recorded
as a cold one is, says it was forked, and stays the unit of isolation (a crash or a timeout
ends the child, not the parent). Real forks of the numpy test double (tests/fake_impl.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.workers import process, warm
from bench import registry
from bench.records import results
from bench.records.run import Run
from bench.workers.job import Job
from bench.spec import ZOO, Cell, Protocol, TrainSpec

ROOT = Path(__file__).resolve().parent.parent
CELLS = [Cell("fake", ZOO[m], TrainSpec(batch_size=16, steps=12), threads=1,
              protocol=Protocol(warmup_steps=2, repeats=3, steps_per_repeat=3, test_samples=64, memory_steps=2))
         for m in ("cnn_small", "lstm128")]
# What differs between two processes of one cell however they start: timings, the machine, RSS.
VARYING = {"env", "start", "warm_parent", "wall_s", "process_wall_s", "contention", "self_check", "suspect", "warnings"}
VARYING_METRICS = {"train_samples_per_s", "step_ms", "infer_samples_per_s", "compile_s", "infer_compile_s",
                   "build_s", "train_wall_s", "timed_total_s"}
VARYING_ANALYTIC = {"achieved_gflops", "calibration_gflops", "pct_of_achievable", "rss_over_floor"}


@pytest.fixture(autouse=True)
def fake_in_children(monkeypatch):
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    monkeypatch.delenv("LSTM_BENCH_FAULT", raising=False)
    yield
    process.close_warm_parents()


def run(cell: Cell, run_dir: Path, start: str, timeout_s: float = 120) -> dict:
    job = Job(cell, run_dir=str(run_dir), run_id="w")
    process.run_cell(job, Run.bare(run_dir), ROOT, process.Watch(timeout_s, start=start))
    return results.read_json(results.cell_path(run_dir, cell.key), results.RECORD_SCHEMA)


def what_is_measured(rec: dict) -> dict:
    out = {k: v for k, v in rec.items() if k not in VARYING}
    out["metrics"] = {k: v for k, v in rec["metrics"].items() if k not in VARYING_METRICS}
    out["memory"] = {k: v for k, v in rec["memory"].items() if not k.startswith("rss_")}
    out["analytic"] = {k: v for k, v in rec["analytic"].items() if k not in VARYING_ANALYTIC}
    return out


def parent_pids() -> list[int]:
    return warm.PARENTS.pids()


@pytest.mark.slow
def test_forked_cells_are_recorded_as_spawned_ones_and_say_fork(tmp_path):
    for cell in CELLS:
        cold = run(cell, tmp_path / "spawn", "spawn")
        forked = run(cell, tmp_path / "fork", "fork")
        assert (cold["status"], forked["status"]) == ("ok", "ok")
        assert (cold["start"], forked["start"]) == ("spawn", "fork")
        assert what_is_measured(forked) == what_is_measured(cold)
        assert forked["memory"]["rss_before_model_bytes"] > 0  # taken in the child
    assert len(parent_pids()) == 1  # both cells forked from one warm parent


@pytest.mark.slow
def test_a_crash_in_a_forked_child_is_failed_and_the_next_cell_still_forks(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_BENCH_FAULT", "crash:cnn_small")
    crashed = run(CELLS[0], tmp_path, "fork")
    assert crashed["status"] == "failed" and crashed["reason"] == "worker exited with code -6 without a record"
    assert crashed["error_tail"][-1] == "injected crash (LSTM_BENCH_FAULT)" and crashed["start"] == "fork"
    (pid,) = parent_pids()
    nxt = run(CELLS[1], tmp_path, "fork")
    assert (nxt["status"], nxt["start"]) == ("ok", "fork")
    assert parent_pids() == [pid]  # the same parent survived the crash


@pytest.mark.slow
def test_a_timeout_kills_only_the_child(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_BENCH_FAULT", "slow:cnn_small:5")  # 12 steps of 5 s: far past 1 s
    rec = run(CELLS[0], tmp_path, "fork", timeout_s=1.0)
    assert rec["status"] == "timeout" and rec["start"] == "fork"
    (pid,) = parent_pids()
    os.kill(pid, 0)  # alive
    assert (run(CELLS[1], tmp_path, "fork")["status"]) == "ok"
    assert parent_pids() == [pid]


@pytest.mark.slow
def test_a_dead_parent_means_cold_starts_said_once(tmp_path, capsys):
    assert run(CELLS[0], tmp_path / "a", "fork")["start"] == "fork"
    (pid,) = parent_pids()
    os.kill(pid, 9)
    starts = [run(c, tmp_path / "b", "fork")["start"] for c in CELLS]
    assert starts == ["spawn", "spawn"]
    assert capsys.readouterr().err.count("start cold") == 1


@pytest.mark.slow
def test_a_parent_is_replaced_after_refork_every_children_and_records_say_which(tmp_path, monkeypatch):
    monkeypatch.setattr(warm.PARENTS, "refork_every", 2)
    lineages, pids = [], []
    for i in range(5):
        rec = run(CELLS[0], tmp_path / str(i), "fork")
        assert (rec["status"], rec["start"]) == ("ok", "fork")
        lineages.append(rec["warm_parent"])
        pids.append(parent_pids())
    assert lineages == [{"generation": g, "child": c} for g, c in ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))]
    assert pids[0] == pids[1] and pids[2] == pids[3] and len({p[0] for p in pids}) == 3  # fresh parents
    assert len(pids[-1]) == 1  # the replaced parents were closed once their children had ended


def test_a_fork_aware_thread_is_counted_apart_and_any_other_thread_refuses_the_parent():
    import threading

    from bench.workers import zygote

    named, stop = threading.Event(), threading.Event()

    def bg(name: str) -> None:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name)  # as pyarrow's jemalloc names its background thread
        named.set()
        stop.wait(10)

    before = zygote.fork_aware_count()
    t = threading.Thread(target=bg, args=("jemalloc_bg_thd",), daemon=True)
    t.start()
    try:
        assert named.wait(10)
        assert zygote.fork_aware_count() == before + 1
    finally:
        stop.set()
        t.join()
    # The runner's arithmetic on a ready line: numpy's pool and fork-aware threads are allowed,
    # one more thread of any other name refuses the parent; older parents never say fork_aware.
    assert warm.extra_threads({"threads": "3", "after_numpy": "2", "fork_aware": "1"}) == 0
    assert warm.extra_threads({"threads": "4", "after_numpy": "2", "fork_aware": "1"}) == 1
    assert warm.extra_threads({"threads": "3", "after_numpy": "2"}) == 1


def test_a_parent_whose_preload_failed_is_read_whole():
    """The ready line's failed=[...] is JSON whose messages hold spaces (a corrupt data file in the
    parent reads "bench.data: DataError"): the other fields still parse and the list stays whole."""
    import json

    from bench.workers.warm import ready_fields
    from bench.workers.zygote import READY

    failed = ["torch._dynamo: ImportError", "bench.data: DataError"]
    fields = ready_fields(f"{READY} threads=3 after_numpy=3 fork_aware=1 failed={json.dumps(failed)}")
    assert fields["threads"] == "3" and fields["fork_aware"] == "1"
    assert json.loads(fields["failed"]) == failed
