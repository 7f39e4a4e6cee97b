"""`check --calibrate`: A/A rounds of this checkout against itself, through the same rounds (and
duet) as a real check, then each metric's noise and the smallest detectable slowdown (bench.decide.noise)."""
from __future__ import annotations

import argparse
import math
import time

from .. import envinfo
from ..runner import schedule
from ..decide import sequential
from ..runner.plan import plan
from . import ab, selection
from .ui import RunUI, console as make_console
from .usage import UsageError


def cmd_calibrate(args: argparse.Namespace) -> int:
    """A/A rounds of this checkout against itself: each metric's process-to-process spread, and
    the smallest slowdown a check can detect at 95% power within the time budget."""
    from rich.markup import escape
    from rich.table import Table

    from ..decide import noise, stats

    if args.base or args.head or args.against:
        raise UsageError("check --calibrate runs this checkout against itself: give a selection, not BASE/HEAD/--against")
    sel = selection.from_args(args)
    cells = plan(sel)
    rules, _ = ab.rules(args)
    confidence = ab.confidence(args)
    rounds_n = max(args.rounds, 4)
    console = make_console()
    with ab.sides(args, sel, cells, envinfo.REPO_ROOT, ("a1", "a2"), "calibrate") as sides:
        alternate = ab.choose_alternate(args, sides, cells, console)
        duet = ab.choose_duet_cpus(args, cells, sides, console, alternate)
        synced = ab.choose_handshake(args, sides, duet, console)
        console.print(f"calibrate: {len(cells)} cell(s) x {rounds_n} A/A rounds (identical code both sides), "
                      + (ab.duet_words(duet, synced, alternate) if duet else "one side after the other"))
        t0 = time.monotonic()
        # Rounds with `decide` never stopping early: the same code path (and duet) as a real check.
        code = schedule.execute_sides(sides, cells, None, ab.timeout_s(args, sel), RunUI(console, quiet=args.quiet),
                                      schedule.Rounds(full=rounds_n, max_full=rounds_n, budget_s=math.inf,
                                                      decide=lambda cell, done, spent_s: False, duet_cpus=duet,
                                                      handshake=synced, alternate=alternate), args.start)
    if code == 130:
        raise KeyboardInterrupt
    per_round_s = (time.monotonic() - t0) / max(1, rounds_n * len(cells))
    # the rounds a check's plan would allow (its n_max)
    affordable = sequential.planned_rounds(args.budget_s, per_round_s, args.rounds, args.max_rounds)
    a, b = sides[0].run.rounds(), sides[1].run.rounds()
    t = Table(header_style="bold", title=f"A/A noise on this machine ({rounds_n} rounds per cell, "
                                          f"{per_round_s:.1f} s per round; budget {args.budget_s:.0f} s = "
                                          f"{affordable} rounds)")
    for c in ("cell", "metric", "process sd", "round log-ratio sd", "A/A estimate", "detectable at 95% power"):
        t.add_column(c)
    for n in noise.aa_noise(a, b, rules, affordable, confidence, min_rounds=args.rounds):
        t.add_row(escape(n.key), n.rule.name, f"{100 * n.process_sd_log:.1f}%", f"{100 * n.estimate.sd_log:.1f}%",
                  escape(stats.describe(n.estimate, n.rule.words)),
                  f"{100 * n.detectable:.1f}% in {affordable} rounds" if math.isfinite(n.detectable) else "-")
    console.print(t)
    console.print("process sd: spread of per-process medians; round log-ratio sd: spread of head/base within a round "
                  "(what the check's interval is built from); detectable: the smallest step-time slowdown whose "
                  "interval, read at a check's last look (its repeated interval), clears the floor with 95% "
                  "probability in the rounds the budget allows (normal model)")
    return 0
