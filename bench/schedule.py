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

from . import envinfo, handshake, owned, process, results
from .job import Job
from .plan import Selection
from .process import CellOutcome
from .record import Record
from .spec import Cell

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
    # their windows start together (bench/handshake.py); off where a side's code predates it.
    handshake: bool = False
    # Memory-only processes of CPU cells run this many at once, after every timed process has
    # finished: nothing in them is timed and their figures are per process (RSS, the tensor-level
    # pass). Their imports overlap well, their steps less (run --all quick, 2 vCPUs: 36 such
    # processes in 7.0 min wall, 13.7 min summed; results/published/run-all-memory-jobs-*).
    memory_jobs: int = 1


@dataclass(frozen=True)
class Side:
    """One side of a same-job A/B comparison: its run directory and the code it runs."""

    name: str
    run_dir: Path
    manifest: dict[str, Any]
    code_root: Path


@dataclass(frozen=True)
class RunContext:
    """What every process of one run shares, from the scheduler down to the worker's watch."""

    data_path: str | None
    timeout_s: float
    ui: Any  # the run UI: cell_started / cell_progress / cell_finished / advance / add_total
    stop: threading.Event  # set on Ctrl-C or when one side of a duet round stops: every worker stops
    tag: bool  # several sides: outcomes say which side they come from
    start: str = "spawn"  # how each worker starts: a cold interpreter, or forked warm (bench/warm.py)

    @property
    def watch(self) -> process.Watch:
        return process.Watch(self.timeout_s, self.ui.cell_progress, self.stop, self.start)


