"""Counts for zoo cells at a reduced batch: what a counts check of each cell costs, whether its two
counted steps agree (the self-check), and whether a change of 1% of the step's compute reads as
~1% in the count.

A benchmark of the harness itself, run by hand; never a timed test. Each pair is two counts
processes at once, one per CPU, as `check --counts` runs them (bench.counts.count, the same code):
side A this checkout, side B the same code with real extra compute in every training step
(LSTM_BENCH_FAULT=work:MODEL:N, one N x N float32 matmul), N chosen so that the matmul's 2 N^3
FLOPs are --pct % of the counted step's analytic FLOPs (bench.analytic: the same fraction of the
step's compute at every batch, which is what a change to the step's kernels is). Each process is
appended to OUT/cells.jsonl.

  python benchmarks/counts/cells.py --out results/counts-cells torch:lstm512:8 torch:cnn_tutorial:16
  python benchmarks/counts/cells.py --report results/counts-cells
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench import analytic, counts  # noqa: E402
from bench.decide import compare  # noqa: E402
from bench.runner.plan import Selection, plan  # noqa: E402
from bench.runner.side import Side  # noqa: E402


def the_cell(framework: str, model: str, batch: int):
    (c,) = plan(Selection(frameworks=(framework,), models=(model,), devices=("cpu",), profile="ci",
                          batch_sizes=(batch,), threads=1))
    return c


def matmul_n(cell, pct: float) -> int:
    """N whose N x N matmul (2 N^3 FLOPs) is pct % of the step's analytic training FLOPs."""
    step_flops = analytic.cost(cell.model).train_flops_per_sample * cell.train.batch_size
    return max(1, round((pct / 100 * step_flops / 2) ** (1 / 3)))


def pair(spec: str, out: Path, args: argparse.Namespace) -> None:
    framework, model, batch = spec.split(":")
    cell = the_cell(framework, model, int(batch))
    n = matmul_n(cell, args.pct)
    cpus = counts.pair_cpus()
    sides = (Side(code_root=ROOT, cpu=cpus[0]),
             Side(code_root=ROOT, cpu=cpus[1], env=(("LSTM_BENCH_FAULT", f"work:{model}:{n}"),)))
    got: list[dict] = [{}, {}]
    tag = f"{framework}-{model}-b{batch}-{int(time.time())}"

    def one(i: int) -> None:
        got[i] = counts.count(cell, sides[i], out / f"{tag}-{'ab'[i]}", args.timeout_s, warmup=args.warmup,
                              counted=args.counted)

    t0 = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out / "cells.jsonl", "a") as f:
        for side, g in zip("AB", got):
            f.write(json.dumps({"spec": spec, "cell": cell.key, "side": side, "pct": 0 if side == "A" else args.pct,
                                "matmul_n": None if side == "A" else n, "warmup": args.warmup,
                                "counted": args.counted, "t_start": t0, "pair_wall_s": time.time() - t0, **g}) + "\n")
    for side in "ab":  # the dumps are large; the figures are in cells.jsonl
        for p in (out / f"{tag}-{side}").glob("callgrind.out.*"):
            p.unlink()
    a, b = got
    if a.get("status") == b.get("status") == "ok":
        print(f"{spec}: A {a['instructions_per_step']:,.0f} B {b['instructions_per_step']:,.0f} "
              f"(+{100 * (b['instructions_per_step'] / a['instructions_per_step'] - 1):.3f}% for {args.pct}% of the "
              f"FLOPs, N={n}); walls {a['wall_s']:.0f} s / {b['wall_s']:.0f} s", flush=True)
    else:
        print(f"{spec}: A {a.get('status')} {a.get('reason', '')} / B {b.get('status')} {b.get('reason', '')}",
              flush=True)


def spread_pct(steps: list[float]) -> float:
    return 100 * (max(steps) - min(steps)) / statistics.mean(steps)


def _proc(row: dict) -> dict:
    return {"key": "c", "round": 0, "mode": "full", "status": "ok", "device": "cpu", "threads": 1,
            "counts": {"instructions_per_step": row["instructions_per_step"],
                       "instructions_by_step": row["instructions_by_step"]}}


def verdict(base: dict, head: dict) -> str:
    """The check's own decision (bench.decide.compare, the counts rule at its default floor)."""
    cmp = compare.compare([_proc(base)], [_proc(head)], paired=True, gate=("counts",))
    (f,) = [f for f in cmp.findings if f.rule == "counts"]
    return str(f.verdict) + (" (self-check fired)" if "not deterministic" in f.why else "")


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines() if line.strip()]
    by_pair: dict[tuple[str, float], dict[str, dict]] = {}
    for r in rows:
        by_pair.setdefault((r["spec"], r["t_start"]), {})[r["side"]] = r
    print("| cell (counted batch) | A instructions/step | A steps differ | B steps differ | injected (FLOPs) | "
          "read as | check's verdict | pair wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for (spec, _), sides in sorted(by_pair.items(), key=lambda kv: kv[0][1]):
        a, b = sides.get("A", {}), sides.get("B", {})
        if a.get("status") != "ok" or b.get("status") != "ok":
            print(f"| {spec} | {a.get('status')} | | | | | {a.get('wall_s', 0):.0f} / {b.get('wall_s', 0):.0f} |")
            continue
        read = 100 * (b["instructions_per_step"] / a["instructions_per_step"] - 1)
        print(f"| {spec} | {a['instructions_per_step']:,.0f} | {spread_pct(a['instructions_by_step']):.4f}% | "
              f"{spread_pct(b['instructions_by_step']):.4f}% | {b['pct']}% (N={b['matmul_n']}) | +{read:.3f}% | "
              f"{verdict(a, b)} | {a['pair_wall_s']:.0f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="*", help="FRAMEWORK:MODEL:BATCH, one pair each, in order")
    p.add_argument("--out", required=True)
    p.add_argument("--report", action="store_true", help="print the table of OUT/cells.jsonl and exit")
    p.add_argument("--pct", type=float, default=1.0, help="side B's extra work, %% of the step's FLOPs (default 1)")
    p.add_argument("--warmup", type=int, default=counts.WARMUP_STEPS)
    p.add_argument("--counted", type=int, default=counts.COUNTED_STEPS)
    p.add_argument("--timeout-s", type=float, default=600)
    args = p.parse_args()
    out = Path(args.out)
    if args.report:
        report(out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for spec in args.specs:
        pair(spec, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
