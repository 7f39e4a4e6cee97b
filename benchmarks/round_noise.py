"""Where a check round's noise comes from, and which process settings make it smaller.

A benchmark of the machine, run by hand (never a test). `bench check` judges the per-round log
ratio head/base of per-process medians, so its power is set by that ratio's spread. This script
runs A/A checks (`check --against HEAD`: the same commit on both sides) of the check's default
cell (torch lstm128, `ci` profile, side by side) with a fixed number of rounds, under one process
setting at a time, the settings interleaved pass by pass in a seeded order so drift on the machine
hits each alike, and then takes each setting's round spread apart:

  within    the repeats inside one process (sd of log repeat values about the process's median),
            and what they alone put into a process median (median of R repeats)
  process   the spread of per-process medians (each side), and what is left of it once the
            within part is taken out: the between-process part
  pairing   the correlation of the two sides' medians in one round (what side by side cancels)
  side/cpu  the mean log ratio head/base (an A/A bias) and the mean difference cpu 0 - cpu 1
  round     the sd of the round's log ratio (what the check reads), with a chi-square 95% interval,
            and that sd scaled to a fixed budget (sd x sqrt(round seconds / 10 s)): settings that
            lengthen a round buy fewer rounds

Settings (each changes one thing against `baseline`, for both sides):
  baseline  the check as shipped (alternate rounds since they were adopted; before, side by side)
  side-by-side  base and head at once, each on its own CPUs (the design before alternate rounds)
  alt-t1    alternate rounds at one thread per process (both processes on every CPU)
  norand    address-space randomisation off (setarch -R; inherited by every worker)
  hashseed  PYTHONHASHSEED=0
  malloc    glibc malloc thresholds fixed (no dynamic mmap threshold, no trimming): large
            tensors stay in the heap instead of being mmapped and faulted in each step
  thp       torch's transparent-huge-page allocation (THP_MEM_ALLOC_ENABLE=1; THP is madvise here)
  repeats   12 timed repeats instead of 6 (a longer process)
  warmup    10 warm-up steps instead of 3
  fork      each process forked from a warm parent that has imported torch (--start fork): no
            import per round, and one address layout per parent

  python benchmarks/round_noise.py run --out /tmp/rn --passes 3 --rounds 12
  python benchmarks/round_noise.py report /tmp/rn > table.md
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
CELL = ["-f", "torch", "-m", "lstm128"]
METRIC = "train_samples_per_s"
MALLOC = ("glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:"
          "glibc.malloc.top_pad=67108864")


def settings() -> dict[str, tuple[list[str], dict[str, str], list[str]]]:
    """name -> (command prefix, environment additions, extra check arguments)."""
    return {
        "baseline": ([], {}, []),
        "side-by-side": ([], {}, ["--side-by-side"]),
        "alt-t1": ([], {}, ["--threads", "1"]),
        "norand": (["setarch", os.uname().machine, "-R"], {}, []),
        "hashseed": ([], {"PYTHONHASHSEED": "0"}, []),
        "malloc": ([], {"GLIBC_TUNABLES": MALLOC}, []),
        "thp": ([], {"THP_MEM_ALLOC_ENABLE": "1"}, []),
        "repeats": ([], {}, ["--repeats", "12", "--steps", "123"]),
        "warmup": ([], {}, ["--warmup", "10", "--steps", "70"]),
        "fork": ([], {}, ["--start", "fork"]),
    }


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = settings()
    names = args.settings.split(",") if args.settings else list(table)
    rng = random.Random(args.seed)
    log = out / "checks.jsonl"
    start = len(log.read_text().splitlines()) if log.exists() else 0
    for p in range(args.passes):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            prefix, env, extra = table[name]
            rdir = out / f"{name}-{start + p:02d}"
            cmd = [*prefix, sys.executable, "-m", "bench", "check", "--against", "HEAD", *CELL,
                   "--rounds", str(args.rounds), "--max-rounds", str(args.rounds), "--budget-s", "100000",
                   "--results-dir", str(rdir), "--format", "json", "--quiet", *extra]
            t0 = time.time()
            p_ = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **env), capture_output=True, text=True)
            wall = time.time() - t0
            row = {"setting": name, "pass": start + p, "dir": str(rdir), "exit": p_.returncode, "wall_s": wall}
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"pass {start + p} {name}: exit {p_.returncode}, {wall:.0f} s", file=sys.stderr)
            if p_.returncode == 2:
                print(p_.stderr[-2000:], file=sys.stderr)
    return 0


def _records(run_dir: Path) -> dict[int, dict[str, Any]]:
    out = {}
    for f in (run_dir / "cells").glob("*.json"):
        rec = json.loads(f.read_text())
        if rec.get("status") == "ok" and rec.get("mode") == "full":
            out[int(rec["round"])] = rec
    return out


def _busy(rec: dict[str, Any]) -> bool:
    return bool(((rec.get("contention") or {}).get("timed") or {}).get("busy"))


def _sd_ci(xs: list[float]) -> tuple[float, float, float]:
    n = len(xs)
    s = statistics.stdev(xs)
    lo = s * math.sqrt((n - 1) / sps.chi2.ppf(0.975, n - 1))
    hi = s * math.sqrt((n - 1) / sps.chi2.ppf(0.025, n - 1))
    return s, lo, hi


def _boot_sd_ratio(a: list[float], b: list[float], draws: int = 4000) -> tuple[float, float]:
    """95% percentile-bootstrap interval of sd(a) / sd(b) over rounds resampled in pairs (a and b
    are two readings of the same rounds, so the ratio is paired)."""
    rng = random.Random(0)
    n, ratios = len(a), []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        sb = statistics.stdev([b[i] for i in idx])
        if sb > 0:
            ratios.append(statistics.stdev([a[i] for i in idx]) / sb)
    ratios.sort()
    return ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]


def analyse(out: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(x) for x in (out / "checks.jsonl").read_text().splitlines()]
    got: dict[str, dict[str, Any]] = {}
    for row in rows:
        g = got.setdefault(row["setting"], {"ratios": [], "base": [], "head": [], "within": [], "rho_pairs": [],
                                            "cpu": {}, "round_s": [], "busy": 0, "slope": [], "best": []})
        dirs = sorted(Path(row["dir"]).glob("*-base")), sorted(Path(row["dir"]).glob("*-head"))
        if not dirs[0] or not dirs[1]:
            continue
        base, head = _records(dirs[0][0]), _records(dirs[1][0])
        for r in sorted(set(base) & set(head)):
            b, h = base[r], head[r]
            if _busy(b) or _busy(h):
                g["busy"] += 1
                continue
            lb = math.log(b["metrics"][METRIC]["median"])
            lh = math.log(h["metrics"][METRIC]["median"])
            g["ratios"].append(lh - lb)
            # the same round read from each process's fastest repeat (its highest samples/s)
            g["best"].append(math.log(max(h["metrics"][METRIC]["values"]) / max(b["metrics"][METRIC]["values"])))
            g["base"].append(lb)
            g["head"].append(lh)
            g["round_s"].append(max(b["process_wall_s"], h["process_wall_s"]))
            for rec, lm in ((b, lb), (h, lh)):
                vals = [math.log(v) for v in rec["metrics"][METRIC]["values"]]
                g["within"].append((vals, lm))
                g["cpu"].setdefault(tuple(rec["cpus"]), []).append(lm)
                xs = range(len(vals))
                g["slope"].append(sps.linregress(list(xs), vals).slope)
    return got


def report(args: argparse.Namespace) -> int:
    got = analyse(Path(args.out))
    ref = got.get("baseline")
    print("| setting | rounds | round sd (95% CI) | read from the fastest repeat: sd, its ratio to the median's (95% CI) | var ratio to baseline (95% CI) | sd at 10 s/round | "
          "process sd base / head | within: repeat sd, its part of a median | between-process sd | "
          "pairing rho | A/A mean | cpu0 - cpu1 | drift per repeat | round s | busy rounds left out |")
    print("|---|---:|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, g in got.items():
        xs = g["ratios"]
        if len(xs) < 3:
            continue
        s, lo, hi = _sd_ci(xs)
        if ref and name != "baseline" and len(ref["ratios"]) > 2:
            f = s ** 2 / statistics.variance(ref["ratios"])
            d1, d2 = len(xs) - 1, len(ref["ratios"]) - 1
            vr = f"{f:.2f} ({f / sps.f.ppf(0.975, d1, d2):.2f}..{f / sps.f.ppf(0.025, d1, d2):.2f})"
        else:
            vr = "-"
        round_s = statistics.median(g["round_s"])
        reps = [len(v) for v, _ in g["within"]]
        dev = [x - m for v, m in g["within"] for x in v]
        w_sd = math.sqrt(statistics.fmean([d * d for d in dev]))
        # a median of R values from a normal has sd ~ 1.2533 sigma / sqrt(R)
        w_part = 1.2533 * w_sd / math.sqrt(statistics.median(reps))
        sb, sh = statistics.stdev(g["base"]), statistics.stdev(g["head"])
        proc = math.sqrt((sb ** 2 + sh ** 2) / 2)
        between = math.sqrt(max(proc ** 2 - w_part ** 2, 0.0))
        rho = statistics.correlation(g["base"], g["head"])
        mean = statistics.fmean(xs)
        se = statistics.stdev(xs) / math.sqrt(len(xs))
        cpus = sorted(g["cpu"])
        cpu_d = (statistics.fmean(g["cpu"][cpus[0]]) - statistics.fmean(g["cpu"][cpus[1]])) if len(cpus) == 2 else math.nan
        sbest = statistics.stdev(g["best"])
        r_lo, r_hi = _boot_sd_ratio(g["best"], xs)
        print(f"| {name} | {len(xs)} | {100 * s:.1f}% ({100 * lo:.1f}..{100 * hi:.1f}) | "
              f"{100 * sbest:.1f}%, {sbest / s:.2f} ({r_lo:.2f}..{r_hi:.2f}) | {vr} | "
              f"{100 * s * math.sqrt(round_s / 10):.1f}% | {100 * sb:.1f}% / {100 * sh:.1f}% | "
              f"{100 * w_sd:.1f}%, {100 * w_part:.1f}% | {100 * between:.1f}% | {rho:+.2f} | "
              f"{100 * mean:+.1f}% +-{196 * se:.1f} | {100 * cpu_d:+.1f}% | "
              f"{100 * statistics.fmean(g['slope']):+.2f}% | {round_s:.1f} | {g['busy']} |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--passes", type=int, default=1)
    r.add_argument("--rounds", type=int, default=12)
    r.add_argument("--settings", default="")
    r.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
