"""`lstm-bench trend HISTORY.json`: the creep no single pull request shows, over the default
branch's pushes (bench.show.history keeps them, bench.decide.trend judges them).

  trend HISTORY.json --add RUN [--commit SHA]   a push: add its point, write the file, judge
  trend HISTORY.json --pending RUN              a pull request: judge history + its point, write nothing
  trend HISTORY.json                            judge the history as it is

Exit codes as check's: 0 nothing flagged, 1 a series flagged (a step or the change over the last
--window pushes past --floor), 2 bad input (one line, nothing written).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..decide import trend
from ..records import results
from ..show import history
from .usage import UsageError

EXIT_FLAGGED = 1


def parse_floor(text: str) -> float:
    """'3%' or '3' -> 3.0 (percent): a relative floor, as check's train:3 means train:3%."""
    try:
        v = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"--floor takes a percentage, e.g. 3%, got {text!r}") from None
    if not 0 < v < 100:
        raise UsageError(f"--floor takes a percentage between 0 and 100, got {text!r}")
    return v


def _judged(hist: history.History, floor_pct: float, window: int, only: str | None) -> list[tuple[history.Series, trend.Trend]]:
    out = []
    for s in hist.series():
        if only and only not in s.name:
            continue
        out.append((s, trend.judge(s.values, s.bigger_is_better, floor_pct, window)))
    return out


def _step_words(s: history.Series, t: trend.Trend) -> str:
    if t.step_pct is None or t.step_at is None:
        return "-"
    return f"{t.step_pct:+.2f}% at {s.commits[t.step_at][:9]} ({t.n_points - t.step_at} pushes ago)"


def _flag_words(t: trend.Trend) -> str:
    why = []
    if t.step_flagged:
        why.append("step")
    if t.cumulative_flagged:
        why.append(f"{t.cumulative_pct:+.2f}% over {t.n_points - 1 - t.cumulative_from} pushes")
    return f"FLAGGED ({', '.join(why)})" if why else "ok"


def _table(judged: list[tuple[history.Series, trend.Trend]], floor_pct: float, window: int, markdown: bool) -> str:
    head = ("series", "pushes", "latest", "last step (worse +)", f"change over last {window}", "flag")
    rows = []
    for s, t in judged:
        rows.append((s.name, str(t.n_points), f"{s.values[-1]:.6g} {s.unit}", _step_words(s, t),
                     f"{t.cumulative_pct:+.2f}%", _flag_words(t)))
    if markdown:
        lines = [f"### lstm-bench trend: floor {floor_pct:g}%, last {window} pushes", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def _json(judged: list[tuple[history.Series, trend.Trend]]) -> list[dict[str, Any]]:
    return [{"series": s.name, "unit": s.unit, "bigger_is_better": s.bigger_is_better, "pushes": t.n_points,
             "latest": s.values[-1], "level": t.segments[-1].level, "step_pct": t.step_pct,
             "step_commit": None if t.step_at is None else s.commits[t.step_at],
             "cumulative_pct": t.cumulative_pct, "cumulative_from_commit": s.commits[t.cumulative_from],
             "step_flagged": t.step_flagged, "cumulative_flagged": t.cumulative_flagged, "flagged": t.flagged,
             "change_points": [s.commits[g.start] for g in t.segments[1:]]}
            for s, t in judged]


def cmd_trend(args: argparse.Namespace) -> int:
    floor_pct = parse_floor(args.floor)
    if args.window < 1:
        raise UsageError("--window must be at least 1 push")
    if args.add and args.pending:
        raise UsageError("trend: give --add RUN (a push) or --pending RUN (a pull request), not both")
    path = Path(args.history)
    run = args.add or args.pending
    hist = history.read(path, missing_ok=bool(args.add))
    if run:
        run_dir = results.resolve_run(run, Path(args.results_dir))
        hist = hist.added(history.point_from_run(run_dir, args.commit))
    if not hist.points:
        raise UsageError(f"{path}: the history has no pushes yet")
    judged = _judged(hist, floor_pct, args.window, args.series)  # judged before anything is written
    if args.series and not judged:
        raise UsageError(f"no series in {path} contains {args.series!r}")
    if args.add:
        history.write(path, hist)
    if args.format == "json":
        print(json.dumps({"floor_pct": floor_pct, "window": args.window, "series": _json(judged)}, indent=1))
    else:
        print(_table(judged, floor_pct, args.window, markdown=False))
    if args.summary_md:
        with open(args.summary_md, "a") as f:
            f.write(_table(judged, floor_pct, args.window, markdown=True) + "\n")
    return EXIT_FLAGGED if any(t.flagged for _, t in judged) else 0


def add_parser(sub: Any) -> None:
    t = sub.add_parser("trend", help="creep over the default branch's pushes: change points and the change over the "
                                     "last N pushes (exit 0 ok, 1 flagged, 2 bad input)",
                       description="Judge a history of per-push figures (docs/ci.md, 'Creep'): a fitted step or the "
                                   "change over the last --window pushes past --floor is flagged. Exit 0 nothing "
                                   "flagged, 1 flagged, 2 bad input.")
    t.add_argument("history", help="the history JSON file (created by the first --add)")
    t.add_argument("--add", metavar="RUN", help="a push: add RUN's figures as the newest point and write the file")
    t.add_argument("--pending", metavar="RUN", help="a pull request: judge the history with RUN's point, write nothing")
    t.add_argument("--commit", metavar="SHA", help="the point's commit (default: the one RUN's records were made at)")
    t.add_argument("--floor", default=f"{trend.DEFAULT_FLOOR * 100:g}%",
                   help=f"flag a change past this, worse-is-positive (default {trend.DEFAULT_FLOOR * 100:g}%%, the "
                        "check's train floor)")
    t.add_argument("--window", type=int, default=trend.DEFAULT_WINDOW,
                   help=f"pushes the cumulative change looks back (default {trend.DEFAULT_WINDOW})")
    t.add_argument("--series", metavar="TEXT", help="judge only the series whose name contains TEXT")
    t.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json: per series its fitted change points, last step, change over the "
                        "window and flags")
    t.add_argument("--summary-md", metavar="FILE", help="append the trend table as markdown to FILE "
                                                        "(e.g. $GITHUB_STEP_SUMMARY)")
    t.set_defaults(func=cmd_trend)
