"""Alternate rounds (bench/workers/turns.py): base and head share one CPU set and take turns at
every timed section. The runner lets one side go at a time and only while every side waits; at a
barrier both go together; a side that ends leaves the other to go on alone. The end-to-end test
runs two real workers of the numpy test double (tests/fake_impl.py) on one CPU and reads their
records: no timed repeat of one side overlaps one of the other, and the first side alternates."""
from __future__ import annotations

import argparse
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from bench import registry
from bench.records import results
from bench.records.run import Run
from bench.spec import ZOO, Cell, Protocol, TrainSpec
from bench.workers import process, turns
from bench.workers.job import Job
from helpers import new_side

ROOT = Path(__file__).resolve().parent.parent


def _released(t: turns.Turns) -> list[bytes]:
    """What each seat's FIFO holds now (read without blocking), emptying it."""
    out = []
    for i in range(t.parties):
        fd = os.open(t.seat_dir(i) / turns.FIFO, os.O_RDONLY | os.O_NONBLOCK)
        try:
            out.append(os.read(fd, 16))
        except BlockingIOError:
            out.append(b"")
        finally:
            os.close(fd)
    return out


def test_one_side_goes_at_a_time_and_only_while_every_side_waits(tmp_path):
    t = turns.Turns(tmp_path, 2)
    t.ready(0, 0, False)
    assert _released(t) == [b"", b""]  # side 1 is still working (importing, warming up): no one is timed
    t.ready(1, 0, False)
    assert _released(t) == [b"g", b""]  # turn 0: side 0 first
    t.ready(0, 1, False)  # side 0 finished its turn 0 and waits at turn 1: side 1 is behind
    assert _released(t) == [b"", b"g"]
    t.ready(1, 1, False)
    assert _released(t) == [b"", b"g"]  # turn 1: side 1 first (A B, then B A)
    t.ready(1, 2, True)  # side 1 waits at the barrier after its turns
    assert _released(t) == [b"g", b""]  # side 0 takes its turn 1
    t.ready(0, 2, True)
    assert _released(t) == [b"g", b"g"]  # a barrier: both go together
    t.close()


def test_nothing_goes_while_a_side_takes_its_turn(tmp_path):
    t = turns.Turns(tmp_path, 2)
    t.ready(0, 0, False)
    t.ready(1, 0, False)
    assert _released(t) == [b"g", b""]
    t.ready(1, 0, False)  # the same announcement again changes nothing: side 0 is still timed
    assert _released(t) == [b"", b""]
    t.close()


def test_a_side_that_leaves_lets_the_other_go_on_alone(tmp_path):
    t = turns.Turns(tmp_path, 2)
    t.ready(0, 0, False)
    t.leave(1)  # side 1 crashed before its first turn
    assert _released(t) == [turns.ALONE, b""]
    t.ready(0, 1, False)  # a late announcement from the survivor releases nothing more
    assert _released(t) == [b"", b""]
    t.close()


def test_a_seat_announces_its_turns_and_blocks_until_go(tmp_path, capsys):
    t = turns.Turns(tmp_path, 2)
    seat = turns.Seat(str(t.seat_dir(0)))
    timer = threading.Timer(0.05, lambda: t._write(0, turns.GO))
    timer.start()
    waited, alone = seat.wait()
    assert not alone and waited >= 0.04  # it blocked until the byte came
    timer = threading.Timer(0.0, lambda: t._write(0, turns.GO))
    timer.start()
    seat.wait(barrier=True)
    assert capsys.readouterr().out == "@ready 0\n@ready 1 all\n"
    t._write(0, turns.ALONE)
    assert seat.wait() == (pytest.approx(0.0, abs=0.5), True)
    assert seat.wait() == (0.0, True) and capsys.readouterr().out == "@ready 2\n"  # alone: no more announcements
    waited, alone = turns.Seat(str(t.seat_dir(1))).wait(timeout_s=0.05)
    assert alone and waited >= 0.05  # no runner: past its timeout it goes on alone
    t.close()


def test_code_without_turns_is_detected(tmp_path):
    assert turns.supported(ROOT)
    (tmp_path / "bench" / "workers").mkdir(parents=True)
    (tmp_path / "bench" / "workers" / "handshake.py").write_text("")  # older code: a handshake, no turns
    assert not turns.supported(tmp_path)


