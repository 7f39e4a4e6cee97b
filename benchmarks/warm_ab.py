"""Does a worker forked from a warm parent measure what a cold one does? (issue 25, item 2)

A benchmark of the harness, run by hand (never a test).

collect: for each cell in turn (round robin, so every cell gets its share of a time budget and of
  the host's slow drift), runs a block of four processes F S S F or S F F S (alternating, so
  neither start method always goes first), each a full measurement through the runner's own path
  (bench.workers.process.run_cell), forked children from the runner's warm parents (a fresh parent every
  bench.workers.warm.REFORK_EVERY children, as in a real run). Every process is appended to
  DIR/pool.jsonl as soon as it ends, so a crash loses one process and a later collect adds to
  the pool (each listed in DIR/runs.jsonl): the +-3% interval needs ~100 pairs per cell, more
  than one session holds the machine.

report: per cell (and per run, so a second run can be read against the first):
  - train samples/s fork/spawn with its 95% interval: paired over the F/S neighbours of each
    half-block (bench.decide.stats.ratio_ci), and unpaired (Welch) beside it; pairs with a process the
    contention guard marked busy are left out, as `run` and `check` would;
  - whether the tensor-level memory figures are identical, and how the RSS figures move;
  - wall time per process for each start method (a parent's first child, which waits for the
    parent's imports, apart), and the phases (build, first step) that could explain a difference;
  - between-process sd and the lag-1 autocorrelation of consecutive processes' throughput,
    forked vs spawned (a parent that passed a speed of its own to its children would show here).

  python benchmarks/warm_ab.py collect --out results/warm_ab -f torch -f jax -m lstm128 --minutes 30
  python benchmarks/warm_ab.py report results/warm_ab --md results/published/warm.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import envinfo  # noqa: E402  (imports no framework)
from bench.runner import plan
from bench.workers import process
from bench.records import results
from bench.decide import stats
from bench.records.run import Run
from bench.workers.job import Job  # noqa: E402

BLOCKS = (("fork", "spawn", "spawn", "fork"), ("spawn", "fork", "fork", "spawn"))
STARTS = ("fork", "spawn")
RSS_KEYS = ("rss_before_model_bytes", "rss_delta_train_bytes", "rss_peak_train_bytes")


def one(cell, start: str, run_dir: Path, i: int, timeout_s: float) -> tuple[dict, float]:
    job = Job(cell, run_dir=str(run_dir), run_id=run_dir.name, round=i, mode="full")
    t0 = time.monotonic()
    process.run_cell(job, Run.bare(run_dir), envinfo.REPO_ROOT, process.Watch(timeout_s, start=start))
    wall_s = time.monotonic() - t0
    return results.read_json(results.cell_path(run_dir, cell.key, i, "full"), results.RECORD_SCHEMA), wall_s


def row(rec: dict, wall_s: float, **where) -> dict:
    """What the report needs of one process; the record itself is not kept (it is ~10 KB)."""
    m, mem = rec.get("metrics") or {}, rec.get("memory") or {}
    timed = (rec.get("contention") or {}).get("timed") or {}
    return {
        **where, "start": rec.get("start"), "status": rec["status"], "wall_s": wall_s,
        "unix": time.time(), "warm_parent": rec.get("warm_parent"),
        "train_sps": (m.get("train_samples_per_s") or {}).get("median"),
        "compile_s": m.get("compile_s"), "worker_wall_s": rec.get("wall_s"),
        "busy": bool(timed.get("busy")), "foreign_cores": timed.get("foreign_cores"),
        "loadavg_1m_max": timed.get("loadavg_1m_max"),
        "tensor": {k: v for k, v in mem.items() if k.startswith("tensor_")},
        "rss_mb": {k: mem[k] / 1e6 for k in RSS_KEYS if mem.get(k) is not None},
    }


def collect(a: argparse.Namespace) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pool, runs = out / "pool.jsonl", out / "runs.jsonl"
    run = len(runs.read_text().splitlines()) if runs.exists() else 0
    block0 = max((r["block"] for r in read_pool(pool)), default=-1) + 1 if pool.exists() else 0
    sel = plan.Selection(frameworks=tuple(a.framework or ["torch"]), models=tuple(a.model or ["lstm128"]),
                         devices=("cpu",), profile=a.profile, batch_sizes=(a.batch_size,))
    cells = list(plan.plan(sel))
    with open(runs, "a") as f:
        f.write(json.dumps({"run": run, "argv": sys.argv, "cells": [c.key for c in cells],
                            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "env": envinfo.environment(0)}, default=str) + "\n")
    deadline = time.monotonic() + 60 * a.minutes
    block = block0
    try:
        with tempfile.TemporaryDirectory(prefix="warm-ab-") as tmp:
            while time.monotonic() < deadline:
                for cell in cells:
                    if time.monotonic() >= deadline:
                        break
                    label = f"{cell.framework} {cell.model.name} b{cell.train.batch_size} {a.profile}"
                    run_dir = Path(tmp) / cell.key
                    for i, start in enumerate(BLOCKS[block % 2]):
                        rec, wall_s = one(cell, start, run_dir, 4 * block + i, a.timeout)
                        r = row(rec, wall_s, run=run, cell=label, block=block, i=i, wanted=start)
                        with open(pool, "a") as f:
                            f.write(json.dumps(r) + "\n")
                        print(f"run {run} block {block} {label} {start}->{r['start']} {r['status']} "
                              f"{wall_s:.1f}s {r['train_sps'] or 0:.0f}/s{' busy' if r['busy'] else ''}",
                              file=sys.stderr, flush=True)
                    block += 1
    finally:
        process.close_warm_parents()
    return 0


# ------------------------------------------------------------------------------------ report
def lag1(values: list[float]) -> float:
    if len(values) < 3:
        return float("nan")
    return float(np.corrcoef(values[:-1], values[1:])[0, 1])


def med(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def read_pool(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def measured(r: dict) -> bool:
    """A process that ran as asked and finished (a fork that fell back cold is not a fork)."""
    return r["status"] == "ok" and r["start"] == r["wanted"]


def paired_ratio(rows: list[dict]) -> tuple[int, stats.RatioEstimate | None]:
    """fork/spawn over the fork and the spawn of each half-block (F S | S F), neighbours in time;
    a half-block with a process that failed, fell back cold or was marked busy is left out."""
    halves: dict[tuple, list[dict]] = {}
    for r in rows:
        halves.setdefault((r["cell"], r["run"], r["block"], r["i"] // 2), []).append(r)
    pairs = []
    for two in halves.values():
        if len(two) == 2 and all(measured(r) and not r["busy"] for r in two) \
                and {r["start"] for r in two} == set(STARTS):
            s, f = sorted(two, key=lambda r: r["start"] == "fork")
            pairs.append((s["train_sps"], f["train_sps"]))
    if len(pairs) < 2:
        return len(pairs), None
    return len(pairs), stats.ratio_ci([p[0] for p in pairs], [p[1] for p in pairs], paired=True)


def interval(e: dict | None) -> str:
    return "n/a" if not e else f"{e['ratio']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"


def summarize(rows: list[dict]) -> dict:
    ok = [r for r in rows if measured(r)]
    by = {s: [r for r in ok if r["start"] == s] for s in STARTS}
    clean = {s: [r for r in by[s] if not r["busy"]] for s in STARTS}
    rate = {s: [r["train_sps"] for r in clean[s]] for s in STARTS}
    n_pairs, paired = paired_ratio(rows)
    unpaired = stats.ratio_ci(rate["spawn"], rate["fork"], paired=False) \
        if all(len(v) >= 2 for v in rate.values()) else None
    tmem = {json.dumps(r["tensor"], sort_keys=True) for r in ok}
    first = {s: [r for r in by[s] if (r["warm_parent"] or {}).get("child") == 0] for s in STARTS}
    rest = {s: [r for r in by[s] if r not in first[s]] for s in STARTS}
    # Consecutive processes of one start method, within each run, in time order.
    seq = {s: sorted(clean[s], key=lambda r: (r["run"], r["unix"])) for s in STARTS}
    return {
        "processes": {s: len(by[s]) for s in STARTS},
        "busy": sum(r["busy"] for r in ok),
        "not_ok": [r["status"] for r in rows if r["status"] != "ok"],
        "fell_back_cold": sum(1 for r in rows if r["wanted"] == "fork" and r["start"] != "fork"),
        "pairs": n_pairs,
        "train_rate_median": {s: med(rate[s]) for s in STARTS},
        "ratio_paired": paired.to_dict() if paired else None,
        "ratio_unpaired": unpaired.to_dict() if unpaired else None,
        "sd_log": {s: float(np.std(np.log(v), ddof=1)) if len(v) > 1 else float("nan") for s, v in rate.items()},
        "lag1": {s: lag1([r["train_sps"] for r in seq[s]]) for s in STARTS},
        "tensor_memory_identical": len(tmem) == 1,
        # Per start method: TF's graph-mode figure moves a little between processes whatever
        # their start (its op order varies), so "fork differs" needs spawn's own spread beside it.
        "tensor_peak_bytes": {s: sorted({r["tensor"].get("tensor_peak_bytes") for r in by[s]}, key=str)
                              for s in STARTS},
        "rss_mb_median": {s: {k: med([r["rss_mb"].get(k) for r in by[s]])
                              for k in RSS_KEYS}
                          for s in STARTS},
        "wall_s_median": {"spawn": med([r["wall_s"] for r in by["spawn"]]),
                          "fork_first": med([r["wall_s"] for r in first["fork"]]),
                          "fork_rest": med([r["wall_s"] for r in rest["fork"]])},
        "compile_s_median": {s: med([r["compile_s"] for r in by[s]]) for s in STARTS},
        "worker_wall_s_median": {s: med([r["worker_wall_s"] for r in by[s]]) for s in STARTS},
        "foreign_cores_median": {s: med([r["foreign_cores"] for r in by[s]]) for s in STARTS},
        "loadavg_1m_max": max((r["loadavg_1m_max"] or 0.0 for r in ok), default=float("nan")),
    }


def spread(peaks: list) -> str:
    """'43,226,616 B' or '15,856,705..15,864,897 B (3 values, range 0.05%)'."""
    vals = [p for p in peaks if isinstance(p, (int, float))]
    if len(vals) <= 1:
        return f"{vals[0]:,} B" if vals else "n/a"
    return f"{min(vals):,}..{max(vals):,} B ({len(vals)} values, range {100 * (max(vals) / min(vals) - 1):.2f}%)"


def markdown(name: str, s: dict) -> str:
    w, rss = s["wall_s_median"], s["rss_mb_median"]
    return "\n".join([
        f"### {name}",
        f"- processes: fork {s['processes']['fork']}, spawn {s['processes']['spawn']}; F/S pairs {s['pairs']}"
        + (f"; busy (left out of throughput) {s['busy']}" if s["busy"] else "")
        + (f"; not ok: {s['not_ok']}" if s["not_ok"] else "")
        + (f"; forks that fell back cold: {s['fell_back_cold']}" if s["fell_back_cold"] else ""),
        f"- train samples/s, median: fork {s['train_rate_median']['fork']:.1f}, "
        f"spawn {s['train_rate_median']['spawn']:.1f}",
        f"- fork/spawn, 95% interval: paired (F/S neighbours) {interval(s['ratio_paired'])}; "
        f"unpaired (Welch) {interval(s['ratio_unpaired'])}",
        f"- between-process sd (log): fork {s['sd_log']['fork']:.3f}, spawn {s['sd_log']['spawn']:.3f}; "
        f"lag-1 autocorrelation of consecutive processes: fork {s['lag1']['fork']:+.2f}, "
        f"spawn {s['lag1']['spawn']:+.2f}",
        f"- tensor-level memory identical in every process: {'yes' if s['tensor_memory_identical'] else 'no'}; "
        + "; ".join(f"{st} peaks {spread(s['tensor_peak_bytes'][st])}" for st in ("spawn", "fork")),
        "- RSS MB (median): " + "; ".join(
            f"{st}: before model {rss[st]['rss_before_model_bytes']:.0f}, train delta "
            f"{rss[st]['rss_delta_train_bytes']:.0f}, train peak {rss[st]['rss_peak_train_bytes']:.0f}"
            for st in ("spawn", "fork")),
        f"- wall s per process (median): spawn {w['spawn']:.1f}; fork {w['fork_rest']:.1f} "
        f"(a parent's first child, which waits for its imports: {w['fork_first']:.1f}); worker's own "
        f"wall s spawn {s['worker_wall_s_median']['spawn']:.2f}, fork {s['worker_wall_s_median']['fork']:.2f}; "
        f"first step s spawn {s['compile_s_median']['spawn']:.3f}, fork {s['compile_s_median']['fork']:.3f}",
        f"- other programs' use of the cell's CPUs while timing (cores, median): fork "
        f"{s['foreign_cores_median']['fork']:.2f}, spawn {s['foreign_cores_median']['spawn']:.2f}; "
        f"load average (1 min) up to {s['loadavg_1m_max']:.1f}",
    ])


def report(a: argparse.Namespace) -> int:
    pool = Path(a.dir) / "pool.jsonl"
    if not pool.is_file():
        print(f"error: {pool} not found (a directory written by `collect --out`)", file=sys.stderr)
        return 2
    rows = read_pool(pool)
    cells = sorted({r["cell"] for r in rows})
    runs = sorted({r["run"] for r in rows})
    parts, table = [], ["| cell | run | pairs | fork/spawn paired, 95% interval | within +-3%? | tensor memory |",
                        "|---|---|---|---|---|---|"]
    for cell in cells:
        for run in [*runs, None] if len(runs) > 1 else [None]:
            rs = [r for r in rows if r["cell"] == cell and (run is None or r["run"] == run)]
            if not rs:
                continue
            s = summarize(rs)
            e = s["ratio_paired"]
            inside = "n/a" if not e else ("yes" if e["lo"] >= 0.97 and e["hi"] <= 1.03 else "no")
            peaks = s["tensor_peak_bytes"]
            tensor = "identical" if s["tensor_memory_identical"] else (
                f"spawn {spread(peaks['spawn'])}, fork {spread(peaks['fork'])}")
            table.append(f"| {cell} | {'all' if run is None else run} | {s['pairs']} | "
                         + interval(e) + f" | {inside} | {tensor} |")
            if run is None:
                parts.append(markdown(cell, s))
    # Every cell's pairs together: a start-method effect common to the cells, not any one cell's.
    together = []
    for run in [*runs, None] if len(runs) > 1 else [None]:
        n, e = paired_ratio([r for r in rows if run is None or r["run"] == run])
        together.append(f"- all cells, {'all runs' if run is None else f'run {run}'}: {n} pairs, fork/spawn "
                        f"{interval(e.to_dict() if e else None)}")
    text = "\n".join(table) + "\n\n" + "\n".join(together) + "\n\n" + "\n\n".join(parts) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--minutes", type=float, default=30.0)
    c.add_argument("--framework", "-f", action="append", default=None)
    c.add_argument("--model", "-m", action="append", default=None)
    c.add_argument("--profile", default="ci")
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--timeout", type=float, default=600.0)
    c.set_defaults(func=collect)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--md")
    r.set_defaults(func=report)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
