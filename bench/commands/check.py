"""`compare` and `check`: two stored result sets joined cell by cell, every metric judged with its
interval; `check` is a one-sided gate: it exits 0 when every gated metric's regression past its
floor is ruled out (a pass, worded improved, unchanged or not regressed), 1 regressed, 3
inconclusive. `check --against REF`
first measures REF's code and this checkout's in rounds of fresh processes in this job, adding a
round at a time and looking after each: the intervals are the repeated ones of a group-sequential
plan fixed before the first look (bench.decide.sequential), so the stated error holds over all looks."""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from .. import measure
from ..records import results
from ..runner import schedule
from ..decide import sequential
from ..runner.plan import plan
from . import ab, calibrate, counts as counts_cmd, selection
from .ui import RunUI, console as make_console
from .usage import UsageError


def _rounds_of(ref: str, results_dir: Path) -> tuple[list[dict], dict]:
    run_dir = results.resolve_run(ref, results_dir)
    return results.read_rounds(run_dir), results.read_manifest(run_dir)


# O'Brien-Fleming-type spending: almost nothing at the early looks, so the last look reads nearly
# the fixed-sample interval and a check that runs its whole budget loses little power; only large
# effects stop a check early (bench.decide.sequential says why this design and not another).
SPENDING = "obrien-fleming"


