"""Does a duet round read the whole of a slowdown? Side by side (with and without the handshake)
against one after the other, on the same injected changes, interleaved in time.

A benchmark of the harness itself (issue 26, item 5), run by hand and published; never a test.

collect: git worktrees of a commit: the base, and copies whose torch training step does k extra
  256x256 torch.mm (benchmarks/check_power.py's injection, k calibrated here for each level's
  share of the lstm128 b128 step). Then `bench check --against BASE` batches of fixed rounds,
  cycling the designs inside each level so every design sees the same hour of the machine:
    sync    side by side, each timed repeat started together (the default since the handshake)
    nosync  side by side, --no-handshake (the design measured on 2026-12-01)
    seq     --sequential: base and head one after the other, each process alone on the machine
  Every round goes to DIR/pool.jsonl: level, design, both sides' throughput and repeats, and in
  side-by-side rounds how far apart the two sides' timed repeats started.

report: per level and design, the slowdown a round reads (head step time / base step time, the
  mean of per-round log ratios with its 95% t interval), as a share of the calibrated size of the
  injected work (k x one matmul / one step, each timed alone in one process: a model that assumes
  the matmuls add their own time), and each side-by-side design's reading as a share of the
  one-after-the-other reading (95% bootstrap interval over rounds of both).

  python benchmarks/duet_designs.py collect --out DIR --minutes 30 --levels 10,20
  python benchmarks/duet_designs.py report DIR [DIR ...] [--md FILE]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_power  # noqa: E402  (the injection, calibration and rounds of the power benchmark)
from bench.runner import gitref  # noqa: E402

ROOT = check_power.ROOT
DESIGNS = check_power.DESIGNS


def _start_gap_ms(b: dict, h: dict) -> float | None:
    sb, sh = (r.get("duet", {}).get("repeat_start_unix") for r in (b, h))
    if not sb or not sh or len(sb) != len(sh):
        return None
    return float(np.median([abs(x - y) for x, y in zip(sb, sh)]) * 1000)


def collect(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    commit = check_power.git("rev-parse", args.commit)
    levels = [int(x) for x in args.levels.split(",")]
    designs = args.designs.split(",")
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        print(f"error: unknown design(s) {unknown}; known: {', '.join(DESIGNS)}", file=sys.stderr)
        return 2
    with gitref.worktrees({level: commit for level in [0, *levels]}) as trees:
        step_ms, mm_ms = check_power.calibrate(trees[0], args.threads)
        ks = {lvl: max(1, round(lvl / 100 * step_ms / mm_ms)) for lvl in levels}
        for lvl, k in ks.items():
            check_power.inject(trees[lvl], k)
        meta = {"commit": commit, "step_ms": step_ms, "matmul_ms": mm_ms, "k": ks, "cell": check_power.CELL,
                "rounds_per_batch": args.rounds, "threads": args.threads, "designs": designs,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
        print(f"calibrated: step {step_ms:.2f} ms, one matmul {mm_ms:.3f} ms -> k {ks}", flush=True)
        deadline = time.monotonic() + 60 * args.minutes
        batch = 0
        while time.monotonic() < deadline:
            level = levels[(batch // len(designs)) % len(levels)]
            design = designs[batch % len(designs)]
            rd = out / "runs" / f"b{batch:04d}-l{level}-{design}"
            t0 = time.monotonic()
            p, b, h = check_power.check_batch(trees[level], commit, rd, args.rounds, args.threads, DESIGNS[design])
            wall = time.monotonic() - t0
            if p.returncode not in (0, 1, 3):
                print(f"batch {batch} {design} {level}%: exit {p.returncode}: {p.stderr.strip()[-300:]}", flush=True)
                batch += 1
                continue
            with open(out / "pool.jsonl", "a") as f:
                for r in sorted(set(b) & set(h)):
                    if b[r]["status"] != "ok" or h[r]["status"] != "ok":
                        continue
                    f.write(json.dumps({
                        "level": level, "design": design, "batch": batch, "round": r, "round_wall_s": wall / args.rounds,
                        **check_power.measured(b[r], h[r]),
                        "synchronised": bool(h[r].get("duet", {}).get("synchronised")),
                        "start_gap_ms": _start_gap_ms(b[r], h[r]),
                    }) + "\n")
            print(f"batch {batch} {design} {level}%: {wall:.0f} s, exit {p.returncode}", flush=True)
            shutil.rmtree(rd, ignore_errors=True)
            batch += 1
    return 0


def _slowdown(rows: list[dict]) -> np.ndarray:
    """Per-round log(head step time / base step time) = log(base throughput / head throughput)."""
    return np.log([r["base"] / r["head"] for r in rows])


def _t_interval(x: np.ndarray) -> tuple[float, float, float]:
    from scipy import stats

    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


def _share(x: np.ndarray, ref: np.ndarray, rng: np.random.Generator, n: int = 4000) -> tuple[float, float, float]:
    """(mean slowdown of x) / (mean slowdown of ref) on the ratio scale minus one, with a 95%
    bootstrap interval (rounds resampled within each design)."""
    def share(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.expm1(a.mean()) / np.expm1(b.mean()))

    boots = [share(rng.choice(x, len(x)), rng.choice(ref, len(ref))) for _ in range(n)]
    return share(x, ref), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def _load(d: Path) -> tuple[dict, list[dict]] | None:
    if not (d / "pool.jsonl").is_file() or not (d / "meta.json").is_file():
        print(f"error: {d}: no pool.jsonl and meta.json (a directory written by `collect --out`)", file=sys.stderr)
        return None
    return (json.loads((d / "meta.json").read_text()),
            [json.loads(ln) for ln in (d / "pool.jsonl").read_text().splitlines() if ln.strip()])


def _shares_over(pairs: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> tuple[float, float, float]:
    """The mean over (run, level) pairs of a design's reading as a share of one-after-the-other's,
    with a 95% bootstrap interval (rounds resampled within each design, run and level)."""
    boots = [np.mean([np.expm1(rng.choice(x, len(x)).mean()) / np.expm1(rng.choice(ref, len(ref)).mean())
                      for x, ref in pairs]) for _ in range(4000)]
    point = float(np.mean([np.expm1(x.mean()) / np.expm1(ref.mean()) for x, ref in pairs]))
    return point, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def _design_pairs(quiet: list[dict], des: str) -> list[tuple[np.ndarray, np.ndarray]]:
    levels = sorted({r["level"] for r in quiet})
    pairs = [(_slowdown([r for r in quiet if r["level"] == lv and r["design"] == des]),
              _slowdown([r for r in quiet if r["level"] == lv and r["design"] == "seq"])) for lv in levels]
    return [] if any(len(x) < 2 or len(ref) < 2 for x, ref in pairs) else pairs


def report(args: argparse.Namespace) -> int:
    loaded = [_load(Path(d)) for d in args.dirs]
    if any(x is None for x in loaded):
        return 2
    rng = np.random.default_rng(0)
    lines: list[str] = []
    for i, (meta, rows) in enumerate(loaded):
        if len(loaded) > 1:
            lines += [f"### Run {i + 1} ({args.dirs[i]})", ""]
        lines += _run_section(meta, rows, rng) + [""]
    if len(loaded) > 1:  # the decision over every run: each (run, level) a pair of its own
        lines.append(f"### All {len(loaded)} runs together")
        for des in [x for x in loaded[0][0]["designs"] if x != "seq"]:
            pairs = [p for meta, rows in loaded for p in _design_pairs([r for r in rows if not r["busy"]], des)]
            if pairs:
                point, lo, hi = _shares_over(pairs, rng)
                lines.append(f"\n{des}: share of the one-after-the-other reading, mean over {len(pairs)} run x level "
                             f"pairs: {point:.2f} (95% bootstrap {lo:.2f}..{hi:.2f})")
    return check_power.emit(lines, args.md)


def _run_section(meta: dict, rows: list[dict], rng: np.random.Generator) -> list[str]:
    quiet = [r for r in rows if not r["busy"]]
    pct = lambda v: f"{100 * np.expm1(v):+.1f}%"  # noqa: E731
    lines = [f"Commit {meta['commit'][:10]}, started {meta['started_utc']}, torch lstm128 b128 ci, "
             f"{meta['threads']} thread(s) per process, {meta['rounds_per_batch']} rounds per check batch; "
             f"{len(rows)} rounds, {len(rows) - len(quiet)} marked busy by the contention guard and left out.", "",
             "| injected (calibrated alone) | design | rounds | s per round | slowdown read (95% CI) | sd per round "
             "| share of the calibrated size (95% CI) | share of one-after-the-other (95% CI) | start gap, median |",
             "|---|---|---:|---:|---|---:|---|---|---:|"]
    for level in sorted({r["level"] for r in quiet}):
        k = meta["k"][str(level)]
        alone = k * meta["matmul_ms"] / meta["step_ms"]
        by = {des: [r for r in quiet if r["level"] == level and r["design"] == des] for des in meta["designs"]}
        ref = _slowdown(by["seq"]) if by.get("seq") else None
        for des, rs in by.items():
            if not rs:
                continue
            x = _slowdown(rs)
            m, lo, hi = _t_interval(x)
            share = "-"
            if des != "seq" and ref is not None and len(ref) > 1:
                s, slo, shi = _share(x, ref, rng)
                share = f"{s:.2f} ({slo:.2f}..{shi:.2f})"
            gaps = [r["start_gap_ms"] for r in rs if r["start_gap_ms"] is not None]
            of_alone = f"{np.expm1(m) / alone:.2f} ({np.expm1(lo) / alone:.2f}..{np.expm1(hi) / alone:.2f})"
            lines.append(f"| {level}% ({k} matmuls = {100 * alone:.1f}% of a step) | {des} | {len(rs)} "
                         f"| {np.median([r['round_wall_s'] for r in rs]):.1f} | {pct(m)} ({pct(lo)}..{pct(hi)}) "
                         f"| {100 * x.std(ddof=1) if len(x) > 1 else float('nan'):.1f}% | {of_alone} | {share} "
                         f"| {f'{np.median(gaps):.1f} ms' if gaps else '-'} |")
    # The decision the issue asks for, read off both levels at once: the mean over levels of each
    # side-by-side design's share of the one-after-the-other reading (bootstrap over rounds).
    levels = sorted({r["level"] for r in quiet})
    for des in [x for x in meta["designs"] if x != "seq"]:
        pairs = _design_pairs(quiet, des)
        if pairs:
            point, lo, hi = _shares_over(pairs, rng)
            lines.append(f"\n{des}: share of the one-after-the-other reading, mean over levels "
                         f"{', '.join(f'{lv}%' for lv in levels)}: {point:.2f} (95% bootstrap {lo:.2f}..{hi:.2f})")
    # The handshake's own effect: synchronised minus unsynchronised side-by-side readings (log
    # points; Welch's t interval per level, and the mean over levels with its normal interval).
    if {"sync", "nosync"} <= set(meta["designs"]):
        from scipy import stats

        diffs = []
        for lv in levels:
            a, b = (_slowdown([r for r in quiet if r["level"] == lv and r["design"] == des]) for des in ("sync", "nosync"))
            if len(a) > 1 and len(b) > 1:
                se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
                ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
                diffs.append((float(a.mean() - b.mean()), se))
                lines.append(f"\nsync - nosync at {lv}%: {100 * (a.mean() - b.mean()):+.1f} log points "
                             f"(95% CI {100 * ci.low:+.1f}..{100 * ci.high:+.1f})")
        if len(diffs) > 1:
            m = float(np.mean([d for d, _ in diffs]))
            se = float(np.sqrt(sum(e ** 2 for _, e in diffs))) / len(diffs)
            lines.append(f"sync - nosync, mean over levels: {100 * m:+.1f} log points "
                         f"(95% CI {100 * (m - 1.96 * se):+.1f}..{100 * (m + 1.96 * se):+.1f})")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = check_power.collect_parser(sub, minutes=30, threads=1)
    c.add_argument("--levels", default="10,20", help="injected slowdowns in %%, cycled")
    c.add_argument("--designs", default="sync,nosync,seq", help=f"cycled inside each level; of {', '.join(DESIGNS)}")
    c.set_defaults(func=collect)
    check_power.report_parser(sub, report, several=True)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
