"""Duet rounds (check --against, --calibrate): the two sides' processes of a round run at the
same time, pinned to disjoint CPUs that swap every round; --sequential and GPU cells keep
A B / B A. The scheduling is tested with process.run_cell replaced (no worker processes)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.workers import process
from bench.runner import schedule
from bench.runner.plan import Selection, plan
from bench.runner.side import Side
from helpers import new_side


@pytest.mark.parametrize("threads, cpus, expected", [
    (1, [0, 1], ((0,), (1,))),
    (2, [0, 1, 2, 3, 4], ((0, 1), (2, 3))),
    (1, [3, 7], ((3,), (7,))),  # the CPUs this process may use, not 0..n
    (2, [0, 1, 2], ()),  # not enough for both sides
    (1, [0], ()),
    (0, [0, 1], ()),
])
def test_duet_cpus_are_disjoint_halves_or_none(threads, cpus, expected):
    assert schedule.duet_cpus(threads, cpus) == expected


class UI:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = self.finished = 0

    def start(self, total): pass
    def cell_progress(self, key, phase): pass
    def advance(self, n): pass
    def add_total(self, n): pass
    def cell_started(self, cell): pass

    def cell_finished(self, cell, outcome):
        with self.lock:
            self.finished += 1


def fake_sides(tmp_path: Path) -> tuple[Side, ...]:
    return tuple(new_side(tmp_path / n, n) for n in ("base", "head"))


def run(monkeypatch, tmp_path, device: str, duet, rounds_n: int = 4, fail_side: str | None = None):
    calls: list[dict] = []

    def fake_run_cell(job, run, code_root, watch):
        run_dir = run.directory
        t0 = time.monotonic()
        time.sleep(0.3)
        calls.append({"side": Path(run_dir).name, "round": job.round, "cpus": job.cpus, "t0": t0,
                      "t1": time.monotonic()})
        if Path(run_dir).name == fail_side:
            return process.CellOutcome(job.cell.key, "failed", "boom")
        return process.CellOutcome(job.cell.key, "ok")

    monkeypatch.setattr(process, "run_cell", fake_run_cell)
    monkeypatch.setattr(schedule, "finish", lambda sides, ui, status: None)
    monkeypatch.setattr(process, "pre_skip_reason", lambda cell: None)
    cell = plan(Selection(frameworks=("torch",), models=("cnn_small",), devices=(device,), profile="smoke",
                          threads=1))[0]
    rounds = schedule.Rounds(full=rounds_n, max_full=rounds_n, budget_s=1e9, decide=lambda c, d, s: False,
                             duet_cpus=duet)
    code = schedule.execute_sides(fake_sides(tmp_path), [cell], None, 60, UI(), rounds)
    assert code == 0
    return sorted(calls, key=lambda c: (c["round"], c["side"]))


def overlap(a: dict, b: dict) -> float:
    return min(a["t1"], b["t1"]) - max(a["t0"], b["t0"])


def test_duet_round_runs_both_sides_at_once_on_swapped_cpus(monkeypatch, tmp_path):
    calls = run(monkeypatch, tmp_path, "cpu", ((0,), (1,)))
    assert len(calls) == 8
    for r in range(4):
        base, head = calls[2 * r], calls[2 * r + 1]
        assert (base["side"], head["side"]) == ("base", "head")
        assert overlap(base, head) > 0.2  # side by side (each sleeps 0.3 s)
        assert {base["cpus"], head["cpus"]} == {(0,), (1,)}
    # each side gets each CPU set in alternate rounds, so a slower core hits both alike
    assert [c["cpus"] for c in calls if c["side"] == "base"] == [(0,), (1,), (0,), (1,)]


@pytest.mark.parametrize("device, duet", [("cpu", ()), ("gpu", ((0,), (1,)))])
def test_sequential_and_gpu_rounds_run_one_side_after_the_other(monkeypatch, tmp_path, device, duet):
    """--sequential (no CPU sets) and GPU cells (one device: two processes would share it)."""
    calls = run(monkeypatch, tmp_path, device, duet)
    for r in range(4):
        base, head = calls[2 * r], calls[2 * r + 1]
        assert overlap(base, head) <= 0 and base["cpus"] == head["cpus"] == ()
        # A B, then B A: drift over the job hits both sides alike
        assert (base["t0"] < head["t0"]) == (r % 2 == 0)


def test_a_side_that_fails_stops_the_duet_rounds(monkeypatch, tmp_path):
    calls = run(monkeypatch, tmp_path, "cpu", ((0,), (1,)), fail_side="head")
    assert len(calls) == 2  # one round, both sides; more rounds will not help


def test_ctrl_c_during_a_duet_round_stops_both_workers(monkeypatch, tmp_path):
    """A KeyboardInterrupt in one side's thread sets `stop`, which the other side's worker
    loop obeys; the runner reports the run interrupted (130) instead of hanging."""
    seen: list[bool] = []

    def fake_run_cell(job, run, code_root, watch):
        if run.directory.name == "head":
            time.sleep(0.1)
            raise KeyboardInterrupt
        deadline = time.monotonic() + 10
        while not watch.stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(watch.stop.is_set())
        raise KeyboardInterrupt  # as run_worker does once it has killed its worker

    monkeypatch.setattr(process, "run_cell", fake_run_cell)
    monkeypatch.setattr(schedule, "finish", lambda sides, ui, status: None)
    monkeypatch.setattr(process, "pre_skip_reason", lambda cell: None)
    cell = plan(Selection(frameworks=("torch",), models=("cnn_small",), devices=("cpu",), profile="smoke",
                          threads=1))[0]
    rounds = schedule.Rounds(full=2, max_full=2, budget_s=1e9, decide=lambda c, d, s: False, duet_cpus=((0,), (1,)))
    t0 = time.monotonic()
    assert schedule.execute_sides(fake_sides(tmp_path), [cell], None, 60, UI(), rounds) == 130
    assert seen == [True] and time.monotonic() - t0 < 5
