"""What did splitting the LSTM gates with jnp.split (instead of four slices) change in JAX's step?

  python benchmarks/xla/jax_gate_split_ab.py [--processes 6] [--rounds 8] [--model lstm128]

The gradient of four slices of the (B, 4H) pre-activation is four zero-padded (B, 4H) buffers
added up, in the backward scan body at every time step; the gradient of a split is one
concatenate. Each process builds the harness's JAX trainer twice, one traced with the old
sliced cell and one with the current split cell, and times them interleaved A B B A ... on the
same staged batches. The process is the unit: the ratio split / sliced of its two medians is
one paired sample, and the 95% interval is over processes (bench.overhead.process_ratio_ci).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def sliced_cell(cell: str, zx, zh, h, c):
    """impls.jax_impl._cell for an LSTM before cc06f12: the gates as four slices."""
    import jax
    import jax.numpy as jnp

    z = zx + zh
    H = z.shape[-1] // 4
    i, f = jax.nn.sigmoid(z[:, :H]), jax.nn.sigmoid(z[:, H:2 * H])
    g, o = jnp.tanh(z[:, 2 * H:3 * H]), jax.nn.sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return o * jnp.tanh(c), c


def one_process(model: str, rounds: int, steps: int) -> dict[str, list[float]]:
    from bench import data
    from bench.spec import TrainSpec, get_model
    from bench.worker import timed_window
    from impls import jax_impl as J

    m = get_model(model)
    tr = TrainSpec(batch_size=128, steps=1000)
    ds = data.load()
    batches = [ds.train_batch(tr.seed, s, 128) for s in range(steps)]
    split_cell = J._cell
    built = {}
    for name, fn in (("sliced", sliced_cell), ("split", split_cell)):
        J._cell = fn  # read when the step is traced: trace it now, under this cell
        t = J.JaxTrainer(m, tr, "cpu", "fp32", "default", 0)
        staged = [t.stage(x, y) for x, y in batches]
        timed_window(t, staged, 1, 3, t.train_step)  # trace + compile
        built[name] = (t, staged)
    J._cell = split_cell
    out: dict[str, list[float]] = {"sliced": [], "split": []}
    for r in range(rounds):
        for name in (("sliced", "split") if r % 2 == 0 else ("split", "sliced")):
            t, staged = built[name]
            rep_s, _, _ = timed_window(t, staged, 1, len(staged), t.train_step)
            out[name].append(128 * len(staged) / rep_s[0])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=6)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--model", default="lstm128", choices=("lstm128", "lstm512", "bilstm512", "lstm3x256"),
                   help="an LSTM (the sliced cell is the LSTM's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("@ab " + json.dumps(one_process(args.model, args.rounds, args.steps)), flush=True)
        return 0
    import numpy as np

    from bench import overhead, registry

    env = {**os.environ, **registry.framework_env("jax", args.threads, "cpu")}  # before jax starts
    rows = []
    for i in range(args.processes):
        proc = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--rounds",
                               str(args.rounds), "--steps", str(args.steps)], env=env, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@ab ")), None)
        if proc.returncode != 0 or line is None:
            print(f"process {i + 1} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(line[4:]))
        r = rows[-1]
        print(f"process {i + 1}/{args.processes}: sliced {np.median(r['sliced']):,.0f}, split {np.median(r['split']):,.0f} "
              f"samples/s ({np.median(r['split']) / np.median(r['sliced']):.3f}x)", flush=True)
    e = overhead.process_ratio_ci(rows, head_key="split", base_key="sliced")  # per-process medians, paired
    print(f"jax {args.model} b128, {args.threads} threads: split / sliced {e.ratio:.3f} "
          f"(95% CI {e.lo:.3f}..{e.hi:.3f}) over {len(rows)} processes x {args.rounds} rounds x {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
