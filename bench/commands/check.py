"""`compare` and `check`: two stored result sets joined cell by cell, every metric judged with its
interval; `check` exits 0 unchanged/improved, 1 regressed, 3 inconclusive. `check --against REF`
first measures REF's code and this checkout's in rounds of fresh processes in this job."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import gitref, measure, results, schedule
from ..plan import plan
from . import ab, calibrate, selection
from .ui import RunUI, console as make_console
from .usage import UsageError


def _rounds_of(ref: str, results_dir: Path) -> tuple[list[dict], dict]:
    run_dir = results.resolve_run(ref, results_dir)
    return results.read_rounds(run_dir), results.read_manifest(run_dir)


def _comparison(args: argparse.Namespace):
    """Two stored sets, refused (exit 2) when they differ in what makes figures comparable."""
    from .. import compare

    rules, gate = ab.rules(args)
    (base, mb), (head, mh) = (_rounds_of(args.base, Path(args.results_dir)),
                              _rounds_of(args.head, Path(args.results_dir)))
    diffs = compare.differences(base, head)
    if diffs and not args.force:
        raise UsageError("the two sets are not comparable (--force to compare anyway): " + "; ".join(diffs))
    # Sets written by one `check --against` job ran back to back, round by round: pair them.
    paired = bool(mb.get("check_id")) and mb.get("check_id") == mh.get("check_id")
    return compare.compare(base, head, rules, paired=paired, gate=gate, confidence=ab.confidence(args)), diffs


def _print_comparison(cmp, console, only_changes: bool, diffs: list[str] = ()) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(header_style="bold")
    for c in ("cell", "metric", "base", "head", "processes", "change", "verdict"):
        t.add_column(c, justify="right" if c in ("base", "head", "processes") else "left", overflow="fold")
    colour = {"regressed": "red", "improved": "green", "unchanged": "", "inconclusive": "yellow", "changed": "yellow"}
    from ..compare import format_value

    # Cells from several nodes (Ray runs): grouped by node, and each says where it ran.
    several = len(set(cmp.nodes.values())) > 1
    for f in sorted(cmp.findings, key=lambda f: cmp.nodes.get(f.key, "")) if several else cmp.findings:
        if only_changes and f.verdict == "unchanged" and f.rule != "train":
            continue
        n = cmp.rounds.get(f.key, (0, 0))
        cell = f"{cmp.nodes.get(f.key, '?')}: {f.key}" if several else f.key
        t.add_row(escape(cell), f.rule + ("" if f.gated else " (advisory)"), format_value(f.rule, f.base),
                  format_value(f.rule, f.head), f"{n[0]}+{n[1]}" + (" paired" if cmp.paired else ""), escape(f.why),
                  f.verdict, style=colour.get(f.verdict, ""))
    console.print(t)
    for d in diffs:
        console.print(f"[yellow]warning (--force)[/]: {escape(d)}")
    for line in cmp.model_diffs:  # its cells cannot join: say why instead of listing them as only-in
        console.print(f"[yellow]{escape(line)}[/]")
    for label, keys in (("only in base", cmp.only_base), ("only in head", cmp.only_head),
                        ("not ok on one side", cmp.not_ok)):
        if keys:
            console.print(f"{label}: {escape(', '.join(keys))}")


def cmd_compare(args: argparse.Namespace) -> int:
    cmp, diffs = _comparison(args)
    _print_comparison(cmp, make_console(), only_changes=False, diffs=diffs)
    return 0


def _round_settles(args: argparse.Namespace, sides, rules, gate, confidence):
    """The adaptive stop rule: after each round, judge the cell on what both sides have so far."""
    from .. import compare

    def decide(cell, done: int) -> bool:
        base = [r for r in results.read_rounds(sides[0].run_dir) if r["key"] == cell.key]
        head = [r for r in results.read_rounds(sides[1].run_dir) if r["key"] == cell.key]
        return compare.settled(compare.compare(base, head, rules, paired=True, gate=gate,
                                               confidence=confidence).findings)

    return decide


def _run_against(args: argparse.Namespace) -> tuple[str, str]:
    """Run the selection with REF's code and with this checkout's in rounds of fresh processes,
    side by side (duet) or A B / B A in this job, adding rounds per cell until every gated metric is
    decided or the cell's time budget is spent; returns the two run directories."""
    if args.base or args.head:
        raise UsageError("check: give either BASE HEAD or --against REF, not both")
    sel = selection.from_args(args)
    cells = plan(sel)
    rules, gate = ab.rules(args)
    confidence = ab.confidence(args)
    if args.rounds < 2 or args.max_rounds < args.rounds or args.budget_s <= 0:
        raise UsageError("--rounds must be >= 2 (one round cannot show a spread), --max-rounds >= --rounds, "
                         "--budget-s > 0")
    console = make_console()
    try:
        tree = gitref.add_worktree(args.against)
    except gitref.GitError as e:
        raise UsageError(str(e)) from None
    try:
        sides = ab.make_sides(args, sel, cells, tree, ("base", "head"), args.against)
        duet = ab.choose_duet_cpus(args, cells, sides, console)
        console.print(f"check --against {args.against}: {len(cells)} cell(s), base and head in fresh processes, "
                      + (ab.duet_words(duet) if duet else "interleaved A B / B A")
                      + f", {args.rounds}..{args.max_rounds} rounds or {args.budget_s:.0f} s "
                      f"per cell, {args.threads} CPU thread(s) per process")
        rounds = schedule.Rounds(full=args.rounds, max_full=args.max_rounds, budget_s=args.budget_s,
                                 decide=_round_settles(args, sides, rules, gate, confidence), duet_cpus=duet)
        code = schedule.execute_sides(sides, cells, None, ab.timeout_s(args, sel), RunUI(console, quiet=args.quiet),
                                      rounds)
    finally:
        gitref.remove_worktree(tree)
    if code == 130:
        raise KeyboardInterrupt
    return str(sides[0].run_dir), str(sides[1].run_dir)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 unchanged or improved, 1 regressed, 3 inconclusive (gated metrics), 2 bad input."""
    if (args.calibrate or args.against) and not args.threads:
        args.threads = measure.check_threads_default(duet=not args.sequential)
    if args.calibrate:
        return calibrate.cmd_calibrate(args)
    if args.against:
        args.base, args.head = _run_against(args)
    elif not (args.base and args.head):
        raise UsageError("check: give BASE HEAD (run ids or directories), or --against GIT_REF with a selection")
    cmp, diffs = _comparison(args)
    console = make_console()
    _print_comparison(cmp, console, only_changes=False, diffs=diffs)
    joined = len(cmp.rounds)
    if joined == 0:
        raise UsageError("check: the two result sets have no ok cell in common (same model, recipe, threads...)")
    if args.summary_md:
        from .. import compare

        with open(args.summary_md, "a") as f:
            f.write(f"### lstm-bench check: {args.base} vs {args.head}\n\n" + compare.summary_markdown(cmp) + "\n")
    code = cmp.exit_code()
    if code == 1:
        regs = cmp.regressions
        console.print(f"[red]REGRESSED[/]: {len(regs)} gated metric(s) in {len({f.key for f in regs})} of {joined} cells")
    elif code == 3:
        inc = cmp.inconclusive
        console.print(f"[yellow]INCONCLUSIVE[/]: {len(inc)} gated metric(s) not settled within the budget "
                      f"({', '.join(sorted({f.rule for f in inc}))}); rerun with a larger --budget-s / --max-rounds")
    else:
        improved = sum(f.verdict == "improved" and f.gated for f in cmp.findings)
        console.print(f"[green]OK[/]: no gated metric regressed in {joined} cells ({improved} improved)")
    return code


def add_parsers(sub: Any) -> None:
    rules_help = ("effect floors, e.g. 'train:3%%,infer:3%%,memory:1%%,rss:10%%,accuracy:0.02' (the defaults): "
                  "regressed = the whole confidence interval is past the floor, unchanged = inside +- the floor")
    for name, func, text in (("compare", cmd_compare, "compare two runs cell by cell"),
                             ("check", cmd_check, "exit 0 unchanged/improved, 1 regressed, 3 inconclusive (for CI)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("base", nargs="?" if name == "check" else None, help="baseline run id or directory")
        c.add_argument("head", nargs="?" if name == "check" else None, help="run id or directory to judge")
        c.add_argument("--fail-on", "--floor", dest="fail_on", help=rules_help)
        c.add_argument("--gate", help="metrics that decide the exit code (default: train,memory,accuracy; "
                                      "infer and rss are reported as advisory)")
        c.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
        c.add_argument("--force", action="store_true",
                       help="compare sets that differ in machine, framework versions, threads, precision or device")
        c.set_defaults(func=func)
        if name == "check":
            c.add_argument("--against", metavar="GIT_REF",
                           help="run the selection below with GIT_REF's code and this checkout's, in rounds of fresh "
                                "processes interleaved in this job, then judge (the trustworthy mode on shared runners)")
            c.add_argument("--budget-s", type=float, default=180.0,
                           help="seconds per cell for adaptive rounds (default 180)")
            c.add_argument("--max-rounds", type=int, default=40, help="rounds per cell at most (default 40)")
            c.add_argument("--sequential", action="store_true",
                           help="run base and head one after the other (default: side by side, each pinned to "
                                "half the CPUs, when the machine has 2 x --threads CPUs)")
            c.add_argument("--calibrate", action="store_true",
                           help="A/A rounds of this checkout against itself: noise per metric and the smallest "
                                "slowdown detectable within --budget-s")
            c.add_argument("--summary-md", metavar="FILE", help="append the verdict table as markdown to FILE "
                                                                "(e.g. $GITHUB_STEP_SUMMARY)")
            selection.add_selection_args(c, threads_default="half the cores, one half per side; with --sequential "
                                                            "all cores but one, left to the OS: processes then vary less")
            c.set_defaults(profile="ci", rounds=6)
