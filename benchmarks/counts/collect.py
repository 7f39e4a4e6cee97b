"""Counts on this machine: spread between processes, power against injected work, cost per check.

A benchmark of the harness itself (issue 27), run by hand and published in
results/published/counts-cpu-2core-2026-12-02.md; never a timed test.

collect: pairs of counts processes of torch lstm128 b128 (1 thread), the two of a pair at the same
  time, one per CPU, as `check --counts` runs them (bench.counts.count_pair, the same code). Side A
  is always this checkout as it is; side B is the same code, or the same code with real extra
  compute in every training step (LSTM_BENCH_FAULT=work:lstm128:N, one NxN float32 matmul; N from
  benchmarks/counts/levels.json, calibrated under callgrind for 1%, 2% and 5% of the step's
  instructions). Levels cycle through --plan until --minutes are up; every process is appended to
  DIR/pool.jsonl with its pair, level, side and all it recorded.

report: the spread of instructions per step over the processes of identical code (side A of every
  pair and side B of the A/A pairs), and every pair judged by the check's own rule
  (bench.decide.compare, the `counts` rule: direct comparison against its floor): how many regressed per
  level. The pairs are disjoint, so the checks are independent.

one: two counts processes at once, each with its own code root, framework and model (the cost of
  a framework; a real change in a worktree), appended to DIR/other.jsonl.

  nice -n 10 python benchmarks/counts/collect.py collect --out results/counts --minutes 60
  nice -n 10 python benchmarks/counts/collect.py one --out results/counts --name cost \
      --side .:torch:cnn_small:900 --side .:tf:lstm128:420
  python benchmarks/counts/collect.py report results/counts
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench.decide import compare  # noqa: E402
from bench import counts
from bench.runner.side import Side  # noqa: E402
from bench.runner.plan import Selection, plan  # noqa: E402

LEVELS = json.loads((Path(__file__).with_name("levels.json")).read_text())  # "1" -> matmul N for +1%


def the_cell(model: str, batch: int):
    (c,) = plan(Selection(frameworks=("torch",), models=(model,), devices=("cpu",), profile="ci",
                          batch_sizes=(batch,), threads=1))
    return c


def collect(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cell = the_cell(args.model, args.batch)
    cpus = counts.pair_cpus()
    t_end = time.monotonic() + 60 * args.minutes
    plan_ = args.plan.split(",")
    start = sum(1 for _ in open(out / "pool.jsonl")) // 2 if (out / "pool.jsonl").exists() else 0
    i = start
    while time.monotonic() + args.pair_s < t_end:
        level = plan_[(i - start) % len(plan_)]
        env = () if level == "0" else (("LSTM_BENCH_FAULT", f"work:{args.model}:{LEVELS[level]}"),)
        sides = (Side(code_root=ROOT, cpu=cpus[0]), Side(code_root=ROOT, cpu=cpus[1], env=env))
        t0 = time.time()
        a, b = counts.count_pair(cell, sides, (out / f"p{i}a", out / f"p{i}b"), args.timeout_s)
        with open(out / "pool.jsonl", "a") as f:
            for side, got in (("A", a), ("B", b)):
                f.write(json.dumps({"pair": i, "level": level, "side": side, "cell": cell.key, "t_start": t0,
                                    "pair_wall_s": time.time() - t0, **got}) + "\n")
        print(f"pair {i} level {level}%: A {a.get('instructions_per_step')} B {b.get('instructions_per_step')} "
              f"({time.time() - t0:.0f} s)", flush=True)
        for side in "ab":  # the dumps are large; the figures are in pool.jsonl
            for p in (out / f"p{i}{side}").glob("callgrind.out.*"):
                p.unlink()
        i += 1
    return 0


def side_spec(text: str) -> tuple[Path, str, str, float]:
    root, framework, model, timeout_s = text.split(":")
    return Path(root), framework, model, float(timeout_s)


def one(args: argparse.Namespace) -> int:
    """Two counts processes at once, each its own code root, framework and model (the cost per
    framework, and a real change against this checkout's figure), appended to DIR/other.jsonl."""
    import threading

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpus = counts.pair_cpus()
    specs = [side_spec(s) for s in args.side]
    got: list[dict] = [{} for _ in specs]

    def run(i: int) -> None:
        root, framework, model, timeout_s = specs[i]
        (cell,) = plan(Selection(frameworks=(framework,), models=(model,), devices=("cpu",), profile="ci",
                                 batch_sizes=(args.batch,), threads=1))
        t0 = time.time()
        got[i] = {"label": args.side[i], "cell": cell.key, "t_start": t0, **counts.count(
            cell, Side(code_root=root, cpu=cpus[(i + args.first_cpu) % 2]), out / f"{args.name}-{i}", timeout_s)}
        print(f"{args.side[i]}: {got[i].get('status')} {got[i].get('instructions_per_step')} "
              f"({got[i].get('wall_s', 0):.0f} s)", flush=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out / "other.jsonl", "a") as f:
        for g in got:
            f.write(json.dumps({"name": args.name, **g}) + "\n")
    return 0


def _rec(v: float) -> dict:
    return {"key": "c", "round": 0, "mode": "full", "status": "ok", "device": "cpu", "threads": 1,
            "counts": {"instructions_per_step": v}}


def report(args: argparse.Namespace) -> int:
    rows = [json.loads(ln) for ln in open(Path(args.dir) / "pool.jsonl")]
    ok = [r for r in rows if r.get("status") == "ok"]
    print(f"{len(rows)} processes, {len(ok)} ok")
    same = [r for r in ok if r["side"] == "A" or r["level"] == "0"]
    v = [r["instructions_per_step"] for r in same]
    if v:
        med = statistics.median(v)
        print(f"identical code: {len(v)} processes, median {med / 1e6:.4f} M/step, min {min(v) / 1e6:.4f}, "
              f"max {max(v) / 1e6:.4f}, range {100 * (max(v) - min(v)) / med:.4f}%, "
              f"sd {100 * statistics.stdev(v) / med if len(v) > 1 else 0:.4f}%")
        for k in range(len(same[0].get("instructions_by_step") or [])):
            s = [r["instructions_by_step"][k] for r in same]
            print(f"  counted step {k}: median {statistics.median(s) / 1e6:.4f} M, range "
                  f"{100 * (max(s) - min(s)) / statistics.median(s):.4f}%")
    rules = compare.parse_rules(args.fail_on)
    by_pair: dict[int, dict[str, dict]] = {}
    for r in ok:
        by_pair.setdefault(r["pair"], {})[r["side"]] = r
    verdicts: dict[str, list[tuple[str, float]]] = {}
    for p, d in sorted(by_pair.items()):
        if set(d) != {"A", "B"}:
            continue
        cmp = compare.compare([_rec(d["A"]["instructions_per_step"])], [_rec(d["B"]["instructions_per_step"])],
                              rules, paired=True, gate=("counts",))
        (f,) = [f for f in cmp.findings if f.rule == "counts"]
        verdicts.setdefault(d["A"]["level"], []).append((str(f.verdict), 100 * f.change))
    for level, vs in sorted(verdicts.items(), key=lambda kv: float(kv[0])):
        changes = [c for _, c in vs]
        tally = {w: sum(x == w for x, _ in vs) for w in sorted({x for x, _ in vs})}
        print(f"level {level}%: {len(vs)} checks, {tally}, change median {statistics.median(changes):+.3f}% "
              f"(min {min(changes):+.3f}, max {max(changes):+.3f})")
    walls = [r["wall_s"] for r in ok]
    pw = sorted({r["pair"]: r["pair_wall_s"] for r in ok}.values())
    for name in ("startup_s", "warmup_s", "counted_s"):
        xs = [r[name] for r in ok]
        print(f"{name}: median {statistics.median(xs):.0f} s (min {min(xs):.0f}, max {max(xs):.0f})")
    print(f"process wall: median {statistics.median(walls):.0f} s (min {min(walls):.0f}, max {max(walls):.0f}); "
          f"pair (= one check's counting) median {statistics.median(pw):.0f} s (min {min(pw):.0f}, max {max(pw):.0f})")
    steps = [s for r in ok for s in r.get("counted_step_s") or []]
    if steps:
        first = [r["counted_step_s"][0] for r in ok]
        rest = [s for r in ok for s in r["counted_step_s"][1:]]
        print(f"counted step wall: first {statistics.median(first):.0f} s, later "
              f"{statistics.median(rest) if rest else float('nan'):.0f} s (medians)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--minutes", type=float, default=60)
    c.add_argument("--plan", default="0,1,0,2,0,5", help="levels (%% extra instructions) cycled over pairs")
    c.add_argument("--model", default="lstm128")
    c.add_argument("--batch", type=int, default=128)
    c.add_argument("--pair-s", type=float, default=300, help="a pair is started only with this much time left")
    c.add_argument("--timeout-s", type=float, default=900)
    c.set_defaults(func=collect)
    o = sub.add_parser("one")
    o.add_argument("--out", required=True)
    o.add_argument("--name", required=True)
    o.add_argument("--side", action="append", required=True, help="CODE_ROOT:FRAMEWORK:MODEL:TIMEOUT_S (two at most)")
    o.add_argument("--batch", type=int, default=128)
    o.add_argument("--first-cpu", type=int, default=0, help="the first side's CPU (0 or 1 of the pair); the next "
                                                             "side takes the other")
    o.set_defaults(func=one)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--fail-on", default=None, help="the check's floors, e.g. counts:0.5%%")
    r.set_defaults(func=report)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
