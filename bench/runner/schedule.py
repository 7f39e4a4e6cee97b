"""Rounds of worker processes: which cell runs when, on which side and which CPUs, and what a
resumed run still misses. A plain run is one side; `check --against` and `--calibrate` are two
(base and head), run side by side (duet) or one after the other (A B / B A). Every outcome gets
a record; Ctrl-C keeps what finished and marks the run interrupted.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .. import envinfo
from ..workers import handshake, owned, process, turns
from ..workers.job import Job
from ..workers.process import CellOutcome
from ..records.record import Record
from ..records.run import Run
from .side import Side
from ..spec import Cell

DEFAULT_TIMEOUT_S = {"smoke": 300, "ci": 600, "claim": 900, "quick": 900, "full": 7200}

# (cell, rounds done, seconds the cell's rounds took) -> stop adding rounds for this cell. The
# seconds let a sequential check plan its rounds from the time a round takes, before its first look.
Decide = Callable[[Cell, int, float], bool]


@dataclass(frozen=True)
class Rounds:
    """How many fresh processes each cell gets.

    `full`: full measurements per cell and side (a plain run: round-robin over the cells, so
    slow drift of the machine spreads over all of them). `memory`: memory-only processes that
    bring the cell's RSS samples up to this many (RSS is judged in rounds, never on one
    process). With `decide`, rounds are adaptive per cell (check --against): at least
    `full`, then more while `decide` says the answer is not clear, up to `max_full` rounds or
    `budget_s` seconds for the cell, whichever comes first."""

    full: int = 1
    memory: int = 0
    max_full: int = 0
    budget_s: float = 0.0
    decide: Decide | None = None
    # Duet (check --against, --calibrate): the two sides' processes of a round run at the same
    # time, each pinned to its own CPUs, swapping CPUs from round to round. Both then see the
    # same burst of the shared machine, which cancels in head/base (Bulej et al., "Duet
    # benchmarking", ICPE 2020), and a round takes one process's time instead of two. CPU
    # cells only; empty = one side after the other.
    duet_cpus: tuple[tuple[int, ...], ...] = ()
    # Duet rounds whose two sides wait for each other before every timed training repeat, so
    # their windows start together (bench/workers/handshake.py); off where a side's code predates it.
    handshake: bool = False
    # Alternate rounds: both sides' processes at once on the same CPUs (duet_cpus' sets, one per
    # round in turn), taking turns at every timed repeat (bench/workers/turns.py), so both read
    # the same moment of a noisy host. Off where a side's code predates it.
    alternate: bool = False
    # Memory-only processes of CPU cells run this many at once, after every timed process has
    # finished: nothing in them is timed and their figures are per process (RSS, the tensor-level
    # pass). Their imports overlap well, their steps less (run --all quick, 2 vCPUs: 36 such
    # processes in 7.0 min wall, 13.7 min summed; results/published/run-all-memory-jobs-*).
    memory_jobs: int = 1


@dataclass(frozen=True)
class RunContext:
    """What every process of one run shares, from the scheduler down to the worker's watch."""

    data_path: str | None
    timeout_s: float
    ui: Any  # the run UI: cell_started / cell_progress / cell_finished / advance / add_total
    stop: threading.Event  # set on Ctrl-C or when one side of a duet round stops: every worker stops
    tag: bool  # several sides: outcomes say which side they come from
    start: str = "spawn"  # how each worker starts: a cold interpreter, or forked warm (bench/workers/warm.py)

    @property
    def watch(self) -> process.Watch:
        return process.Watch(self.timeout_s, self.ui.cell_progress, self.stop, self.start)


