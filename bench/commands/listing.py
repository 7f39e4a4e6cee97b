"""`list`: frameworks (available or not, and why), the model zoo, devices, profiles, and the runs
already stored."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import envinfo, measure, registry
from ..records import results
from ..spec import DEFAULT_MODELS, PROFILES, ZOO
from .ui import console as make_console


def cmd_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    console = make_console()
    t = Table(title="frameworks", header_style="bold")
    for c in ("name", "available", "variants", "why not"):
        t.add_column(c)
    for name, info in registry.FRAMEWORKS.items():
        why = registry.unavailable_reason(name)
        t.add_row(name, "yes" if why is None else "no", ", ".join(registry.variants(name)), escape(why or ""))
    console.print(t)
    from .. import analytic

    m = Table(title="models (zoo)", header_style="bold")
    for c in ("name", "network", "params", "train GFLOP/sample", "in run --all"):
        m.add_column(c)
    for name, spec in ZOO.items():
        cost = analytic.cost(spec)
        m.add_row(name, spec.describe(), f"{cost.params:,}", f"{cost.train_flops_per_sample / 1e9:.4f}",
                  "yes" if name in DEFAULT_MODELS else "no")
    console.print(m)
    gpu_reason = envinfo.gpu_absent_reason()
    console.print(f"devices: cpu ({measure.cpu_threads_default()} threads, {envinfo.cpu_model()}); "
                  f"gpu: {', '.join(envinfo.gpus()) if not gpu_reason else gpu_reason}")
    p = Table(title="profiles", header_style="bold")
    p.add_column("name")
    p.add_column("what")
    for prof in PROFILES.values():
        p.add_row(prof.name + (" (default)" if prof.name == "quick" else ""), prof.description)
    console.print(p)
    runs = results.list_runs(Path(args.results_dir))
    if runs:
        console.print(f"runs in {args.results_dir}/: {len(runs)} (latest: {runs[-1].name}; "
                      f"{getattr(args, 'prog', 'lstm-bench')} show {runs[-1].name})")
    return 0


def add_parser(sub: Any) -> None:
    ls = sub.add_parser("list", help="frameworks (available or not, and why), models, devices, profiles")
    ls.set_defaults(func=cmd_list)
