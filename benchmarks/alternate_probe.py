"""Does alternating base and head repeat by repeat on one CPU cancel a noisy host's interference
better than running them side by side on two CPUs?

A benchmark of the machine, run by hand (never a test), with no harness code: two fresh processes
of the same torch training step (lstm128 shape, batch 128, Adam, 1 thread; an A/A pair), driven
through pipes by this script, in rounds of three designs interleaved:

  duet       one process per CPU, each repeat started together (the check's synchronised duet)
  alternate  both processes on one CPU, repeat R of one then repeat R of the other (ABBA order:
             A first on even repeats, B first on odd), the waiting one blocked on a pipe read (no
             CPU); a round reads the median over repeats of log(tA_R / tB_R)
  alternate-all  as alternate, each process on every CPU with as many threads
  "(pair of medians)"  an alternate design's repeats read as the check reads a duet round: log of
             the ratio of the two processes' median repeat

Each process does 3 warm-up steps, then 12 repeats of 5 steps. Prints each design's per-round sd of
the log ratio with a chi-square 95% interval, and the seconds a round took.

  python benchmarks/alternate_probe.py --rounds 20
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time

from scipy import stats as sps

from process_noise import TORCH_LSTM128_STEP  # the same bare step (this script's directory is on sys.path)

CHILD = r"""
import os, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
""" + TORCH_LSTM128_STEP + r"""
for _ in range(3): step()
for r in range(int(sys.argv[1])):
    print(f"ready {r}", flush=True)
    sys.stdin.buffer.read(1)  # blocks: no CPU while the other side is timed
    t = time.perf_counter()
    for _ in range(int(sys.argv[2])): step()
    print(f"done {r} {(time.perf_counter() - t) * 1e3:.4f}", flush=True)
"""


def _child(cpus: set[int], repeats: int, steps: int) -> subprocess.Popen:
    threads = str(len(cpus))
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(repeats), str(steps), threads], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS=threads))
    os.sched_setaffinity(p.pid, cpus)
    return p


def _expect(p: subprocess.Popen, word: str, r: int) -> float:
    parts = p.stdout.readline().split()
    assert parts[:2] == [word, str(r)], parts
    return float(parts[2]) if len(parts) > 2 else 0.0


def _go(p: subprocess.Popen) -> None:
    p.stdin.write("g")
    p.stdin.flush()


def one_round(design: str, repeats: int, steps: int) -> tuple[list[float], list[float]]:
    every = set(os.sched_getaffinity(0))
    cpus = {"duet": ({0}, {1}), "alternate": ({0}, {0}), "alternate-all": (every, every)}[design]
    a, b = _child(cpus[0], repeats, steps), _child(cpus[1], repeats, steps)
    ta, tb = [], []
    for r in range(repeats):
        _expect(a, "ready", r)
        _expect(b, "ready", r)
        if design == "duet":
            _go(a), _go(b)
            ta.append(_expect(a, "done", r))
            tb.append(_expect(b, "done", r))
        else:
            first, second = (a, b) if r % 2 == 0 else (b, a)
            _go(first)
            t1 = _expect(first, "done", r)
            _go(second)
            t2 = _expect(second, "done", r)
            (ta if first is a else tb).append(t1)
            (tb if first is a else ta).append(t2)
    for p in (a, b):
        p.stdin.close()
        p.wait()
    return ta, tb


def _sd_ci(xs: list[float]) -> str:
    n, s = len(xs), statistics.stdev(xs)
    lo = s * math.sqrt((n - 1) / sps.chi2.ppf(0.975, n - 1))
    hi = s * math.sqrt((n - 1) / sps.chi2.ppf(0.025, n - 1))
    return f"{100 * s:.1f}% (95% CI {100 * lo:.1f}..{100 * hi:.1f}), n={n}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--designs", default="duet,alternate", help="of duet, alternate, alternate-all")
    args = ap.parse_args()
    designs = args.designs.split(",")
    got: dict[str, list[float]] = {d: [] for d in designs}
    secs: dict[str, list[float]] = {d: [] for d in designs}
    for i in range(args.rounds):
        for design in (designs if i % 2 == 0 else designs[::-1]):
            t0 = time.perf_counter()
            ta, tb = one_round(design, args.repeats, args.steps)
            secs[design].append(time.perf_counter() - t0)
            if design == "duet":
                got["duet"].append(math.log(statistics.median(ta) / statistics.median(tb)))
            else:
                got[design].append(statistics.median(math.log(x / y) for x, y in zip(ta, tb)))
                got.setdefault(design + " (pair of medians)", []).append(
                    math.log(statistics.median(ta) / statistics.median(tb)))
            print(f"round {i} {design}: A {statistics.median(ta):.1f} ms B {statistics.median(tb):.1f} ms",
                  file=sys.stderr)
    for design, xs in got.items():
        s = secs[design.split(" ")[0]]
        print(f"{design:10s} per-round sd of log ratio: {_sd_ci(xs)}; mean {100 * statistics.fmean(xs):+.2f}%; "
              f"round {statistics.median(s):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
