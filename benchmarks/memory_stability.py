"""Is the RNN-vs-CNN memory verdict a measurement? Compare independent runs of the same code.

  python benchmarks/memory_stability.py RUN1 RUN2 RUN3 [--md OUT.md]

For each cell measured ok in every run: the tensor-level figure of each run and its largest
relative difference (target: within 2%), the RSS growth of each run (median over that run's
processes) and its spread; then whether the verdict lines are identical across the runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.decide import claim  # noqa: E402
from bench.records import results
from bench.records.record import MB, Record, Status, cell_label  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--md")
    args = p.parse_args()
    runs = [results.read_records(results.resolve_run(r, Path(args.results_dir))) for r in args.runs]
    names = [Path(r).name for r in args.runs]
    keys = [r["key"] for r in runs[0] if r.get("status") == Status.OK]
    by_run = [{r["key"]: r for r in recs} for recs in runs]
    lines = [f"Runs: {', '.join(names)}", "",
             "| cell | tensor-level MB per run | max difference | x floor | RSS growth MB per run (median of its processes) "
             "| RSS max/min |", "|---|---|---:|---:|---|---:|"]
    worst = 0.0
    for k in keys:
        recs = [b.get(k) for b in by_run]
        if any(r is None or r.get("status") != Status.OK for r in recs):
            continue
        t = [Record(r).tensor_peak_bytes for r in recs]
        rss = [Record(r).rss_delta_train_bytes for r in recs]
        diff = (max(t) - min(t)) / min(t) if all(t) else None
        worst = max(worst, diff or 0.0)
        fl = Record(recs[0]).memory_over_floor
        lines.append(f"| {cell_label(recs[0])} | {' / '.join(f'{v / MB:,.2f}' for v in t) if all(t) else '-'} | "
                     f"{'-' if diff is None else f'{100 * diff:.2f}%'} | {'-' if fl is None else f'{fl:.2f}x'} | "
                     f"{' / '.join(f'{v / MB:,.0f}' for v in rss) if all(rss) else '-'} | "
                     f"{f'{max(rss) / min(rss):.2f}x' if all(rss) else '-'} |")
    verdicts = [claim.verdict_lines(recs) for recs in runs]
    same = all(v == verdicts[0] for v in verdicts)
    lines += ["", f"Largest run-to-run difference of a tensor-level figure: **{100 * worst:.2f}%** (target 2%).",
              f"Verdict lines identical across the {len(runs)} runs: **{'yes' if same else 'NO'}**.", ""]
    lines += ["```"] + verdicts[0] + ["```"]
    if not same:
        for n, v in zip(names, verdicts):
            lines += ["", f"{n}:", "```"] + v + ["```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    return 0 if same and worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
