"""Does a worker forked from a warm parent measure what a cold one does? (issue 25, item 2)

A benchmark of the harness, run by hand (never a test). For each cell, processes started both
ways are interleaved F S S F F S S F ... (so slow drift of the machine hits both alike), each a
full measurement through the runner's own path (bench.process.run_cell), all forked children of
a cell from one warm parent (the worst case for independence). Per cell it reports:
  - train samples/s fork/spawn with its 95% interval: paired over the F/S neighbours of each
    block (bench.stats.ratio_ci), and unpaired (Welch) beside it;
  - whether the tensor-level memory figures are identical, and how the RSS figures move;
  - wall time per process for each start method (the first fork, which starts the parent, apart);
  - the lag-1 autocorrelation of consecutive processes' throughput, forked vs spawned (a parent
    that passed a speed of its own to its children would show here);
  - what other programs used of the cell's CPUs while timing (bench.contention, in each record).

  python benchmarks/warm_ab.py --framework torch --model lstm128 --profile ci --batch-size 128 --processes 10
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

from bench import envinfo, plan, process, results, stats  # noqa: E402  (imports no framework)
from bench.job import Job  # noqa: E402

PATTERN = ("fork", "spawn", "spawn", "fork")


def one(cell, start: str, run_dir: Path, i: int, timeout_s: float) -> dict:
    job = Job(cell, run_dir=str(run_dir), run_id=run_dir.name, round=i, mode="full")
    t0 = time.monotonic()
    process.run_cell(job, run_dir, envinfo.REPO_ROOT, process.Watch(timeout_s, start=start))
    wall_s = time.monotonic() - t0
    rec = results.read_json(results.cell_path(run_dir, cell.key, i, "full"), results.RECORD_SCHEMA)
    return {"start": rec.get("start"), "status": rec["status"], "wall_s": wall_s, "rec": rec}


def lag1(values: list[float]) -> float:
    if len(values) < 3:
        return float("nan")
    return float(np.corrcoef(values[:-1], values[1:])[0, 1])


def tensor_memory(rec: dict) -> dict:
    return {k: v for k, v in rec.get("memory", {}).items() if k.startswith("tensor_")}


def summarize(cell_name: str, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["status"] == "ok"]
    by = {s: [r for r in ok if r["start"] == s] for s in ("fork", "spawn")}
    rate = {s: [r["rec"]["metrics"]["train_samples_per_s"]["median"] for r in by[s]] for s in by}
    # Pairs: the fork and the spawn of each half-block (F S | S F), neighbours in time.
    pairs = []
    for b in range(0, len(runs) - 1, 2):
        two = runs[b:b + 2]
        if len(two) == 2 and all(r["status"] == "ok" for r in two) and {r["start"] for r in two} == {"fork", "spawn"}:
            f = next(r for r in two if r["start"] == "fork")
            s = next(r for r in two if r["start"] == "spawn")
            pairs.append((s["rec"]["metrics"]["train_samples_per_s"]["median"],
                          f["rec"]["metrics"]["train_samples_per_s"]["median"]))
    paired = stats.ratio_ci([p[0] for p in pairs], [p[1] for p in pairs], paired=True) if len(pairs) >= 2 else None
    unpaired = stats.ratio_ci(rate["spawn"], rate["fork"], paired=False) if all(len(v) >= 2 for v in rate.values()) \
        else None
    tmem = {s: [json.dumps(tensor_memory(r["rec"]), sort_keys=True) for r in by[s]] for s in by}
    rss = {s: {k: statistics.median([r["rec"]["memory"][k] / 1e6 for r in by[s]]) if by[s] else None
               for k in ("rss_before_model_bytes", "rss_delta_train_bytes", "rss_peak_train_bytes")} for s in by}
    forks = [r for r in runs if r["start"] == "fork"]
    return {
        "cell": cell_name,
        "processes": {s: len(by[s]) for s in by},
        "failed": [r["status"] for r in runs if r["status"] != "ok"],
        "cold_fallbacks": sum(1 for i, r in enumerate(runs) if PATTERN[i % 4] == "fork" and r["start"] != "fork"),
        "train_rate_median": {s: statistics.median(v) if v else None for s, v in rate.items()},
        "ratio_paired": paired.to_dict() if paired else None,
        "ratio_unpaired": unpaired.to_dict() if unpaired else None,
        "sd_log": {s: float(np.std(np.log(v), ddof=1)) if len(v) > 1 else None for s, v in rate.items()},
        "lag1": {s: lag1(v) for s, v in rate.items()},
        "tensor_memory_identical": len(set(tmem["fork"] + tmem["spawn"])) == 1,
        "tensor_memory": json.loads(tmem["spawn"][0]) if tmem["spawn"] else None,
        "rss_mb_median": rss,
        "wall_s_median": {"spawn": statistics.median([r["wall_s"] for r in runs if r["start"] == "spawn"]),
                          "fork_first": forks[0]["wall_s"] if forks else None,
                          "fork_rest": statistics.median([r["wall_s"] for r in forks[1:]]) if len(forks) > 1 else None},
        "foreign_cores_median": {s: statistics.median([(r["rec"].get("contention") or {}).get("timed", {}).get(
            "foreign_cores", float("nan")) for r in by[s]]) if by[s] else None for s in by},
        "loadavg_1m_max": max(((r["rec"].get("contention") or {}).get("timed") or {}).get("loadavg_1m_max", 0.0)
                              for r in ok) if ok else None,
    }


def markdown(s: dict) -> str:
    def ci(e: dict | None) -> str:
        return "n/a" if not e else f"{e['ratio']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"

    w, rss = s["wall_s_median"], s["rss_mb_median"]
    return "\n".join([
        f"### {s['cell']}",
        f"- processes: fork {s['processes']['fork']}, spawn {s['processes']['spawn']}"
        + (f"; not ok: {s['failed']}" if s["failed"] else "") + (f"; forks that fell back cold: {s['cold_fallbacks']}"
                                                                 if s["cold_fallbacks"] else ""),
        f"- train samples/s, median: fork {s['train_rate_median']['fork']:.1f}, "
        f"spawn {s['train_rate_median']['spawn']:.1f}",
        f"- fork/spawn, 95% interval: paired (F/S neighbours) {ci(s['ratio_paired'])}; "
        f"unpaired (Welch) {ci(s['ratio_unpaired'])}",
        f"- between-process sd (log): fork {s['sd_log']['fork']:.3f}, spawn {s['sd_log']['spawn']:.3f}; "
        f"lag-1 autocorrelation: fork {s['lag1']['fork']:+.2f}, spawn {s['lag1']['spawn']:+.2f}",
        f"- tensor-level memory identical: {'yes' if s['tensor_memory_identical'] else 'NO'} {s['tensor_memory']}",
        "- RSS MB (median): " + "; ".join(
            f"{st}: before model {rss[st]['rss_before_model_bytes']:.0f}, train delta "
            f"{rss[st]['rss_delta_train_bytes']:.0f}, train peak {rss[st]['rss_peak_train_bytes']:.0f}"
            for st in ("spawn", "fork")),
        f"- wall s per process (median): spawn {w['spawn']:.1f}; fork {w['fork_rest']:.1f} "
        f"(the first fork, which started the parent: {w['fork_first']:.1f})",
        f"- other programs' use of the cell's CPUs while timing (cores, median): fork "
        f"{s['foreign_cores_median']['fork']:.2f}, spawn {s['foreign_cores_median']['spawn']:.2f}; "
        f"load average (1 min) up to {s['loadavg_1m_max']:.1f}",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", "-f", action="append", default=None)
    p.add_argument("--model", "-m", action="append", default=None)
    p.add_argument("--profile", default="ci")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--processes", type=int, default=10, help="per start method and cell")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=Path("results/warm_ab.json"))
    a = p.parse_args(argv)
    sel = plan.Selection(frameworks=tuple(a.framework or ["torch"]), models=tuple(a.model or ["lstm128"]),
                         devices=("cpu",), profile=a.profile, batch_sizes=(a.batch_size,))
    summaries = []
    with tempfile.TemporaryDirectory(prefix="warm-ab-") as tmp:
        for cell in plan.plan(sel):
            run_dir = Path(tmp) / cell.key
            runs = []
            for i in range(2 * a.processes):
                runs.append(one(cell, PATTERN[i % 4], run_dir, i, a.timeout))
                print(f"{cell.framework} {cell.model.name} #{i} {runs[-1]['start']} {runs[-1]['status']} "
                      f"{runs[-1]['wall_s']:.1f}s", file=sys.stderr, flush=True)
            process.close_warm_parents()  # a fresh parent per cell
            summary = summarize(f"{cell.framework} {cell.model.name} b{cell.train.batch_size} {a.profile}", runs)
            summaries.append(summary)
            print(markdown(summary), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"argv": sys.argv, "env": envinfo.environment(0), "cells": summaries}, indent=1,
                                default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
