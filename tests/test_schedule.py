"""Rounds of processes: the order a plain run gives its cells and rounds, adaptive rounds that
stop when the answer is clear, what --resume still runs, and a Ctrl-C that keeps the run. Worker
processes are replaced by a recorder of the jobs they would have got (process.run_cell); the
duet's CPU sets and A B / B A order are tested in test_duet.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.workers import process
from bench.records import results
from bench.runner import schedule
from bench.runner.plan import Selection, plan
from bench.runner.side import Side
from helpers import new_side

CELLS = plan(Selection(frameworks=("torch",), models=("lstm128", "cnn_small", "lstm512"), devices=("cpu",),
                       profile="smoke", threads=1))
A, B, C = CELLS


class UI:
    def __init__(self) -> None:
        self.total, self.advanced, self.finished = 0, 0, []

    def start(self, total): self.total = total
    def advance(self, n): self.advanced += n
    def add_total(self, n): self.total += n
    def cell_started(self, cell): pass
    def cell_progress(self, key, phase): pass
    def cell_finished(self, cell, outcome): self.finished.append(outcome)
    def stop(self): pass


class Recorder:
    """Stands in for process.run_cell: logs each job a worker would get as (model, round, mode);
    `fail` holds the (model, round) pairs that fail, `interrupt` the one that gets a Ctrl-C."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, str]] = []
        self.fail: set[tuple[str, int]] = set()
        self.interrupt: tuple[str, int] | None = None

    def run_cell(self, job, run_dir, code_root, watch) -> process.CellOutcome:
        at = (job.cell.model.name, job.round)
        self.log.append((*at, job.mode))
        if at == self.interrupt:
            raise KeyboardInterrupt
        return process.CellOutcome(job.cell.key, "failed" if at in self.fail else "ok")