def designs_of(manifest: dict[str, Any], run: str) -> dict[str, sequential.Design]:
    """key -> the sequential plan `check --against` recorded for a cell ({} for sets it did not
    write: those are judged in one look)."""
    plan_ = manifest.get("sequential") or {}
    try:
        skew = float(plan_.get("skew_allowance", sequential.SKEW_ALLOWANCE))
        return {k: sequential.Design(int(n), min(int(plan_["min_rounds"]), int(n)), plan_.get("spending", SPENDING),
                                     skew)
                for k, n in (plan_.get("n_max") or {}).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{run}: the manifest's sequential plan is unreadable ({e})") from None


def _comparison(args: argparse.Namespace):
    """Two stored sets, refused (exit 2) when they differ in what makes figures comparable."""
    from ..decide import compare, hosts

    rules, gate = ab.rules(args)
    (base, mb), (head, mh) = (_rounds_of(args.base, Path(args.results_dir)),
                              _rounds_of(args.head, Path(args.results_dir)))
    diffs = compare.differences(base, head)
    if mb.get("check_id") and mb.get("check_id") == mh.get("check_id"):
        # One check job measured both on one machine, round by round: a busy hour slows both sides'
        # sgemm alike or not, but it is one host whatever the rates say.
        diffs = [d for d in diffs if not hosts.is_mismatch(d)]
    # A host mismatch alone has its own override, so --force is not needed (and not given) for it.
    blocking = [d for d in diffs if not (hosts.is_mismatch(d) and getattr(args, "allow_host_mismatch", False))]
    if blocking and not args.force:
        flag = "--allow-host-mismatch" if all(hosts.is_mismatch(d) for d in blocking) else "--force"
        raise UsageError(f"the two sets are not comparable ({flag} to compare anyway): " + "; ".join(blocking))
    # Sets written by one `check --against` job ran back to back, round by round: pair them, and
    # read each cell at the repeated interval of the plan its rounds were added under.
    paired = bool(mb.get("check_id")) and mb.get("check_id") == mh.get("check_id")
    designs = designs_of(mb, args.base) if paired else {}
    return compare.compare(base, head, rules, paired=paired, gate=gate, confidence=ab.confidence(args),
                           designs=designs), diffs


def _print_comparison(cmp, console, only_changes: bool, diffs: list[str] = ()) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(header_style="bold")
    for c in ("cell", "metric", "base", "head", "processes", "change", "verdict"):
        t.add_column(c, justify="right" if c in ("base", "head", "processes") else "left", overflow="fold")
    colour = {"regressed": "red", "improved": "green", "unchanged": "", "not regressed": "", "inconclusive": "yellow",
              "changed": "yellow"}
    from ..decide import hosts
    from ..decide.compare import format_value

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
    from ..decide.compare import left_out_words

    if (gap := left_out_words(cmp)) is not None:  # a metric one side lacks is said, not dropped
        console.print(f"[yellow]{escape(gap)}[/]")
    for d in diffs:
        why = "--allow-host-mismatch" if hosts.is_mismatch(d) else "--force"
        console.print(f"[yellow]warning ({why}): figures from different hosts or hours differ by the host, not only "
                      f"the code[/]: {escape(d)}" if why != "--force" else f"[yellow]warning (--force)[/]: {escape(d)}")
    for line in cmp.packages:  # two environments: what a version A/B changed
        console.print(escape(line), markup=False)
    for line in cmp.model_diffs:  # its cells cannot join: say why instead of listing them as only-in
        console.print(f"[yellow]{escape(line)}[/]")
    for label, keys in (("only in base", cmp.only_base), ("only in head", cmp.only_head),
                        ("not ok on one side", cmp.not_ok)):
        if keys:
            console.print(f"{label}: {escape(', '.join(keys))}")
    for key, n in cmp.dropped_busy.items():
        console.print(f"[yellow]dropped {n} round(s)[/] of {escape(key)}: a side was timed while other programs "
                      f"used its CPUs (machine busy)")


def _print_json(cmp, args: argparse.Namespace, diffs: list[str], exit_code: int) -> None:
    """--format json: every decision with its interval, rounds, plan and error, and the overall one."""
    out = {"command": args.cmd, "base": args.base, "head": args.head, **cmp.to_dict(), "exit_code": exit_code,
           "warnings": list(diffs)}
    print(json.dumps(out, indent=1))


def cmd_compare(args: argparse.Namespace) -> int:
    cmp, diffs = _comparison(args)
    if args.format == "json":
        _print_json(cmp, args, diffs, 0)  # compare exits 0; "result" says what check would
    else:
        _print_comparison(cmp, make_console(), only_changes=False, diffs=diffs)
    return 0


def gated_rounds_rules(rules, gate) -> int:
    """How many of a cell's decisions are in the check's Holm family (gated, judged over rounds)."""
    from ..decide import compare

    return sum(r.kind == compare.Judge.ROUNDS and r.name in gate for r in rules)


def round_settles(args: argparse.Namespace, sides, cells, rules, gate, confidence) -> schedule.Decide:
    """The adaptive stop rule, called after each round from the first look on. Before a cell's
    first look it fixes the cell's plan from the time its rounds took (never their values): n_max,
    the rounds its budget allows, recorded in both manifests. At every look it judges the cells so
    far as the final table will (the repeated interval of each look; Holm's family counts the
    cells still to come), and stops the cell once each gated metric is decided in the gate's sense
    (regressed, or a pass: a regression past its floor ruled out, compare.settled) or its plan is
    spent."""
    from ..decide import compare

    designs: dict[str, sequential.Design] = {}
    family = len(cells) * gated_rounds_rules(rules, gate)

    def decide(cell, done: int, spent_s: float) -> bool:
        if cell.key not in designs:
            n_max = sequential.planned_rounds(args.budget_s, spent_s / done, args.rounds, args.max_rounds)
            designs[cell.key] = sequential.Design(n_max, min(args.rounds, n_max), SPENDING, sequential.SKEW_ALLOWANCE)
            for side in sides:
                side.run.planned_rounds(cell.key, n_max)
        # The rounds as filed, kept in memory by each side's Run: no re-reading both runs every round.
        cmp = compare.compare(sides[0].run.rounds(), sides[1].run.rounds(), rules,
                              paired=True, gate=gate, confidence=confidence, designs=designs, family=family)
        return compare.settled(f for f in cmp.findings if f.key == cell.key) or done >= designs[cell.key].n_max

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
    console = make_console(stderr=args.format == "json")
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(ab.worktree(args.against))
        base_env = own_base_env(args, cells, tree, console) if args.base_env == "own" else None
        sides = stack.enter_context(ab.sides(args, sel, cells, tree, ("base", "head"), args.against, base_env))
        alternate = ab.choose_alternate(args, sides, cells, console)
        duet = ab.choose_duet_cpus(args, cells, sides, console, alternate)
        synced = ab.choose_handshake(args, sides, duet, console)
        for side in sides:  # the plan every look reads; n_max per cell is added before its first look
            side.run.sequential_plan(SPENDING, 1.0 - confidence, args.rounds, len(cells) * gated_rounds_rules(rules, gate),
                                     sequential.SKEW_ALLOWANCE)
        console.print(f"check --against {args.against}: {len(cells)} cell(s), base and head in fresh processes, "
                      + (ab.duet_words(duet, synced, alternate) if duet else "interleaved A B / B A")
                      + f", {args.rounds}..{args.max_rounds} rounds or {args.budget_s:.0f} s "
                      f"per cell, {args.threads} CPU thread(s) per process; a look after every round from round "
                      f"{args.rounds}, each at its repeated {100 * confidence:g}% interval ({SPENDING} spending)")
        rounds = schedule.Rounds(full=args.rounds, max_full=args.max_rounds, budget_s=args.budget_s,
                                 decide=round_settles(args, sides, cells, rules, gate, confidence), duet_cpus=duet,
                                 handshake=synced, alternate=alternate)
        code = schedule.execute_sides(sides, cells, None, ab.timeout_s(args, sel), RunUI(console, quiet=args.quiet),
                                      rounds, args.start)
    if code == 130:
        raise KeyboardInterrupt
    return str(sides[0].run_dir), str(sides[1].run_dir)


def own_base_env(args: argparse.Namespace, cells: list, tree: Path, console: Any) -> Any:
    """check --base-env own: the base side's package environment, built from REF's own declared
    dependencies (its pyproject's dependencies and the extras of the cells' frameworks), so a
    change of pins is measured, not only a change of code (bench/runner/envs.py)."""
    from .. import registry
    from ..runner import envs
    from .run import build_envs

    extras = tuple(dict.fromkeys(registry.FRAMEWORKS[c.framework].extra for c in cells))
    (built,) = build_envs([envs.EnvSpec("own", extras=extras)], args, console, code_root=tree)
    return built


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 pass (no gated metric regressed past its floor: each such regression ruled out), 1
    regressed, 3 inconclusive (gated metrics), 2 bad input."""
    if args.counts:
        try:
            args.base, args.head = counts_cmd.run_against(args)
        except counts_cmd.NothingCounted as e:
            print(str(e))
            return counts_cmd.EXIT_NOTHING_JUDGED
    if (args.calibrate or args.against) and not args.threads and not args.counts:
        args.threads = measure.check_threads_default(duet=not args.sequential, alternate=ab.wants_alternate(args))
    if args.calibrate:
        if args.format == "json":
            raise UsageError("check --calibrate prints a table; --format json is for decisions")
        return calibrate.cmd_calibrate(args)
    if getattr(args, "base_env", "shared") == "own" and (not args.against or args.counts or args.calibrate):
        raise UsageError("--base-env own goes with --against REF (timed rounds; not --counts or --calibrate)")
    if args.against and not args.counts:
        args.base, args.head = _run_against(args)
    elif not (args.base and args.head):
        raise UsageError("check: give BASE HEAD (run ids or directories), or --against GIT_REF with a selection")
    from ..decide import compare

    cmp, diffs = _comparison(args)
    joined = len(cmp.rounds)
    json_out = args.format == "json"
    console = make_console(stderr=json_out)
    if not json_out:
        _print_comparison(cmp, console, only_changes=False, diffs=diffs)
    if joined == 0:
        raise UsageError("check: the two result sets have no ok cell in common (same model, recipe, threads...)")
    if args.summary_md:
        with open(args.summary_md, "a") as f:
            f.write(f"### lstm-bench check: {args.base} vs {args.head}\n\n" + compare.summary_markdown(cmp) + "\n")
    code = cmp.exit_code()
    if json_out:
        _print_json(cmp, args, diffs, code)
        return code
    if not args.counts:  # counts are compared directly: no interval to describe
        console.print(_how_judged(cmp))
    if code == 1:
        regs = cmp.regressions
        console.print(f"[red]REGRESSED[/]: {len(regs)} gated metric(s) in {len({f.key for f in regs})} of {joined} cells")
    elif code == 3:
        inc = cmp.inconclusive
        more = cmp.more_rounds
        # The budget flags steer check --against's rounds; two stored runs have the processes they have.
        rerun = ("rerun with a larger --budget-s / --max-rounds" if args.against else
                 "measure both runs with more processes per cell (run --rounds N) and check them again")
        console.print(f"[yellow]INCONCLUSIVE[/]: {len(inc)} gated metric(s) not settled "
                      + ("within the budget " if args.against else "by the stored processes ")
                      + f"({', '.join(sorted({f.rule for f in inc}))}); "
                      + (f"needs ~{more} more rounds: " if more is not None else "") + rerun)
    else:
        gated = [f for f in cmp.findings if f.gated]
        words = ", ".join(f"{sum(f.verdict == v for f in gated)} {v}" for v in ("improved", "unchanged", "not regressed"))
        console.print(f"[green]PASS[/]: no gated metric regressed past its floor in {joined} cells ({words})")
    return code


def _how_judged(cmp) -> str:
    """One line under the table: which intervals the verdicts read and how the error was shared."""
    alpha = f"{100 * cmp.alpha:g}%"
    if cmp.designs:
        n_max = sorted({d.n_max for d in cmp.designs.values()})
        skew = sorted({d.skew_allowance for d in cmp.designs.values()})
        plan_ = (f"repeated intervals of a sequential plan ({SPENDING} spending per side, up to "
                 f"{'/'.join(map(str, n_max))} rounds, t multipliers allowing for skewness "
                 f"{'/'.join(f'{g:g}' for g in skew)}): {alpha} error over all looks, at most {100 * cmp.alpha / 2:g}% "
                 f"on each side")
    else:
        plan_ = f"one look: fixed-sample intervals at {alpha} error"
    holm = f"; Holm over {cmp.family} gated rounds decisions" if cmp.family > 1 else ""
    return f"intervals: {plan_}{holm}"


def add_parsers(sub: Any) -> None:
    rules_help = ("effect floors, e.g. 'train:3%%,infer:3%%,memory:1%%,rss:10%%,accuracy:0.02,counts:0.5%%' (the defaults); "
                  "train:10%% means a step 10%% slower (throughput x 1/1.10): regressed = the whole confidence "
                  "interval is past the floor; pass = its end on the bad side clears the floor (worded unchanged "
                  "inside the band 1/(1+f)..1+f, improved past it, else not regressed)")
    check_help = "one-sided CI gate: exit 0 pass (no gated metric regressed past its floor), 1 regressed, 3 inconclusive"
    check_about = ("A one-sided gate for CI: exit 0 pass (every gated metric's regression past its floor ruled out; "
                   "worded unchanged, improved or not regressed), 1 regressed, 3 inconclusive, 2 bad input. A change "
                   "exactly at the floor passes (a missed regression) in at most 2.5% of checks and reads regressed in "
                   "at most 2.5%, over all looks (seeded simulation of normal, heavy-tailed, skewed and resampled "
                   "published rounds, 14- and 30-round plans: 0.6-2.4%; tests/test_check_rule.py, docs/ci.md).")
    for name, func, text, about in (("compare", cmd_compare, "compare two runs cell by cell", None),
                                    ("check", cmd_check, check_help, check_about)):
        c = sub.add_parser(name, help=text, description=about)
        c.add_argument("base", nargs="?" if name == "check" else None, help="baseline run id or directory")
        c.add_argument("head", nargs="?" if name == "check" else None, help="run id or directory to judge")
        c.add_argument("--fail-on", "--floor", dest="fail_on", help=rules_help)
        c.add_argument("--gate", help="metrics that decide the exit code (default: train,memory,accuracy and counts where measured; "
                                      "infer and rss are reported as advisory)")
        c.add_argument("--confidence", type=float, default=0.95,
                       help="confidence over all of a check's looks and gated decisions (default 0.95)")
        c.add_argument("--force", action="store_true",
                       help="compare sets that differ in machine, framework versions, threads, precision or device")
        c.add_argument("--allow-host-mismatch", action="store_true",
                       help="compare sets whose hosts differ in what decides speed (CPU model, ISA flags, cores, "
                            "memory, an sgemm rate 1.4x apart); the table then carries a warning")
        c.add_argument("--format", choices=("table", "json"), default="table",
                       help="table (default) or json on stdout: each decision (verdict: regressed, improved, "
                            "unchanged, not regressed, inconclusive or changed; gate: pass, regressed or "
                            "inconclusive) with its interval, the confidence actually used, its rounds, n_max and "
                            "the error it was tested at, and the overall result (ok = pass, regressed, "
                            "inconclusive) and exit code (progress then goes to stderr)")
        c.set_defaults(func=func)
        if name == "check":
            c.add_argument("--against", metavar="GIT_REF",
                           help="run the selection below with GIT_REF's code and this checkout's, in rounds of fresh "
                                "processes interleaved in this job, then judge (the trustworthy mode on shared runners)")
            c.add_argument("--base-env", choices=("shared", "own"), default="shared",
                           help="with --against: shared (default) runs REF's code with this interpreter's packages, "
                                "so a change of dependency pins cannot show; own builds the base side a package "
                                "environment from REF's own pyproject (its dependencies and the cells' framework "
                                "extras) with uv (docs/envs.md)")
            c.add_argument("--env-cache", metavar="DIR",
                           help="with --base-env own: where environments are built and kept (default: "
                                "$LSTM_BENCH_ENV_CACHE, else ~/.cache/lstm-bench/envs)")
            c.add_argument("--budget-s", type=float, default=180.0,
                           help="seconds per cell for adaptive rounds (default 180)")
            c.add_argument("--max-rounds", type=int, default=40,
                           help="rounds per cell at most (default 40); the sequential plan's n_max is the rounds "
                                "--budget-s allows at the time the first --rounds took, at most this")
            c.add_argument("--sequential", action="store_true",
                           help="run base and head one after the other (default: both at once, taking turns on "
                                "the same --threads CPUs, when the machine has 2 x --threads CPUs)")
            # Alternate rounds are the default since they were measured (benchmarks/alternate_probe.py,
            # results/published/check-rounds-*): on a noisy VM the speed of each virtual CPU moves in
            # steps that side by side cannot cancel and taking turns on one CPU does.
            c.add_argument("--side-by-side", action="store_true",
                           help="run base and head at once each on its own CPUs (the design before alternate "
                                "rounds; a noisy host's per-CPU interference does not cancel)")
            # Off by default since it was measured (benchmarks/duet_designs.py, two runs): the side that
            # finishes a repeat first waits idle, the slower side runs its tail alone, and a slowdown
            # reads smaller (0.86x of one after the other against 0.93x without it).
            hs = c.add_mutually_exclusive_group()
            hs.add_argument("--handshake", dest="handshake", action="store_true", default=False,
                            help="side-by-side rounds start both sides' timed repeats together (where both sides' "
                                 "code has it); measured to read a slowdown smaller, so off by default")
            hs.add_argument("--no-handshake", dest="handshake", action="store_false",
                            help="duet rounds without the handshake (the default)")
            c.add_argument("--calibrate", action="store_true",
                           help="A/A rounds of this checkout against itself: noise per metric and the smallest "
                                "slowdown detectable within --budget-s")
            c.add_argument("--summary-md", metavar="FILE", help="append the verdict table as markdown to FILE "
                                                                "(e.g. $GITHUB_STEP_SUMMARY)")
            counts_cmd.add_counts_args(c, "instead of rounds of the clock, count each side once")
            selection.add_selection_args(c, threads_default="every core, the sides taking turns; with --side-by-side "
                                                            "half the cores, one half per side; with --sequential all "
                                                            "cores but one, left to the OS")
            c.set_defaults(profile="ci", rounds=6)