def new_run_id(profile: str) -> str:
    """time + label + 4 random hex digits; the label (a profile, or a config's name) is cut down to
    what a run id may hold (bench.records.results.RUN_ID_RE)."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", profile).strip(".-")[:64] or "run"
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{label}-{uuid.uuid4().hex[:4]}"


class Pending:
    """The rounds policy, the one both executors (local and Ray) follow: per cell, the processes
    (round, mode) its run still lacks, in round order: `rounds.full` full measurements, then
    memory-only processes up to `rounds.memory`. A process with a record (an earlier run of a
    resumed one) is not asked for again; a cell whose first measurement did not end ok gets no
    further process (more will not help)."""

    def __init__(self, run: Run, cells: list[Cell], rounds: Rounds, absent: frozenset = frozenset()):
        wanted = [(r, "full" if r < rounds.full else "memory") for r in range(max(rounds.full, rounds.memory))]
        self._todo: dict[str, list[tuple[int, str]]] = {}
        for c in cells:
            first = run.record(c.key) if (c.key, 0, "full") not in absent else None
            self._todo[c.key] = [] if first is not None and first["status"] != "ok" else \
                [(r, m) for r, m in wanted if (c.key, r, m) in absent or not run.has(c.key, r, m)]

    def wants(self, cell: Cell, round_: int, mode: str) -> bool:
        return (round_, mode) in self._todo.get(cell.key, ())

    def next(self, cell: Cell) -> tuple[int, str] | None:
        """The cell's next missing process, taken off its list."""
        todo = self._todo.get(cell.key)
        return todo.pop(0) if todo else None

    def done(self, cell: Cell, round_: int, mode: str, status: str) -> int:
        """A process ended; how many of the cell's processes were dropped with it (a first
        measurement that did not end ok drops the rest)."""
        todo = self._todo.setdefault(cell.key, [])
        if (round_, mode) in todo:
            todo.remove((round_, mode))
        if round_ == 0 and mode == "full" and status != "ok":
            dropped = len(todo)
            todo.clear()
            return dropped
        return 0

    def count(self, cell: Cell | None = None) -> int:
        return len(self._todo.get(cell.key, ())) if cell else sum(map(len, self._todo.values()))


def remaining(run: Run, cells: list[Cell], retry_failed: bool, rounds: Rounds = Rounds(),
              retry_busy: bool = False, dry_run: bool = False) -> list[Cell]:
    """Cells of a run still missing a process record (any round); with `retry_failed`, also
    those whose first measurement failed (their failed record is removed so it reruns); with
    `retry_busy`, the processes timed while other programs used their CPUs (the same way). A
    record marked `lost` (a Ray task lost with its node or worker: it says nothing about the
    cell) counts as missing even without `retry_failed`. `dry_run`: what would rerun, nothing removed."""
    drop = [r for r in run.rounds() if r.get("lost") or (retry_failed and r["status"] not in ("ok", "skipped"))
            or (retry_busy and Record(r).machine_busy)]
    for r in [] if dry_run else drop:
        run.remove(r)
    absent = frozenset((r["key"], int(r.get("round", 0)), r.get("mode", "full")) for r in drop) if dry_run \
        else frozenset()
    pending = Pending(run, cells, rounds, absent)
    return [c for c in cells if pending.count(c)]


def execute(run: Run, cells: list[Cell], data_path: str | None, timeout_s: float,
            ui: Any, rounds: Rounds = Rounds(), start: str = "spawn", envs: tuple[tuple[str, Any], ...] = ()) -> int:
    """Run `cells` (already planned into the run's manifest), those naming a package environment
    in it (`envs`: name -> bench.runner.envs.BuiltEnv). Returns 0, or 130 when interrupted."""
    return execute_sides((Side("run", envinfo.REPO_ROOT, run, envs=envs),), cells, data_path, timeout_s, ui, rounds,
                         start)


def _one(side: Side, cell: Cell, round_: int, mode: str, ctx: RunContext, cpus: tuple[int, ...] = (),
         rendezvous: handshake.Rendezvous | turns.SeatView | None = None) -> CellOutcome:
    assert side.run is not None
    job = Job(cell, run_dir=str(side.run_dir), run_id=side.run.run_id, data=ctx.data_path, round=round_,
              mode=mode, cpus=cpus, sync_dir=str(rendezvous.directory) if rendezvous else None)
    ctx.ui.cell_started(cell)
    reason = process.pre_skip_reason(cell)
    if reason:
        process.write_outcome(side.run, job, "skipped", reason)
        outcome = CellOutcome(cell.key, "skipped", reason)
    else:
        env = side.env_for(cell.env)  # a package environment's interpreter, or this one (None)
        outcome = process.run_cell(job, side.run, side.code_root, replace(ctx.watch, rendezvous=rendezvous),
                                   **({"env": env} if env is not None else {}))
    outcome = labelled(outcome, round_, mode, side.name if ctx.tag else None)
    ctx.ui.cell_finished(cell, outcome)
    return outcome


