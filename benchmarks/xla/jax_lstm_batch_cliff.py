"""Where does JAX's lstm128 step time jump between batch 100 and 128, and what changes there?

  python benchmarks/xla/jax_lstm_batch_cliff.py [--batches 104,108,...] [--rounds 6] [--steps 20]

For each batch size: the number of loop fusions XLA:CPU's parallel task assigner split across
threads ("outer_dimension_partitions") inside the scan bodies of the compiled step, and the
harness's own training step timed in one process, interleaved A B C ... C B A round by round
so drift hits every batch size alike. Prints ms per sample (step time / batch): flat if cost
only scales with the batch, a jump where something else changes.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="100,104,108,112,116,120,124,128")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import os

    from bench import registry

    os.environ.update(registry.framework_env("jax", args.threads, "cpu"))  # as the worker sets it, before jax
    from bench import data
    from bench.spec import TrainSpec, get_model
    from impls import jax_impl

    m = get_model("lstm128")
    ds = data.load()
    runs, split = {}, {}
    for b in (int(x) for x in args.batches.split(",")):
        tr = jax_impl.build(m, TrainSpec(batch_size=b, steps=10_000), "cpu", "fp32", "default", args.threads)
        bs = [tr.stage(*ds.train_batch(0, s, b)) for s in range(args.steps)]
        hlo = tr._step.lower(tr.params, tr.opt_state, tr._key, *bs[0]).compile().as_text()
        split[b] = sum(1 for ln in hlo.splitlines()
                       if "while/body" in ln and re.search(r'outer_dimension_partitions":\["\d', ln))
        tr.train_step(bs[0])
        tr.sync()
        runs[b] = (tr, bs)
    per_sample: dict[int, list[float]] = {b: [] for b in runs}
    order = list(runs)
    for r in range(args.rounds):
        for b in (order if r % 2 == 0 else order[::-1]):
            tr, bs = runs[b]
            t0 = time.perf_counter()
            for batch in bs:
                tr.train_step(batch)
            tr.sync()
            per_sample[b].append(1e3 * (time.perf_counter() - t0) / (len(bs) * b))
    print(f"jax lstm128, {args.threads} threads, {args.rounds} interleaved rounds x {args.steps} steps")
    print("| batch | split loop fusions in scan bodies | ms per sample, median (min..max over rounds) | step ms |")
    print("|---:|---:|---:|---:|")
    for b in order:
        v = per_sample[b]
        print(f"| {b} | {split[b]} | {statistics.median(v):.4f} ({min(v):.4f}..{max(v):.4f}) | "
              f"{statistics.median(v) * b:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
