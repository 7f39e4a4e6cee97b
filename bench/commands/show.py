"""`show`, `plot` and `export`: a stored run's table (or several runs as one tidy table), its
charts, and its figures for other CI tools (bench.show.export)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..records import results
from .ui import console as make_console
from .usage import UsageError


def cmd_show(args: argparse.Namespace) -> int:
    from ..show import report

    if args.explain:
        for c in report.COLUMNS + (report.TTA_COLUMN,):
            print(f"{c.title:>18}  {c.help}")
        return 0
    if not args.run:
        raise UsageError("show: which run? give a run id (see results/) or a run directory")
    if args.out and args.format in ("table", "markdown", "records"):
        raise UsageError("--out is for the tidy formats (csv, parquet, json); redirect the table instead")
    from ..show import tidy

    runs = tidy.read_runs(args.run, Path(args.results_dir))  # every run read (and checked) before any output
    if args.format in tidy.FORMATS:
        tidy.write(tidy.encode(tidy.frame(runs), args.format), args.out, args.format)
        return 0
    for run_id, recs in runs:
        if args.format == "table":
            report.print_report(recs, f"lstm-bench run {run_id}", make_console())
        elif args.format == "markdown":
            sys.stdout.write((f"## {run_id}\n\n" if len(runs) > 1 else "") + report.to_markdown(recs))
        else:  # records: the pooled records themselves, nested as stored
            sys.stdout.write(report.to_json(recs) + "\n")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..show import plot

    run_dir = results.resolve_run(args.run, Path(args.results_dir))
    out = Path(args.out) if args.out else run_dir / "plot.png"
    recs = results.read_records(run_dir)
    try:
        source = f"lstm-bench, run {run_dir.name}"  # a line at each plot's foot, not its title
        about = plot.run_about(recs, results.read_manifest(run_dir))  # host, threads, profile, date: every title
        paths = [plot.plot_run(recs, out, source, about)]
        paths += plot.plot_main_table(recs, out.parent, source, about)
        paths += plot.plot_claim(recs, out.parent, source, about)
        paths += plot.plot_accuracy(recs, out.parent, source, about)
    except plot.PlotUnavailable as e:
        raise UsageError(str(e)) from None
    for p in paths:
        print(p)
    return 0


def add_show_parser(sub: Any) -> None:
    s = sub.add_parser("show", help="print a run's table, or export runs as one tidy table (csv, parquet, json)")
    s.add_argument("run", nargs="*", help="run id(s) (under --results-dir) or run directories; the tidy formats "
                                          "concatenate several runs into one table with run_id and node columns")
    s.add_argument("--format", default="table", choices=("table", "markdown", "csv", "parquet", "json", "records"),
                   help="table (default), markdown (the published tables), csv / parquet / json (one flat row per "
                        "cell with every metric), records (the pooled JSON records, nested)")
    s.add_argument("--out", metavar="FILE", help="write the csv/parquet/json table to FILE (atomically)")
    s.add_argument("--explain", action="store_true", help="say what each table column means")
    s.set_defaults(func=cmd_show)


def add_plot_and_export_parsers(sub: Any) -> None:
    pl = sub.add_parser("plot", help="PNG charts of a run: speed and memory per model, the main table at one batch "
                                     "size, the RNN-vs-CNN claim (and across batch sizes), accuracy against "
                                     "training time")
    pl.add_argument("run", help="run id or directory")
    pl.add_argument("--out", metavar="FILE.png",
                    help="the throughput and memory chart (default: RUN_DIR/plot.png); more PNGs go beside it: "
                         "main-table.png (speed and memory per framework and model at one batch size); "
                         "claim-scatter.png when an RNN and cnn_tutorial were measured; claim-memory.png and "
                         "claim-ratios.png for a run over several batch sizes; accuracy-vs-time.png for a run "
                         "with --target-accuracy or --eval-every")
    pl.set_defaults(func=cmd_plot)

    from ..show import export

    export.add_parser(sub)
