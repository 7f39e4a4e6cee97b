"""`overhead`: the harness's timed step against a bare hand-written loop of the same model, in
several processes per framework, the ratio with its interval (bench.overhead measures)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import measure, registry
from .selection import check_names, split_values
from .ui import console as make_console
from .usage import UsageError

OVERHEAD_MODELS = ("lstm128", "lstm512", "lstm3x256")  # the models bench/overhead.py has bare loops for


def cmd_overhead(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .. import overhead

    fws = split_values(args.framework) or tuple(registry.FRAMEWORKS)
    check_names(fws, list(registry.FRAMEWORKS), "framework")
    if args.model not in OVERHEAD_MODELS:
        raise UsageError(f"overhead covers {', '.join(OVERHEAD_MODELS)} (bare loops exist for those), not {args.model!r}")
    for fw in fws:  # the bare loops are fixed code: TF's is XLA, so `--variant xla` compares like with like
        registry.check_variant(fw, args.variant)
    if args.batch_size <= 0 or args.rounds <= 0 or args.steps <= 0 or args.processes < 2:
        raise UsageError("--batch-size, --rounds and --steps must be > 0, --processes >= 2 "
                         "(the interval is over processes)")
    threads = args.threads or measure.cpu_threads_default()
    console = make_console()
    console.print(f"harness ({args.variant}) vs bare loop: {args.model} b{args.batch_size}, {threads} threads, "
                  f"{args.processes} processes per framework, each {args.rounds} interleaved rounds x {args.steps} steps")

    def progress(fw: str, i: int, n: int) -> None:
        console.print(f"  {fw}: process {i + 1}/{n}", highlight=False)

    setup = overhead.Setup(args.model, args.batch_size, threads, args.rounds, args.steps, args.variant)
    res = overhead.run_all(fws, setup, Path(args.results_dir), processes=args.processes, progress=progress)
    t = Table(header_style="bold")
    for c in ("framework", "harness samples/s", "bare loop samples/s", "harness / bare (95% CI)",
              f">= {overhead.TARGET_RATIO}?", "harness / own step (95% CI)"):
        t.add_column(c, justify="left" if c == "framework" else "right")

    def ci(e: dict) -> str:
        return f"{e['ratio']:.3f} ({e['lo']:.3f}..{e['hi']:.3f})"

    for r in res:
        if "verdict" not in r:
            from rich.markup import escape

            t.add_row(r["framework"], "-", "-", escape((r.get("skipped") or r.get("failed", ""))[:100]), "-", "-")
            continue
        h, b = (measure.summarize([measure.summarize(p[k]).median for p in r["processes"]])
                for k in ("harness_samples_per_s", "bare_samples_per_s"))
        t.add_row(r["framework"], f"{h.median:,.0f} ({h.min:,.0f}..{h.max:,.0f})",
                  f"{b.median:,.0f} ({b.min:,.0f}..{b.max:,.0f})", ci(r["harness_over_bare"]), r["verdict"],
                  ci(r["harness_over_own_step"]))
    console.print(t)
    console.print("samples/s: median (min..max) of the per-process medians; ratios: paired over processes (each "
                  "process's median of its rounds), t interval. harness / bare compares with a hand-written loop "
                  "(implementation choices included); harness / own step isolates the timing machinery (the same "
                  "step function in a plain loop, an A/A comparison of the loop around it)")
    return 0


def add_parser(sub: Any) -> None:
    o = sub.add_parser("overhead", help="harness timing vs a bare hand-written loop, side by side (CPU)")
    o.add_argument("--framework", "-f", action="append",
                   help="torch, tf, jax (repeatable or comma-separated; default: all three, a missing one skipped)")
    o.add_argument("--model", "-m", default="lstm128", metavar="{" + ",".join(OVERHEAD_MODELS) + "}",
                   help="the model both loops train (default lstm128; bare loops exist for these three)")
    o.add_argument("--batch-size", "-b", type=int, default=128, help="samples per training step (default 128)")
    o.add_argument("--threads", type=int, default=0, help="CPU threads for every framework (default: all cores)")
    # --repeats, not --rounds: across subcommands a round is a fresh process (run --rounds, check's
    # rounds); here it was the A B / B A repeats inside one process. --rounds stays as an alias.
    o.add_argument("--repeats", "--rounds", dest="rounds", type=int, default=6, metavar="N",
                   help="interleaved repeats per process (A B, B A, ...; default 6; --rounds is the old name)")
    o.add_argument("--steps", type=int, default=40, help="steps per timed window (default 40)")
    o.add_argument("--processes", type=int, default=5,
                   help="fresh processes per framework: the unit of the interval (default 5, at least 2)")
    o.add_argument("--variant", default="default", help="the harness variant to time (default: default; the bare "
                   "loops are fixed: torch eager, TF tf.function(jit_compile=True), JAX jit)")
    o.set_defaults(func=cmd_overhead)
