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
                      f"{getattr(args, 'prog', 'lstm-bench')} show {runs[-1].name}; all of them: "
                      f"{getattr(args, 'prog', 'lstm-bench')} runs)")
    return 0


def run_rows(results_dir: Path) -> list[dict[str, Any]]:
    """One row per stored run under results_dir (and its baselines/), oldest first: what `show`,
    `compare` and `check` can be given. A run whose manifest cannot be read is listed as such."""
    rows = []
    for where, prefix in ((results_dir, ""), (results_dir / "baselines", str(results_dir / "baselines") + "/")):
        for run_dir in results.list_runs(where):
            row: dict[str, Any] = {"run": prefix + run_dir.name}
            try:
                m = results.read_manifest(run_dir)
            except results.ResultsError as e:
                rows.append({**row, "problem": str(e)})
                continue
            env = m.get("env") or {}
            done = {p.name.split(".json")[0] for p in (run_dir / "cells").glob("*.json")}
            row.update(created=str(m.get("created_utc") or "")[:16].replace("T", " "), profile=m.get("profile") or "",
                       status=m.get("status") or "", cells=len(m.get("cells") or []),
                       processes=len(done), host=f"{env.get('cpu_model', '?')} ({env.get('cpu_logical_cores', '?')} "
                                                   f"CPUs, machine {str(env.get('machine_id', '?'))[:8]})")
            rows.append(row)
    return sorted(rows, key=lambda r: (r["run"].count("/"), r.get("created", "")))  # runs, then baselines; by date


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    rows = run_rows(Path(args.results_dir))
    console = make_console()
    if not rows:
        console.print(f"no runs in {args.results_dir}/ yet: {getattr(args, 'prog', 'lstm-bench')} run --all makes one")
        return 0
    t = Table(title=f"runs in {args.results_dir}/ (oldest first)", header_style="bold")
    for c in ("run", "created (UTC)", "profile", "status", "cells", "records", "host"):
        t.add_column(c, justify="right" if c in ("cells", "records") else "left", overflow="fold")
    for r in rows:
        if "problem" in r:
            t.add_row(escape(r["run"]), "", "", "[red]unreadable[/]", "", "", escape(r["problem"]))
        else:
            t.add_row(escape(r["run"]), r["created"], escape(r["profile"]), r["status"], str(r["cells"]),
                      str(r["processes"]), escape(r["host"]))
    console.print(t)
    console.print(f"read one with: {getattr(args, 'prog', 'lstm-bench')} show RUN; two: compare BASE HEAD "
                  "(runs from one host only: figures from different hosts are not comparable)")
    return 0


def add_parser(sub: Any) -> None:
    ls = sub.add_parser("list", help="frameworks (available or not, and why), models, devices, profiles")
    ls.set_defaults(func=cmd_list)
    rs = sub.add_parser("runs", help="the stored runs (and committed baselines): id, date, profile, host, cells")
    rs.set_defaults(func=cmd_runs)