def labelled(outcome: CellOutcome, round_: int, mode: str, side: str | None = None) -> CellOutcome:
    """The outcome as the progress log shows it: which side, round and kind of process."""
    label = ([side] if side else []) + ([f"round {round_ + 1}"] if round_ or side else []) + \
        (["memory only"] if mode == "memory" else [])
    if not label:
        return outcome
    return replace(outcome, reason=f"[{', '.join(label)}] {outcome.reason}".rstrip())


def execute_sides(sides: tuple[Side, ...], cells: list[Cell], data_path: str | None, timeout_s: float,
                  ui: Any, rounds: Rounds = Rounds(), start: str = "spawn") -> int:
    """Run every cell on every side in fresh processes (one side for a plain run; base and
    head for `check --against`: side by side with `rounds.duet_cpus` on CPU cells, else
    alternating A B / B A from round to round so slow drift of a shared machine hits both
    alike). Every outcome gets a record; Ctrl-C keeps what finished.
    Returns 0 or 130."""
    ctx = RunContext(data_path, timeout_s, ui, threading.Event(), tag=len(sides) > 1, start=start)
    extra_mem = max(0, rounds.memory - rounds.full)
    ui.start(len(sides) * len(cells) * (rounds.full + extra_mem))
    status = "complete"

    def order(r: int) -> tuple[Side, ...]:
        return sides if r % 2 == 0 else sides[::-1]

    try:
        if rounds.decide is None:
            pending = {side.name: Pending(side.run, cells, rounds) for side in sides}
            together: list[Callable[[], CellOutcome]] = []  # memory-only processes of CPU cells
            for r in range(rounds.full + extra_mem):  # round-robin: every cell once, then again
                mode = "full" if r < rounds.full else "memory"
                for i, cell in enumerate(cells):
                    for side in order(r + i):
                        if not pending[side.name].wants(cell, r, mode):
                            ui.advance(1)  # done before (--resume) or not worth repeating
                            continue
                        if mode == "memory" and cell.device == "cpu" and rounds.memory_jobs > 1:
                            together.append(lambda s=side, c=cell, r_=r: _one(s, c, r_, "memory", ctx))
                            continue
                        out = _one(side, cell, r, mode, ctx)
                        pending[side.name].done(cell, r, mode, out.status)
            _pooled(together, rounds.memory_jobs, ctx)
        else:
            for cell in cells:
                t0 = time.monotonic()
                r = 0
                while True:
                    if rounds.duet_cpus and cell.device == "cpu":
                        outs = _duet(order(r), rounds.duet_cpus, cell, r, ctx, rounds.handshake, rounds.alternate)
                    else:
                        outs = [_one(side, cell, r, "full", ctx) for side in order(r)]
                    r += 1
                    if any(o.status != "ok" for o in outs):
                        ui.advance(len(sides) * max(0, rounds.full - r))
                        break  # a side that cannot measure this cell: more rounds will not help
                    if r < rounds.full:
                        continue
                    spent = time.monotonic() - t0
                    per_round = spent / r
                    if rounds.decide(cell, r, spent) or r >= rounds.max_full or spent + per_round > rounds.budget_s:
                        break
                    ui.add_total(len(sides))
    except KeyboardInterrupt:
        status = "interrupted"
    except OSError:  # the results disk (full, read-only): said by the caller; the run says it failed
        status = "failed"
        raise
    finally:
        finish(sides, ui, status)
    return 130 if status == "interrupted" else 0


def duet_cpus(threads: int, available: list[int] | None = None) -> tuple[tuple[int, ...], ...]:
    """Two disjoint CPU sets of `threads` each from the CPUs this process may use, or () when
    there are not enough for both sides at once."""
    cpus = sorted(os.sched_getaffinity(0)) if available is None else sorted(available)
    if threads < 1 or 2 * threads > len(cpus):
        return ()
    return tuple(cpus[:threads]), tuple(cpus[threads:2 * threads])


