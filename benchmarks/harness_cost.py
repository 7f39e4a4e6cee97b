"""What the harness itself costs, before and after a change, on one machine in one session
(issue 25, item 3): `run --all` (quick), a `check` round, and the README's test command, each
timed from git worktrees of two commits, interleaved A B B A so that the host's drift by the hour
(2x between hours on the development VM) falls on both sides alike.

A benchmark of the harness, run by hand and published (never a test).

collect: per repetition, each measure once per side, the side order alternating (A B, then B A):
  run    `run --all -q` into a scratch results directory; its wall time, the estimate it printed,
         the claim's verdict lines and each cell's tensor-level memory (read back with this
         checkout's bench.decide.claim, so both sides are judged by one reader);
  check  `check --against HEAD -f torch -m lstm128` of R1 and then R2 fixed rounds (default 2 and
         8): seconds per round = (wall(R2) - wall(R1)) / (R2 - R1), the fixed start-up apart;
  suite  `python -m pytest -q` in the worktree: the README's test command without the install.
  Every measurement is appended to DIR/cost.jsonl as it ends (a crash loses one); a later collect
  into the same DIR adds to it.

report: per measure and side, each measurement and the median; after/before as a ratio of
  medians with the range over the repetitions' own ratios; for `run`, whether the verdict lines
  and the tensor-level memory were identical on both sides; the targets (run <= 40%, check round
  <= 40%, suite <= 60%) met or not.

  python benchmarks/harness_cost.py collect --before 3a176ea --after HEAD --out DIR --reps 2
  python benchmarks/harness_cost.py collect ... --after-flags "--start fork"   # flags for `after`'s run/check
  python benchmarks/harness_cost.py collect ... --variant fork="--start fork"  # a third side: `after` with flags

A --variant side is the after commit run with its own flags, for run and check only (the suite takes
no flags, so it would repeat `after`). Each side keeps one results directory over the repetitions
(DIR/results-SIDE), as a user's results/ does: repetition 0's estimate has no record of this
machine to learn from, later ones have the earlier repetitions' (issue 25, item 4).
  python benchmarks/harness_cost.py report DIR [--md FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_power  # noqa: E402  (the benchmarks' shared report plumbing)
from bench.decide import claim  # noqa: E402  (imports no framework)
from bench.runner import gitref  # noqa: E402
from bench import envinfo  # noqa: E402
from bench.records import pool, results  # noqa: E402

MEASURES = ("run", "check", "suite")
TARGETS = {"run": 0.40, "check": 0.40, "suite": 0.60}  # after/before, issue 25 item 3


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def timed(cmd: list[str], tree: Path) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True)
    return time.monotonic() - t0, p


def measure_run(tree: Path, flags: list[str], rd: Path, run_id: str) -> dict:
    """One `run --all -q` into results directory rd, which keeps earlier repetitions' records (the
    estimate learns from them) and this run's, for reading back afterwards."""
    wall, p = timed([sys.executable, "-m", "bench", "--results-dir", str(rd), "run", "--all", "-q",
                     "--run-id", run_id, *flags], tree)
    # the closing line ("took 12.3 min, estimated 10.2 min"): the opening one rounds to whole minutes
    est = re.search(r"took [0-9.]+ min, estimated ([0-9.]+) min", p.stdout)
    row = {"wall_s": wall, "exit": p.returncode, "estimated_min": float(est.group(1)) if est else None,
           "estimate_basis": next((ln.strip() for ln in p.stdout.splitlines() if "cells, estimated" in ln), None)}
    try:
        rounds = results.read_rounds(rd / run_id)  # read once: the process times and the pooled records
        row["processes"] = process_times(rounds)
        recs = pool.pool_records(rounds)
        row["verdict_lines"] = claim.verdict_lines(recs)
        # the figure the tables show; the report compares only it
        row["tensor"] = {r.get("key", "?"): {"tensor_peak_bytes": (r.get("memory") or {}).get("tensor_peak_bytes")}
                         for r in recs}
    except Exception as e:  # an older side's records this reader cannot read: said, not fatal
        row["read_error"] = f"{type(e).__name__}: {e}"
    return row


def process_times(rounds: list[dict]) -> dict:
    """Where a run's time went, from its process records: summed seconds of the timed (full) and the
    memory-only processes, and of what lay outside the worker (interpreter start, imports the worker
    did not time, exit: process_wall_s - wall_s). Older records have no process_wall_s: then None."""
    out: dict = {}
    for mode in ("full", "memory"):
        rs = [r for r in rounds if r.get("mode", "full") == mode]
        has_pw = all(r.get("process_wall_s") is not None for r in rs)
        out[mode] = {"n": len(rs), "worker_s": sum(r.get("wall_s") or 0.0 for r in rs),
                     "process_s": sum(r["process_wall_s"] for r in rs) if has_pw and rs else None,
                     "start": sorted({str(r.get("start", "spawn")) for r in rs})}
    return out


