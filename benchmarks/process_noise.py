"""How alike are fresh processes of the same training step, under different thread settings?

A benchmark of the machine, run by hand (never a test). `bench check` judges per-process medians,
so what limits it is the spread *between* processes, not between repeats inside one. This script
runs a bare torch LSTM training step (lstm128 shape, batch 128, Adam; no harness code) in fresh
processes, the variants interleaved so that drift on the machine hits each alike:

  plain   all cores (torch's default)
  norand  all cores, address-space randomisation off (setarch -R)
  pinned  all cores, OMP_PROC_BIND=close OMP_PLACES=cores
  spare   every core but one (what `bench check --sequential` uses by default)

Each process prints 6 repeats of 10 steps after 5 warm-up steps; the report gives, per variant,
the per-process medians, their sd in log space (the between-process noise) and the median
within-process range.

  python benchmarks/process_noise.py --processes 8
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure  # noqa: E402  (imports no framework)

# A bare torch lstm128 training step (batch 128, Adam), after `torch.set_num_threads`: `step()`.
# benchmarks/alternate_probe.py drives the same step.
TORCH_LSTM128_STEP = """
torch.manual_seed(0)
class M(torch.nn.Module):
    def __init__(s):
        super().__init__(); s.l = torch.nn.LSTM(28, 128, batch_first=True); s.o = torch.nn.Linear(128, 10)
    def forward(s, x):
        y, _ = s.l(x); return s.o(y[:, -1])
m = M(); opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.rand(128, 28, 28); y = torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
"""

STEP = """
import json, os, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
""" + TORCH_LSTM128_STEP + """
for _ in range(5): step()
reps = []
for _ in range(6):
    t = time.perf_counter()
    for _ in range(10): step()
    reps.append((time.perf_counter() - t) / 10 * 1e3)
print(json.dumps(reps))
"""


def variants() -> dict[str, tuple[list[str], dict[str, str], int]]:
    n = measure.cpu_threads_default()
    out = {"plain": ([], {}, n)}
    if shutil.which("setarch"):
        out["norand"] = (["setarch", os.uname().machine, "-R"], {}, n)
    out["pinned"] = ([], {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}, n)
    out["spare"] = ([], {}, measure.check_threads_default())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=8, help="fresh processes per variant (default 8)")
    args = ap.parse_args()
    vs = variants()
    got: dict[str, list[list[float]]] = {v: [] for v in vs}
    for i in range(args.processes):
        for name, (prefix, env, threads) in vs.items():
            p = subprocess.run([*prefix, sys.executable, "-c", STEP, str(threads)], capture_output=True, text=True,
                               env=dict(os.environ, **env, OMP_NUM_THREADS=str(threads)), check=True)
            got[name].append(json.loads(p.stdout))
            print(f"{i + 1}/{args.processes} {name}: {statistics.median(got[name][-1]):.2f} ms", file=sys.stderr)
    print(f"| variant | threads | per-process median step ms | between-process sd (log) | "
          f"within-process range (median) |\n|---|---:|---|---:|---:|")
    for name, reps in got.items():
        meds = [statistics.median(r) for r in reps]
        sd = statistics.stdev([math.log(m) for m in meds])
        within = statistics.median([(max(r) - min(r)) / statistics.median(r) for r in reps])
        print(f"| {name} | {vs[name][2]} | {', '.join(f'{m:.1f}' for m in meds)} | {100 * sd:.1f}% | "
              f"{100 * within:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