def _duet(sides: tuple[Side, ...], cpu_sets: tuple[tuple[int, ...], ...], cell: Cell, round_: int,
          ctx: RunContext, synchronised: bool = False, alternate: bool = False) -> list[CellOutcome]:
    """One round with both sides' processes at once: side by side, sides[i] pinned to
    cpu_sets[i] (the caller swaps the sides' order every round, so each side runs on each CPU set
    equally often), `synchronised` waiting for each other before every timed training repeat; or
    `alternate`, both on one CPU set (the sets in turn, round by round) taking turns at every timed
    section."""
    with contextlib.ExitStack() as stack:
        seats: list[handshake.Rendezvous | turns.SeatView | None] = [None] * len(sides)
        cpus = list(cpu_sets)
        if synchronised or alternate:
            sync_dir = owned.make(SYNC_PREFIX)  # owned: a check killed mid-round leaves it to the next to remove
            stack.callback(owned.remove, sync_dir)
            if alternate:
                t = turns.Turns(sync_dir, len(sides))
                stack.callback(t.close)
                seats = [t.seat(i) for i in range(len(sides))]
                cpus = [cpu_sets[round_ % len(cpu_sets)]] * len(sides)
            else:
                seats = [handshake.Rendezvous(sync_dir, len(sides))] * len(sides)
        return _duet_round(sides, tuple(cpus), cell, round_, ctx, seats)


SYNC_PREFIX = "lstm-bench-sync-"


def prune_stale() -> list[Path]:
    """Remove the duet handshake directories of checks whose process died; the ones removed."""
    return owned.prune(SYNC_PREFIX)


def _duet_round(sides: tuple[Side, ...], cpu_sets: tuple[tuple[int, ...], ...], cell: Cell, round_: int,
                ctx: RunContext, seats: list[handshake.Rendezvous | turns.SeatView | None]) -> list[CellOutcome]:
    def side(i: int) -> CellOutcome:
        try:
            return _one(sides[i], cell, round_, "full", ctx, cpu_sets[i], seats[i])
        finally:
            if seats[i] is not None:
                seats[i].leave()  # ended, however (skipped, crashed): the other side waits no more

    return _pooled([lambda i=i: side(i) for i in range(len(sides))], len(sides), ctx)


def _pooled(tasks: list[Callable[[], CellOutcome]], jobs: int, ctx: RunContext) -> list[CellOutcome]:
    """Run `tasks` (each one worker process) `jobs` at a time, in order, on threads; their
    outcomes in the tasks' order. A Ctrl-C or a task that raises stops them all (ctx.stop: each
    thread kills its worker) and is re-raised here; no further task starts."""
    outs: list[CellOutcome | None] = [None] * len(tasks)
    errors: list[BaseException] = []
    queue = iter(range(len(tasks)))
    lock = threading.Lock()

    def worker() -> None:
        while not ctx.stop.is_set():
            with lock:
                i = next(queue, None)
            if i is None:
                return
            try:
                outs[i] = tasks[i]()
            except BaseException as e:  # a KeyboardInterrupt from `stop`, or a bug: re-raised below
                errors.append(e)
                ctx.stop.set()  # no worker runs on alone
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(jobs, len(tasks))))]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)  # short joins: Ctrl-C reaches this (main) thread between them
    except BaseException:
        ctx.stop.set()  # each thread kills its worker when it sees this
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    return [o for o in outs if o is not None]


def finish(sides: tuple[Side, ...], ui: Any, status: str) -> None:
    """End of a run, however it ended: the manifest says complete, interrupted or failed."""
    ui.stop()
    process.close_warm_parents()  # their imports are of this run's code and environment
    for side in sides:
        assert side.run is not None
        side.run.finish(status)
        # Workers' staging directories are emptied as records are filed; an empty parent
        # left behind is clutter. A non-empty one (a worker killed mid-write) stays.
        with contextlib.suppress(OSError):
            side.run.staging_root.rmdir()