def test_the_check_takes_turns_unless_a_side_predates_them_or_asks_side_by_side(tmp_path):
    from bench.commands import ab

    said: list[str] = []

    class Console:
        def print(self, text: str) -> None:
            said.append(text)

    def sides(root: Path, name: str) -> tuple:
        return (new_side(tmp_path / f"{name}b", "base", code_root=root),
                new_side(tmp_path / f"{name}h", "head", code_root=ROOT))

    old = tmp_path / "old"
    (old / "bench").mkdir(parents=True)
    cells = [_cell()]
    ns = argparse.Namespace
    asked = dict(side_by_side=False, handshake=False, sequential=False)
    new = sides(ROOT, "new")
    assert ab.choose_alternate(ns(**asked), new, cells, Console()) is True
    assert [s.run.manifest.duet_design for s in new] == ["alternate", "alternate"] and not said
    mixed = sides(old, "mixed")
    assert ab.choose_alternate(ns(**asked), mixed, cells, Console()) is False
    assert "base side's code predates alternate rounds" in said[0]
    assert [s.run.manifest.duet_design for s in mixed] == ["side by side"] * 2
    for flag in ("side_by_side", "handshake", "sequential"):
        assert ab.choose_alternate(ns(**{**asked, flag: True}), sides(ROOT, flag), cells, Console()) is False
    gpu = [replace(_cell(), device="gpu")]
    assert ab.choose_alternate(ns(**asked), sides(ROOT, "gpu"), gpu, Console()) is False
    # taking turns, each side's timed repeat has the whole machine: every CPU, all threads
    duet = ab.choose_duet_cpus(ns(**asked, threads=99), cells, new, Console(), alternate=True)
    assert duet == (tuple(sorted(os.sched_getaffinity(0))),)


def _cell() -> Cell:
    repeats, per = 6, 3
    return Cell("fake", ZOO["cnn_small"], TrainSpec(batch_size=16, steps=2 + repeats * per), threads=1,
                protocol=Protocol(warmup_steps=2, repeats=repeats, steps_per_repeat=per, test_samples=64,
                                  memory_steps=2, infer_repeats=3))


@pytest.mark.slow
def test_two_real_workers_take_turns_and_never_overlap_a_timed_repeat(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    monkeypatch.delenv("LSTM_BENCH_FAULT", raising=False)
    cpu = sorted(os.sched_getaffinity(0))[0]
    sync = tmp_path / "sync"
    sync.mkdir()
    t = turns.Turns(sync, 2)
    recs: list[dict] = [{}, {}]
    cell = _cell()

    def side(i: int) -> None:
        run_dir = tmp_path / f"side{i}"
        seat = t.seat(i)
        job = Job(cell, run_dir=str(run_dir), run_id="t", cpus=(cpu,), sync_dir=str(seat.directory))
        try:
            process.run_cell(job, Run.bare(run_dir), ROOT, process.Watch(120, rendezvous=seat))
        finally:
            seat.leave()
        recs[i] = results.read_json(results.cell_path(run_dir, cell.key), results.RECORD_SCHEMA)

    threads = [threading.Thread(target=side, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.close()
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert [r["duet"]["design"] for r in recs] == ["alternate"] * 2
    assert [r["duet"]["went_alone"] for r in recs] == [0, 0]
    # sgemm turn + barrier, 6 training turns + barrier, 3 inference turns + barrier
    assert [len(r["duet"]["waited_s"]) for r in recs] == [13, 13]
    per = cell.protocol.steps_per_repeat
    spans = [[(s, s + v * per / 1000) for s, v in zip(r["duet"]["repeat_start_unix"], r["metrics"]["step_ms"]["values"])]
             for r in recs]
    for r, ((a0, a1), (b0, b1)) in enumerate(zip(*spans)):
        first, second = ((a0, a1), (b0, b1)) if r % 2 == 0 else ((b0, b1), (a0, a1))
        # the side whose turn it is goes first; the other starts only after it finished (1 ms of
        # slack: the two clocks are read microseconds apart around each repeat)
        assert first[1] <= second[0] + 0.001, (r, first, second)
    for i in range(2):  # and no repeat overlaps any repeat of the other side
        for s0, s1 in spans[i]:
            assert all(s1 <= o0 + 0.001 or o1 <= s0 + 0.001 for o0, o1 in spans[1 - i])
