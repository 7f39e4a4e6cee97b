"""`envs`: the package environments built for cells (bench/runner/envs.py), with their size and
last use; `--prune` removes those unused for a while (or all) and builds left half-done."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .ui import console as make_console
from .usage import UsageError


def parse_age_s(text: str) -> float | None:
    """"30d", "12h", "90m" or "all" (None) -> seconds."""
    if text == "all":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([dhm])", text.strip())
    if not m:
        raise UsageError(f"--prune takes an age like 30d, 12h or 90m, or 'all'; got {text!r}")
    return float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]


def cmd_envs(args: argparse.Namespace) -> int:
    from ..runner import envs

    cache = Path(args.env_cache).expanduser() if args.env_cache else envs.default_cache_dir()
    console = make_console()
    if args.prune is not None:
        removed = envs.prune(cache, parse_age_s(args.prune))
        console.print(f"removed {len(removed)} environment(s) from {cache}", markup=False)
        for d in removed:
            console.print(f"  {d}", markup=False)
        return 0
    found = envs.cached(cache)
    if not found:
        console.print(f"no environments in {cache}", markup=False)
        return 0
    from rich.table import Table

    t = Table(header_style="bold", title=f"environments in {cache}")
    for c in ("pin hash", "size MB", "built", "build s", "last use", "packages"):
        t.add_column(c, justify="right" if c in ("size MB", "build s") else "left", overflow="fold")
    for e in found:
        shown = ", ".join(e.pins[:6]) + (f" (+{len(e.pins) - 6} more)" if len(e.pins) > 6 else "")
        t.add_row(e.pin_hash, f"{e.size_bytes / 1e6:,.0f}", e.built_utc,
                  f"{e.build_s:.1f}" if e.build_s is not None else "", e.last_use_utc, shown)
    console.print(t)
    total = sum(e.size_bytes for e in found)
    console.print(f"{len(found)} environment(s), {total / 1e6:,.0f} MB", markup=False)
    return 0


def add_parser(sub: Any) -> None:
    e = sub.add_parser("envs", help="list the package environments built for cells (size, last use), or prune them")
    e.add_argument("--prune", metavar="AGE|all", nargs="?", const="30d",
                   help="remove environments not used for AGE (30d, 12h, 90m; default 30d) or all of them")
    e.add_argument("--env-cache", metavar="DIR",
                   help="the environment cache (default: $LSTM_BENCH_ENV_CACHE, else ~/.cache/lstm-bench/envs)")
    e.set_defaults(func=cmd_envs)