@pytest.fixture
def calls(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(process, "run_cell", rec.run_cell)
    monkeypatch.setattr(process, "pre_skip_reason", lambda cell: None)
    return rec


def side(tmp_path: Path, name: str = "run") -> Side:
    return new_side(tmp_path / name, name, CELLS)


def test_a_plain_run_goes_round_robin_full_rounds_then_memory_rounds(tmp_path, calls):
    ui = UI()
    code = schedule.execute_sides((side(tmp_path),), [A, B], None, 60, ui, schedule.Rounds(full=2, memory=3))
    assert code == 0 and ui.total == 2 * 3
    assert calls.log == [("lstm128", 0, "full"), ("cnn_small", 0, "full"), ("lstm128", 1, "full"),
                         ("cnn_small", 1, "full"), ("lstm128", 2, "memory"), ("cnn_small", 2, "memory")]
    assert [o.reason for o in ui.finished[:3]] == ["", "", "[round 2]"]  # labelled by round
    assert ui.finished[-1].reason == "[round 3, memory only]"
    assert results.read_manifest(tmp_path / "run")["status"] == "complete"


def test_a_cell_that_fails_its_first_round_gets_no_more(tmp_path, calls):
    calls.fail.add(("cnn_small", 0))
    ui = UI()
    schedule.execute_sides((side(tmp_path),), [A, B], None, 60, ui, schedule.Rounds(full=1, memory=3))
    assert calls.log == [("lstm128", 0, "full"), ("cnn_small", 0, "full"), ("lstm128", 1, "memory"),
                         ("lstm128", 2, "memory")]
    assert ui.advanced == 2  # the skipped rounds still move the progress bar to its total


def test_adaptive_rounds_stop_when_decide_says_the_answer_is_clear(tmp_path, calls):
    decided: list[int] = []

    def decide(cell, done, spent_s):
        decided.append(done)
        return done >= 3

    sides = (side(tmp_path, "base"), side(tmp_path, "head"))
    rounds = schedule.Rounds(full=2, max_full=10, budget_s=1e9, decide=decide)
    assert schedule.execute_sides(sides, [A], None, 60, UI(), rounds) == 0
    assert decided == [2, 3]  # asked only once the minimum of rounds is done
    assert calls.log == [("lstm128", r, "full") for r in (0, 0, 1, 1, 2, 2)]


def test_resume_runs_only_the_missing_processes(tmp_path, calls):
    s = side(tmp_path)
    rounds = schedule.Rounds(full=1, memory=2)

    def rec(cell, status, round_=0, mode="full"):
        s.run.file({"key": cell.key, "status": status}, round_, mode)

    rec(A, "ok")  # its memory round 1 is missing
    rec(B, "failed")  # failed: no further rounds unless --retry-failed
    rec(C, "ok")
    rec(C, "ok", 1, "memory")
    assert schedule.remaining(s.run, CELLS, retry_failed=False, rounds=rounds) == [A]
    assert schedule.remaining(s.run, CELLS, retry_failed=True, rounds=rounds, dry_run=True) == [A, B]
    assert results.cell_path(s.run_dir, B.key).exists()  # a dry run removes nothing
    assert schedule.remaining(s.run, CELLS, retry_failed=True, rounds=rounds) == [A, B]
    assert not results.cell_path(s.run_dir, B.key).exists()  # removed, so the rerun files a fresh one
    schedule.execute_sides((s,), [A, B], None, 60, UI(), rounds)
    assert calls.log == [("cnn_small", 0, "full"), ("lstm128", 1, "memory"), ("cnn_small", 1, "memory")]


def test_ctrl_c_marks_the_run_interrupted_and_returns_130(tmp_path, calls):
    calls.interrupt = ("cnn_small", 0)
    code = schedule.execute_sides((side(tmp_path),), [A, B, C], None, 60, UI(), schedule.Rounds())
    assert code == 130 and calls.log == [("lstm128", 0, "full"), ("cnn_small", 0, "full")]
    assert results.read_manifest(tmp_path / "run")["status"] == "interrupted"


def test_labels_say_side_round_and_memory_only():
    o = process.CellOutcome("k", "ok", "why")
    assert schedule.labelled(o, 0, "full") == o
    assert schedule.labelled(o, 0, "full", "base").reason == "[base, round 1] why"
    assert schedule.labelled(process.CellOutcome("k", "ok"), 2, "memory").reason == "[round 3, memory only]"


class Overlap(Recorder):
    """A recorder that notes how many workers run at once; memory-only ones wait at a barrier of
    two, so they pass only when two really run together (a deterministic check of overlap)."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.lock = threading.Lock()
        self.active: list[str] = []
        self.seen: list[tuple[str, ...]] = []  # the modes running at each start
        self.barrier = threading.Barrier(2, timeout=20)

    def run_cell(self, job, run_dir, code_root, watch) -> process.CellOutcome:
        with self.lock:
            self.active.append(job.mode)
            self.seen.append(tuple(self.active))
        try:
            out = super().run_cell(job, run_dir, code_root, watch)
            if job.mode == "memory":
                self.barrier.wait()
            return out
        finally:
            with self.lock:
                self.active.remove(job.mode)


def test_memory_only_processes_run_two_at_once_after_every_timed_one(tmp_path, monkeypatch):
    rec = Overlap()
    monkeypatch.setattr(process, "run_cell", rec.run_cell)
    monkeypatch.setattr(process, "pre_skip_reason", lambda cell: None)
    ui = UI()
    rounds = schedule.Rounds(full=1, memory=3, memory_jobs=2)
    assert schedule.execute_sides((side(tmp_path),), [A, B], None, 60, ui, rounds) == 0
    assert [m for *_, m in rec.log[:2]] == ["full", "full"]  # every timed process first
    assert sorted(rec.log[2:]) == [("cnn_small", 1, "memory"), ("cnn_small", 2, "memory"),
                                   ("lstm128", 1, "memory"), ("lstm128", 2, "memory")]
    assert all(s == ("full",) for s in rec.seen[:2])  # a timed process never had company
    assert max(len(s) for s in rec.seen) == 2 and len(ui.finished) == 6
    assert results.read_manifest(tmp_path / "run")["status"] == "complete"


def test_ctrl_c_in_a_memory_only_process_stops_the_others_and_keeps_the_run(tmp_path, calls):
    calls.interrupt = ("lstm128", 1)
    code = schedule.execute_sides((side(tmp_path),), [A, B, C], None, 60, UI(),
                                  schedule.Rounds(full=1, memory=3, memory_jobs=2))
    assert code == 130 and results.read_manifest(tmp_path / "run")["status"] == "interrupted"
    memory = [x for x in calls.log if x[2] == "memory"]
    assert memory[0] == ("lstm128", 1, "memory") and len(memory) <= 2  # no process starts after the stop