def new_run_id(profile: str) -> str:
    """time + label + 4 random hex digits; the label (a profile, or a config's name) is cut down to
    what a run id may hold (bench.results.RUN_ID_RE)."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", profile).strip(".-")[:64] or "run"
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{label}-{uuid.uuid4().hex[:4]}"


def start_manifest(run_dir: Path, run_id: str, cells: list[Cell], sel: Selection | None, argv: list[str],
                   data_path: str | None, rounds: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = {
        "run_id": run_id, "created_utc": envinfo.utc_now(), "argv": argv, "status": "running",
        "profile": sel.profile if sel else None, "data": data_path, "rounds": rounds or {"full": 1, "memory": 0},
        **(extra or {}),
        "cells": [{"key": c.key, "cell": c.to_dict()} for c in cells],
        "env": envinfo.environment(cells[0].threads if cells else 0),
    }
    results.write_manifest(run_dir, manifest)
    return manifest


def cells_from_manifest(manifest: dict[str, Any]) -> list[Cell]:
    """The planned cells (a manifest entry that does not make a cell: one line, exit 2)."""
    out = []
    for i, c in enumerate(manifest["cells"]):
        try:
            out.append(Cell.from_dict(c["cell"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise results.ResultsError(f"run {manifest.get('run_id')}: its manifest's cells[{i}] is not a cell "
                                       f"({type(e).__name__}: {e}): corrupt results file") from None
    return out


def remaining(run_dir: Path, cells: list[Cell], retry_failed: bool, rounds: Rounds = Rounds(),
              retry_busy: bool = False, dry_run: bool = False) -> list[Cell]:
    """Cells of a run still missing a process record (any round); with `retry_failed`, also
    those whose first measurement failed (their failed record is removed so it reruns); with
    `retry_busy`, the processes timed while other programs used their CPUs (the same way). A
    record marked `lost` (a Ray task lost with its node or worker: it says nothing about the
    cell) counts as missing even without `retry_failed`. `dry_run`: what would rerun, nothing removed."""
    recs = results.read_rounds(run_dir)
    drop = [r for r in recs if r.get("lost") or (retry_failed and r["status"] not in ("ok", "skipped"))
            or (retry_busy and Record(r).machine_busy)]
    for r in [] if dry_run else drop:
        results.cell_path(run_dir, r["key"], int(r.get("round", 0)), r.get("mode", "full")).unlink(missing_ok=True)
    recs = [r for r in recs if r not in drop]
    first = {r["key"]: r["status"] for r in recs if r.get("mode", "full") == "full" and not r.get("round")}
    have = {(r["key"], int(r.get("round", 0)), r.get("mode", "full")) for r in recs}
    wanted = [(r, "full" if r < rounds.full else "memory") for r in range(max(rounds.full, rounds.memory))]

    def missing(c: Cell) -> bool:
        if c.key in first and first[c.key] != "ok":
            return False  # a failed or skipped cell gets no further rounds
        return any((c.key, r, mode) not in have for r, mode in wanted)

    return [c for c in cells if missing(c)]


def execute(run_dir: Path, manifest: dict[str, Any], cells: list[Cell], data_path: str | None, timeout_s: float,
            ui: Any, rounds: Rounds = Rounds(), start: str = "spawn") -> int:
    """Run `cells` (already planned into the manifest). Returns 0, or 130 when interrupted."""
    return execute_sides((Side("run", run_dir, manifest, envinfo.REPO_ROOT),), cells, data_path, timeout_s, ui,
                         rounds, start)


def _one(side: Side, cell: Cell, round_: int, mode: str, ctx: RunContext, cpus: tuple[int, ...] = (),
         rendezvous: handshake.Rendezvous | None = None) -> CellOutcome:
    job = Job(cell, run_dir=str(side.run_dir), run_id=side.manifest["run_id"], data=ctx.data_path, round=round_,
              mode=mode, cpus=cpus, sync_dir=str(rendezvous.directory) if rendezvous else None)
    ctx.ui.cell_started(cell)
    reason = process.pre_skip_reason(cell)
    if reason:
        process.write_outcome(side.run_dir, job, "skipped", reason)
        outcome = CellOutcome(cell.key, "skipped", reason)
    else:
        outcome = process.run_cell(job, side.run_dir, side.code_root, replace(ctx.watch, rendezvous=rendezvous))
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
            failed: set[str] = set()  # skipped or failed in round 0: more processes will not help
            together: list[Callable[[], CellOutcome]] = []  # memory-only processes of CPU cells
            for r in range(rounds.full + extra_mem):  # round-robin: every cell once, then again
                mode = "full" if r < rounds.full else "memory"
                for i, cell in enumerate(cells):
                    for side in order(r + i):
                        if cell.key in failed or results.cell_path(side.run_dir, cell.key, r, mode).exists():
                            ui.advance(1)  # done before (--resume) or not worth repeating
                            continue
                        if mode == "memory" and cell.device == "cpu" and rounds.memory_jobs > 1:
                            together.append(lambda s=side, c=cell, r_=r: _one(s, c, r_, "memory", ctx))
                            continue
                        out = _one(side, cell, r, mode, ctx)
                        if r == 0 and out.status != "ok":
                            failed.add(cell.key)
            _pooled(together, rounds.memory_jobs, ctx)
        else:
            for cell in cells:
                t0 = time.monotonic()
                r = 0
                while True:
                    if rounds.duet_cpus and cell.device == "cpu":
                        outs = _duet(order(r), rounds.duet_cpus, cell, r, ctx, rounds.handshake)
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
          ctx: RunContext, synchronised: bool = False) -> list[CellOutcome]:
    """One round with both sides' processes at once, sides[i] pinned to cpu_sets[i]. The caller
    swaps the sides' order every round, so each side runs on each CPU set equally often.
    `synchronised`: the sides wait for each other before every timed training repeat."""
    with contextlib.ExitStack() as stack:
        rendezvous = None
        if synchronised:
            sync_dir = owned.make(SYNC_PREFIX)  # owned: a check killed mid-round leaves it to the next to remove
            stack.callback(owned.remove, sync_dir)
            rendezvous = handshake.Rendezvous(sync_dir, len(sides))
        return _duet_round(sides, cpu_sets, cell, round_, ctx, rendezvous)


SYNC_PREFIX = "lstm-bench-sync-"


def prune_stale() -> list[Path]:
    """Remove the duet handshake directories of checks whose process died; the ones removed."""
    gone = owned.stale(SYNC_PREFIX)
    for path in gone:
        owned.remove(path)
    return gone


def _duet_round(sides: tuple[Side, ...], cpu_sets: tuple[tuple[int, ...], ...], cell: Cell, round_: int,
                ctx: RunContext, rendezvous: handshake.Rendezvous | None) -> list[CellOutcome]:
    def side(i: int) -> CellOutcome:
        try:
            return _one(sides[i], cell, round_, "full", ctx, cpu_sets[i], rendezvous)
        finally:
            if rendezvous is not None:
                rendezvous.leave()  # ended, however (skipped, crashed): the other side waits no more

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
    """End of a run, however it ended: the manifest says complete or interrupted."""
    ui.stop()
    process.close_warm_parents()  # their imports are of this run's code and environment
    for side in sides:
        side.manifest.update(status=status, finished_utc=envinfo.utc_now())
        try:
            results.write_manifest(side.run_dir, side.manifest)
        except OSError:
            if status != "failed":
                raise
            # The disk that failed the run cannot take the manifest either: the error in flight
            # says so, and the manifest's "running" without a lock holder reads as a dead run.
        # Workers' staging directories are emptied as records are filed; an empty parent
        # left behind is clutter. A non-empty one (a worker killed mid-write) stays.
        with contextlib.suppress(OSError):
            (side.run_dir / "staging").rmdir()
