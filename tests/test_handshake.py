"""The duet handshake (bench/workers/handshake.py): before each timed training repeat both sides of a
round wait for each other through the runner, so their windows start together; a side that ends
releases the other; code without the handshake is detected, not waited for. The end-to-end test
runs two real workers of the numpy test double (tests/fake_impl.py), one with four times the
other's work per repeat: unsynchronised, their repeat starts drift apart by design; synchronised,
they stay together. The bound compares the two conditions, not the machine's speed."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bench.workers import handshake, process
from bench import registry
from bench.records import results
from bench.records.run import Run
from bench.workers.job import Job
from bench.spec import ZOO, Cell, Protocol, TrainSpec
from bench.runner.side import Side
from helpers import new_side

ROOT = Path(__file__).resolve().parent.parent


def test_the_last_side_to_be_ready_lets_every_side_go(tmp_path):
    rv = handshake.Rendezvous(tmp_path, 2)
    rv.ready(0)
    assert not handshake.go_path(tmp_path, 0).exists()  # one of two: wait
    rv.ready(0)
    assert handshake.go_path(tmp_path, 0).exists()
    rv.ready(1)
    assert not handshake.go_path(tmp_path, 1).exists()
    assert handshake.wait_for_go(str(tmp_path), 0, timeout_s=1.0) == (pytest.approx(0.0, abs=0.5), False)


def test_a_side_that_left_is_not_waited_for(tmp_path):
    rv = handshake.Rendezvous(tmp_path, 2)
    rv.ready(0)
    rv.leave()  # the other side crashed or was skipped
    assert handshake.wait_for_go(str(tmp_path), 0, timeout_s=1.0)[1] is False
    waited, alone = handshake.wait_for_go(str(tmp_path), 7, timeout_s=1.0)  # any later repeat: released
    assert not alone and waited < 0.5


def test_a_wait_past_its_timeout_goes_on_alone(tmp_path, capsys):
    waited, alone = handshake.wait_for_go(str(tmp_path), 3, timeout_s=0.05)
    assert alone and waited >= 0.05
    assert capsys.readouterr().out == f"{handshake.READY} 3\n"  # announced to the runner on stdout


def test_a_job_carries_its_sync_directory_and_older_jobs_have_none():
    cell = _cell(3)
    job = Job(cell, run_dir="x", sync_dir="/tmp/s", cpus=(0,))
    assert Job.from_dict(job.to_dict()).sync_dir == "/tmp/s"
    assert "sync_dir" not in Job(cell, run_dir="x").to_dict()  # the keys every worker so far reads


def test_code_without_the_handshake_is_detected(tmp_path):
    assert handshake.supported(ROOT)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")  # an older bench: no handshake module
    assert not handshake.supported(tmp_path)


def _cell(steps_per_repeat: int) -> Cell:
    repeats = 6
    return Cell("fake", ZOO["cnn_small"], TrainSpec(batch_size=16, steps=2 + repeats * steps_per_repeat), threads=1,
                protocol=Protocol(warmup_steps=2, repeats=repeats, steps_per_repeat=steps_per_repeat, test_samples=64,
                                  memory_steps=2))


def _round(tmp_path: Path, synced: bool) -> list[dict]:
    """Two real workers at once, as a duet round runs them: one with 3 steps a repeat, the other 12."""
    cpus = sorted(os.sched_getaffinity(0))
    sync_dir = tmp_path / "sync"
    sync_dir.mkdir(parents=True)
    rv = handshake.Rendezvous(sync_dir, 2) if synced else None
    recs: list[dict] = [{}, {}]

    def side(i: int, n: int) -> None:
        cell = _cell(n)
        run_dir = tmp_path / f"side{i}"
        job = Job(cell, run_dir=str(run_dir), run_id="h", cpus=(cpus[i % len(cpus)],), sync_dir=str(sync_dir) if synced else None)
        try:
            process.run_cell(job, Run.bare(run_dir), ROOT, process.Watch(120, rendezvous=rv))
        finally:
            if rv is not None:
                rv.leave()
        recs[i] = results.read_json(results.cell_path(run_dir, cell.key), results.RECORD_SCHEMA)

    threads = [threading.Thread(target=side, args=(i, n)) for i, n in enumerate((3, 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return recs


@pytest.mark.slow
def test_synchronised_sides_start_every_repeat_together(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    monkeypatch.delenv("LSTM_BENCH_FAULT", raising=False)
    gaps = {}
    for synced in (False, True):
        fast, slow = _round(tmp_path / str(synced), synced)
        assert (fast["status"], slow["status"]) == ("ok", "ok")
        assert fast["duet"]["synchronised"] is synced and slow["duet"]["synchronised"] is synced
        starts = [fast["duet"]["repeat_start_unix"], slow["duet"]["repeat_start_unix"]]
        assert len(starts[0]) == len(starts[1]) == 6
        gaps[synced] = [b - a for a, b in zip(*starts)]  # slow side's start minus the fast side's
    # The slow side's repeat takes 9 sleeps of >= 3 ms more than the fast side's: unsynchronised, its
    # starts fall behind by >= 27 ms a repeat, 135 ms over 5, whatever the machine's speed (sleeps
    # only get longer). That is drift from the first start to the last, not the last gap itself: a
    # side that starts late (start-up on a busy core: ~130 ms, seen with one core burning) would
    # otherwise cancel the drift it is meant to show. 100 ms leaves room for the fast side's own
    # repeats to be stretched by a busy core.
    assert gaps[False][-1] - gaps[False][0] > 0.1
    gaps[True] = [abs(g) for g in gaps[True]]
    # Synchronised, no drift: every start within well under half of that (the slack is for a busy
    # runner's wake-up latency, not for drift, which would grow from repeat to repeat).
    assert max(gaps[True]) < 0.06
    assert sum(fast["duet"]["waited_s"]) > 0.1  # the fast side did the waiting
    assert fast["duet"]["went_alone"] == slow["duet"]["went_alone"] == 0
    # Waiting is outside the timers: the fast side's 3-step repeat is timed as its own (~9 ms), not
    # as the ~36 ms from one synchronised start to the next.
    s = fast["duet"]["repeat_start_unix"]
    interval = sorted(b - a for a, b in zip(s, s[1:]))[2]
    assert 3 * fast["metrics"]["step_ms"]["median"] / 1000 < 0.6 * interval


def test_a_check_runs_unsynchronised_and_says_so_when_a_side_predates_the_handshake(tmp_path):
    import argparse

    from bench.commands import ab

    old = tmp_path / "old"
    (old / "bench").mkdir(parents=True)
    said: list[str] = []

    class Console:
        def print(self, text: str) -> None:
            said.append(text)

    def sides(root: Path) -> tuple[Side, ...]:
        return (new_side(tmp_path / "b", "base", code_root=root), new_side(tmp_path / "h", "head", code_root=ROOT))

    duet = ((0,), (1,))
    new = sides(ROOT)
    assert ab.choose_handshake(argparse.Namespace(handshake=True), new, duet, Console()) is True
    assert [s.run.manifest.duet_handshake for s in new] == [True, True] and not said
    mixed = sides(old)
    assert ab.choose_handshake(argparse.Namespace(handshake=True), mixed, duet, Console()) is False
    assert "base side's code predates the duet handshake" in said[0]
    assert [s.run.manifest.duet_handshake for s in mixed] == [False, False]
    assert ab.choose_handshake(argparse.Namespace(handshake=False), sides(ROOT), duet, Console()) is False
    assert ab.choose_handshake(argparse.Namespace(handshake=True), sides(ROOT), (), Console()) is False  # sequential


def test_the_check_runs_without_the_handshake_unless_asked():
    """Off by default since benchmarks/duet_designs.py measured it shrinking a slowdown's reading;
    --handshake asks for it, and --no-handshake still parses (scripts written before)."""
    from bench.commands.parser import build_parser

    parser = build_parser()
    base = ["check", "--against", "HEAD", "-f", "torch", "-m", "lstm128"]
    assert parser.parse_args(base).handshake is False
    assert parser.parse_args([*base, "--handshake"]).handshake is True
    assert parser.parse_args([*base, "--no-handshake"]).handshake is False


def test_asking_for_and_against_the_handshake_is_one_line_exit_2(capsys):
    from bench import cli

    code = cli.main(["check", "--against", "HEAD", "-f", "torch", "-m", "lstm128", "--handshake", "--no-handshake"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not allowed with" in err[0], err
