"""`check --counts --against REF` and `run --counts`: instructions per training step under
valgrind (bench.counts), measured beside or instead of the clock.

check --counts: per cell one counts process of REF's code and one of this checkout's, at the same
time (one per CPU), each filed as round 0 of its side's run; then the usual comparison, with the
`counts` rule (a deterministic figure, compared directly against its floor) as the gate.
run --counts: after the run's cells, one counts process per ok cell, its figure added to the
cell's first record (so `compare`, `check BASE HEAD` and `export` carry it).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import counts, envinfo
from ..runner.plan import plan
from ..records.record import Status
from ..records.run import Run
from ..runner.side import Side
from ..spec import Cell
from . import ab, selection
from .ui import console as make_console
from .usage import UsageError

EXIT_NOTHING_JUDGED = 3  # as check's inconclusive: nothing was decided


class NothingCounted(Exception):
    """Every cell of a counts check was skipped: the one line that says why."""


def add_counts_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--counts", action="store_true",
                   help=f"{what}: instructions per training step under valgrind callgrind (deterministic to "
                        f"~0.05%%; needs valgrind and gcc: {counts.INSTALL_HINT}); CPU cells, one thread; "
                        "see docs/counts.md")
    p.add_argument("--counts-budget-s", type=float, default=counts.BUDGET_S,
                   help=f"with --counts: a cell whose counts process is estimated to take longer is counted at a "
                        f"smaller batch that fits (check), or skipped (run, or check --counts-full-batch) (default "
                        f"{counts.BUDGET_S:.0f} s; torch lstm128 b128 takes 3-6 min, by the host and its hour)")
    if what.startswith("instead"):  # check: the reduced batch is compared with itself on both sides
        p.add_argument("--counts-full-batch", action="store_true",
                       help="with --counts: count every cell at its own batch, skipping those past the budget, "
                            f"instead of halving the batch (to {counts.MIN_COUNTED_BATCH} at least) until it fits")


def _budget(args: argparse.Namespace) -> float:
    if args.counts_budget_s <= 0:
        raise UsageError("--counts-budget-s must be > 0")
    return args.counts_budget_s


def _require_tools() -> None:
    reason = counts.unavailable_reason()
    if reason is None:
        try:
            counts.shim_path()
        except counts.CountsUnavailable as e:
            reason = str(e)
    if reason:
        raise NothingCounted(f"counts skipped: {reason}")


def run_against(args: argparse.Namespace) -> tuple[str, str]:
    """check --counts --against REF: count each cell with REF's code and this checkout's, both at
    once; returns the two run directories. Raises NothingCounted when no cell could be counted."""
    if not args.against:
        raise UsageError("check --counts needs --against GIT_REF (or compare two runs made with run --counts)")
    if args.base or args.head:
        raise UsageError("check: give either BASE HEAD or --against REF, not both")
    if args.calibrate:
        raise UsageError("check --counts needs no calibration: counts are compared directly (docs/counts.md)")
    if args.threads > 1:
        raise UsageError("check --counts runs one thread per process (valgrind serializes threads): "
                         "give --threads 1 or leave it out")
    args.threads = 1
    budget_s = _budget(args)
    sel = selection.from_args(args)
    cells = plan(sel)
    ab.rules(args)  # a bad --fail-on / --gate is said before anything runs
    console = make_console(stderr=args.format == "json")
    _require_tools()
    with ab.worktree(args.against) as tree, ab.sides(args, sel, cells, tree, ("base", "head"), args.against) as sides:
        cpus = counts.pair_cpus()
        console.print(f"check --counts --against {args.against}: {len(cells)} cell(s), base and head each in one "
                      f"process under valgrind callgrind, side by side"
                      + (f" (CPU {cpus[0]} and {cpus[1]})" if cpus[0] is not None else "")
                      + f", {counts.COUNTED_STEPS} step(s) counted after {counts.WARMUP_STEPS} uninstrumented")
        timeout = ab.timeout_s(args, sel)
        counted = 0
        reduce = not getattr(args, "counts_full_batch", False)
        for cell in cells:
            reason = counts.skip_reason(cell, budget_s, reduce)
            if reason:
                console.print(f"{cell.key}: skipped: {reason}", markup=False)
                continue
            full = cell
            cell = (counts.fit_batch(cell, budget_s) or cell) if reduce else cell  # skip_reason: it fits
            smaller = "" if cell is full else \
                (f", at batch {cell.train.batch_size}: batch {full.train.batch_size} is estimated at "
                 f"{counts.estimate_s(full) / 60:.0f} min")
            console.print(f"{cell.key}: counting (estimated {counts.estimate_s(cell) / 60:.1f} min{smaller})",
                          markup=False)
            pinned = tuple(dataclasses.replace(s, cpu=c) for s, c in zip(sides, cpus))
            pair = counts.count_pair(cell, pinned, tuple(s.run.counts_dir(cell.key) for s in sides), timeout)
            for side, got in zip(sides, pair):
                side.run.file(counts.counts_record(cell, side.run.run_id, got), 0, "full")
                console.print(f"  {side.name}: {_line(got)}", markup=False)
            counted += all(g.get("status") == "ok" for g in pair)
        for side in sides:
            side.run.counted(counts.COUNTED_STEPS, counts.WARMUP_STEPS)
    if not counted:
        raise NothingCounted("counts: no cell was counted on both sides (see the lines above)")
    if not args.gate:
        args.gate = "counts"
    return str(sides[0].run_dir), str(sides[1].run_dir)


def _line(got: dict[str, Any]) -> str:
    if got.get("status") != "ok":
        return f"{got.get('status')}: {got.get('reason')}"
    steps = got.get("instructions_by_step") or []
    agree = ""
    if len(steps) > 1:
        spread_pct = 100 * (max(steps) - min(steps)) / (sum(steps) / len(steps))
        agree = f"; its {len(steps)} steps differ by {spread_pct:.4f}%"
    return (f"{got['instructions_per_step'] / 1e6:,.1f} M instructions per step ({got['wall_s']:.0f} s, "
            f"kernel {got['kernel']}, CPU features seen: {' '.join(got['cpu_features_seen'])}{agree})")


def add_to_run(run: Run, cells: list[Cell], args: argparse.Namespace, console: Any,
               data_path: str | None) -> None:
    """run --counts: count each cell whose first record is ok, and add the figure to that record
    (a skipped or failed count is kept there too, with its reason)."""
    budget_s = _budget(args)
    try:
        _require_tools()
    except NothingCounted as e:
        console.print(str(e), markup=False)
        return
    for cell in cells:
        rec = run.record(cell.key)
        if rec is None or rec.get("status") != Status.OK:
            continue
        reason = counts.skip_reason(cell, budget_s)
        if reason:
            console.print(f"{cell.key}: counts skipped: {reason}", markup=False)
            got: dict[str, Any] = {"status": "skipped", "reason": reason}
        else:
            console.print(f"{cell.key}: counting under valgrind (estimated {counts.estimate_s(cell) / 60:.1f} min)",
                          markup=False)
            got = counts.count(cell, Side(code_root=envinfo.REPO_ROOT), run.counts_dir(cell.key),
                               args.timeout or 4 * budget_s, data_path)
            console.print(f"  {_line(got)}", markup=False)
        run.file({**rec, "counts": got}, 0, "full", tuple(rec.get("cpus") or ()))


def check_flags(args: argparse.Namespace) -> None:
    """run --counts: the budget flag is checked before any cell runs."""
    if getattr(args, "counts", False):
        _budget(args)