def measure_check(tree: Path, flags: list[str], r1: int, r2: int) -> dict:
    walls = {}
    for r in (r1, r2):
        rd = Path(tempfile.mkdtemp(prefix="cost-check-"))
        try:
            walls[r], p = timed([sys.executable, "-m", "bench", "--results-dir", str(rd), "check", "--against", "HEAD",
                                 "-f", "torch", "-m", "lstm128", "--rounds", str(r), "--max-rounds", str(r),
                                 "--budget-s", "100000", "--gate", "train", "-q", *flags], tree)
            if p.returncode not in (0, 1, 3):
                return {"wall_s": None, "exit": p.returncode, "stderr": p.stderr[-300:]}
        finally:
            shutil.rmtree(rd, ignore_errors=True)
    per_round = (walls[r2] - walls[r1]) / (r2 - r1)
    return {"wall_s": per_round, "exit": 0, "fixed_s": walls[r1] - r1 * per_round, "walls": walls}


def measure_suite(tree: Path) -> dict:
    wall, p = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], tree)
    summary = next((ln for ln in reversed(p.stdout.splitlines()) if " in " in ln and ("passed" in ln or "failed" in ln)), "")
    return {"wall_s": wall, "exit": p.returncode, "summary": summary.strip("= ")}


def collect(args: argparse.Namespace) -> int:
    what = args.what.split(",")
    if not set(what) <= set(MEASURES):
        print(f"error: --what {args.what!r}: choose from {', '.join(MEASURES)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    commits = {"before": git("rev-parse", args.before), "after": git("rev-parse", args.after)}
    flags = {"before": shlex.split(args.before_flags), "after": shlex.split(args.after_flags)}
    for v in args.variant:
        name, _, fl = v.partition("=")
        if not name or name in flags or not fl:
            print(f"error: --variant {v!r}: NAME=FLAGS with a new name (not before/after)", file=sys.stderr)
            return 2
        commits[name], flags[name] = commits["after"], shlex.split(fl)
    prior = [json.loads(ln) for ln in (out / "cost.jsonl").read_text().splitlines()] if (out / "cost.jsonl").exists() else []
    rep0 = 1 + max((r["rep"] for r in prior), default=-1)  # a later collect into DIR goes on counting
    with gitref.worktrees({side: commits[side] for side in ("before", "after")}) as trees:
        # A --variant side runs in the after side's tree, with its own flags.
        trees.update({side: trees["after"] for side in commits if side not in trees})
        for rep in range(rep0, rep0 + args.reps):
            order = list(commits) if rep % 2 == 0 else list(commits)[::-1]
            for m in what:
                for side in order:
                    if m == "suite" and side not in ("before", "after"):
                        continue  # the suite takes no flags: a variant's would repeat `after`'s
                    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    if m == "run":
                        row = measure_run(trees[side], flags[side], out / f"results-{side}", f"rep{rep}")
                    elif m == "check":
                        row = measure_check(trees[side], flags[side], args.check_rounds[0], args.check_rounds[1])
                    else:
                        row = measure_suite(trees[side])
                    row = {"measure": m, "side": side, "rep": rep, "commit": commits[side], "flags": flags[side],
                           "started_utc": t, "load1_after": os.getloadavg()[0], "machine_id": envinfo.machine_id(),
                           "cpu_model": envinfo.cpu_model(), **row}
                    with open(out / "cost.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    w = row.get("wall_s")
                    print(f"rep {rep} {m} {side}: {f'{w:.1f} s' if w is not None else 'failed'} (exit {row['exit']})",
                          flush=True)
    return 0


def report(args: argparse.Namespace) -> int:
    path = Path(args.dir) / "cost.jsonl"
    try:
        rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    lines = ["| measure | before (s) | after (s) | after/before, medians | range over repetitions | target | met? |",
             "|---|---|---|---:|---|---:|---|"]
    sides = list(dict.fromkeys(r["side"] for r in rows if r["side"] != "before"))  # after, then variants
    for m in MEASURES:
        for side in sides:
            got = {s: {r["rep"]: r["wall_s"] for r in rows if r["measure"] == m and r["side"] == s
                       and r.get("wall_s") is not None and r["exit"] in (0, 1, 3)} for s in ("before", side)}
            if not got["before"] or not got[side]:
                continue
            flags = next((" ".join(r["flags"]) for r in rows if r["side"] == side and r["flags"]), "")
            name = f"{m}{' (per round)' if m == 'check' else ''}, {side}{f' ({flags})' if flags else ''}"
            if any(x <= 0 for v in got.values() for x in v.values()):  # R2 - R1 rounds too few for the noise
                lines.append(f"| {name} | {got['before']} | {got[side]} | - | - | <= {TARGETS[m]:.2f} | unreliable: "
                             "a non-positive time (more rounds apart: --check-rounds 2,8 or wider; an idle machine) |")
                continue
            med = {s: statistics.median(v.values()) for s, v in got.items()}
            ratio = med[side] / med["before"]
            per_rep = [got[side][k] / got["before"][k] for k in sorted(set(got["before"]) & set(got[side]))]
            fmt = lambda v: ", ".join(f"{x:.1f}" for x in v.values())  # noqa: E731
            lines.append(f"| {name} | {fmt(got['before'])} | {fmt(got[side])} | {ratio:.2f} | "
                         f"{f'{min(per_rep):.2f}..{max(per_rep):.2f}' if per_rep else '-'} | <= {TARGETS[m]:.2f} | "
                         f"{'yes' if per_rep and max(per_rep) <= TARGETS[m] else 'no'} |")
    runs = [r for r in rows if r["measure"] == "run" and "verdict_lines" in r]
    if runs:
        verdicts = {json.dumps(r["verdict_lines"]) for r in runs}
        peak = lambda r, k: (r["tensor"].get(k) or {}).get("tensor_peak_bytes")  # noqa: E731  the figure tables show
        tensors = {json.dumps({k: peak(r, k) for k in r["tensor"]}, sort_keys=True) for r in runs}
        lines += ["", f"run --all: verdict lines identical in all {len(runs)} runs: {'yes' if len(verdicts) == 1 else 'no'}; "
                  f"tensor-level memory identical: {'yes' if len(tensors) == 1 else 'no'}."]
        if len(verdicts) > 1:
            lines += [f"- {r['side']} rep {r['rep']}: {' / '.join(r['verdict_lines'])}" for r in runs]
        keys = sorted({k for r in runs for k in r["tensor"]})
        for k in keys:  # which cells moved, and by how much (TF's graph-mode peak moves between processes)
            seen = {peak(r, k) for r in runs}
            if len(seen) > 1:
                lo = min(v for v in seen if v is not None)
                lines.append(f"- tensor-level peak of {k} differs ({100 * (max(v for v in seen if v is not None) - lo) / lo:.2f}%"
                             " range): " + "; ".join(f"{r['side']} rep {r['rep']} {peak(r, k):,} B" if peak(r, k) is not None
                                                  else f"{r['side']} rep {r['rep']} none" for r in runs))
        for r in runs:
            if r.get("estimated_min"):
                lines.append(f"- {r['side']} rep {r['rep']} ({r['started_utc']}): took {r['wall_s'] / 60:.1f} min, estimated "
                             f"{r['estimated_min']:.1f} min ({100 * (r['wall_s'] / 60 - r['estimated_min']) / r['estimated_min']:+.0f}%)"
                             + (f"; {r['estimate_basis']}" if r.get("estimate_basis") else ""))
    for r in rows:  # rows collected before process_times existed: read it from the kept results directory
        kept = Path(args.dir) / f"results-{r['side']}" / f"rep{r['rep']}"
        if r["measure"] == "run" and not r.get("processes") and kept.is_dir():
            try:
                r["processes"] = process_times(results.read_rounds(kept))
            except Exception:  # noqa: BLE001 - an unreadable directory leaves that row out of this table
                pass
    machines = {(r["machine_id"], r.get("cpu_model", "?")) for r in rows if r.get("machine_id")}
    for kept in sorted(Path(args.dir).glob("results-*/rep*/cells/*.json"))[:1]:  # rows collected before they said
        env = json.loads(kept.read_text()).get("env") or {}
        machines.add((env.get("machine_id", "?"), env.get("cpu_model", "?")))
    if machines:
        lines += ["", "Machine: " + "; ".join(f"{c} (machine id {m})" for m, c in sorted(machines))
                  + (" -- more than one: compare within a machine only" if len(machines) > 1 else "")]
    timed_runs = [r for r in rows if r["measure"] == "run" and r.get("processes")]
    if timed_runs:
        lines += ["", "Where each run's time went (summed over its processes; memory-only ones run two at once):", "",
                  "| side | rep | run wall (s) | timed processes: n, worker s, process s | memory-only: n, worker s, "
                  "process s | start |", "|---|---|---:|---|---|---|"]
        f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        for r in timed_runs:
            a, m = r["processes"]["full"], r["processes"]["memory"]
            lines.append(f"| {r['side']} | {r['rep']} | {r['wall_s']:.0f} | {a['n']}, {f(a['worker_s'])}, "
                         f"{f(a['process_s'])} | {m['n']}, {f(m['worker_s'])}, {f(m['process_s'])} | "
                         f"{', '.join(sorted(set(a['start']) | set(m['start'])))} |")
    return check_power.emit(lines, args.md)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--before", required=True)
    c.add_argument("--after", default="HEAD")
    c.add_argument("--out", required=True)
    c.add_argument("--what", default=",".join(MEASURES))
    c.add_argument("--reps", type=int, default=2)
    c.add_argument("--before-flags", default="", help="extra flags for the before side's run and check")
    c.add_argument("--after-flags", default="", help="extra flags for the after side's run and check (e.g. '--start fork')")
    c.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="a further side: the after commit with these flags, for run and check (repeatable)")
    c.add_argument("--check-rounds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(2, 8))
    c.set_defaults(func=collect)
    check_power.report_parser(sub, report)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
