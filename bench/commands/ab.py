"""What `check --against` and `check --calibrate` share: the rule flags, and the two sides of an
in-job A/B (run directories paired by a check id, the CPU sets of duet rounds, the cell timeout)."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

from .. import envinfo, measure
from ..runner import gitref, schedule
from ..workers import handshake, turns
from ..records import results, runlock
from ..runner.plan import Selection
from ..records.run import Run
from ..runner.side import Side
from ..spec import Cell
from .usage import UsageError


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """REF's code in a temporary worktree for the check's length (a bad REF: one line, exit 2)."""
    pruned = gitref.prune_stale() + schedule.prune_stale()
    if pruned:
        print(f"note: removed {len(pruned)} temporary director{'y' if len(pruned) == 1 else 'ies'} left by checks "
              f"whose process died: {', '.join(str(p) for p in pruned)}", file=sys.stderr)
    try:
        tree = gitref.add_worktree(ref)
    except gitref.GitError as e:
        raise UsageError(str(e)) from None
    try:
        yield tree
    finally:
        gitref.remove_worktree(tree)


def rules(args: argparse.Namespace):
    from ..decide import compare

    try:
        return compare.parse_rules(args.fail_on), compare.parse_gate(getattr(args, "gate", None))
    except compare.RuleError as e:
        raise UsageError(str(e)) from None


def confidence(args: argparse.Namespace) -> float:
    c = getattr(args, "confidence", 0.95)
    if not 0.5 <= c < 1:
        raise UsageError(f"--confidence must be in [0.5, 1), got {c}")
    return c


@contextlib.contextmanager
def sides(args: argparse.Namespace, sel: Selection, cells: list[Cell], base_root: Path, names: tuple[str, str],
          label: str, base_env: Any = None) -> Iterator[tuple[Side, ...]]:
    """Make the two sides' run directories (paired by a shared check_id) under --results-dir, each
    locked for as long as the block runs (bench.records.runlock: one runner per run). `base_env`:
    the package environment (bench.runner.envs.BuiltEnv) the base side's workers run in (check
    --base-env own), said in its manifest; None: both sides run in this interpreter."""
    run_id = schedule.new_run_id(sel.profile)
    results_dir = Path(args.results_dir)
    check_id = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as locks:
        made = []
        for name, root in zip(names, (base_root, envinfo.REPO_ROOT)):
            rid = f"{run_id}-{name}"
            results.run_dir(results_dir, rid)  # an id, whose directory lies inside the results directory
            locks.enter_context(runlock.hold(results_dir / rid))
            own = base_env if name == names[0] else None
            extra = {"envs": {"own": {"pin_hash": own.pin_hash, "pins": list(own.pins)}}} if own is not None else {}
            run = Run.create(results_dir / rid, rid, cells, sys.argv[1:], profile=sel.profile, data=None,
                             rounds={"full": args.rounds, "memory": 0}, check_id=check_id, side=name, against=label,
                             **extra)
            made.append(Side(name, root, run, own=own))
        yield tuple(made)

def choose_duet_cpus(args: argparse.Namespace, cells: list[Cell], sides: tuple[Side, ...], console: Any,
                     alternate: bool = False) -> tuple[tuple[int, ...], ...]:
    """The CPU sets of rounds that run both sides at once: for alternate rounds one set, every CPU
    this process may use, which both sides share taking turns; side by side, two disjoint sets of
    --threads each; or () (--sequential, or too few CPUs: said). Recorded in both sides' manifests."""
    if alternate:
        duet: tuple[tuple[int, ...], ...] = (tuple(sorted(os.sched_getaffinity(0))),)
    else:
        duet = () if args.sequential else schedule.duet_cpus(args.threads)
        if not duet and not args.sequential and any(c.device == "cpu" for c in cells):
            console.print(f"[yellow]note[/]: side-by-side rounds need 2 x {args.threads} CPUs and this process may "
                          f"use {measure.cpu_threads_default()}: the two sides run one after the other")
    for side in sides:
        side.run.duet(duet)
    return duet


def choose_handshake(args: argparse.Namespace, sides: tuple[Side, ...], duet: tuple[tuple[int, ...], ...],
                     console: Any) -> bool:
    """Whether duet rounds start both sides' timed repeats together (bench/workers/handshake.py): only with
    --handshake, and not where a side's code predates it (said: its rounds are then unsynchronised).
    Recorded in both sides' manifests."""
    synced = bool(duet) and getattr(args, "handshake", False)
    if synced:
        old = [s.name for s in sides if not handshake.supported(s.code_root)]
        if old:
            console.print(f"[yellow]note[/]: the {', '.join(old)} side's code predates the duet handshake: its rounds "
                          "run side by side without synchronised timed repeats")
            synced = False
    for side in sides:
        side.run.duet(duet, synced)
    return synced


def wants_alternate(args: argparse.Namespace) -> bool:
    """Whether the check asks for alternate rounds (the default): not with --sequential,
    --side-by-side or --handshake (a side-by-side design)."""
    return not (getattr(args, "sequential", False) or getattr(args, "side_by_side", False)
                or getattr(args, "handshake", False))


def choose_alternate(args: argparse.Namespace, sides: tuple[Side, ...], cells: list[Cell], console: Any) -> bool:
    """Whether rounds take turns on one CPU set (bench/workers/turns.py; the default): asked for
    (wants_alternate), a CPU cell to run, and both sides' code takes turns; a side whose code
    predates turns is said, and its rounds run side by side where the CPUs allow, else one after
    the other. Recorded in both sides' manifests."""
    alternate = wants_alternate(args) and any(c.device == "cpu" for c in cells)
    if alternate:
        old = [s.name for s in sides if not turns.supported(s.code_root)]
        if old:
            console.print(f"[yellow]note[/]: the {', '.join(old)} side's code predates alternate rounds: this check's "
                          "rounds run as that code can (side by side, or one after the other), a noisier design on "
                          "shared hosts")
            alternate = False
    for side in sides:
        side.run.duet((), design="alternate" if alternate else "side by side")
    return alternate


def duet_words(duet: tuple[tuple[int, ...], ...], synced: bool = False, alternate: bool = False) -> str:
    if alternate:
        return (f"taking turns (alternate: both on CPUs {','.join(map(str, duet[0]))}, one timed repeat of each "
                "side after the other, A B then B A; GPU cells one after the other)")
    a, b = (",".join(map(str, s)) for s in duet)
    return (f"side by side (duet: one on CPU {a}, the other on CPU {b}, swapped every round"
            + (", each timed repeat started together" if synced else "") + "; GPU cells one after the other)")


def timeout_s(args: argparse.Namespace, sel: Selection) -> float:
    return args.timeout or schedule.DEFAULT_TIMEOUT_S.get(sel.profile, 1800)
