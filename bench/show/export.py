"""`bench export RUN --format github-action-benchmark`: a run's figures for other CI tools.

github-action-benchmark (benchmark-action/github-action-benchmark) reads, with `tool:
customBiggerIsBetter` or `tool: customSmallerIsBetter`, a JSON list of
{name, unit, value, range?, extra?}: `value` a number, `range` and `extra` strings (shown in the
chart's tooltip). One tool per file, so a run becomes two files:

  bigger.json   train and inference samples/s per ok cell: value = median, range = "± half IQR"
  smaller.json  step ms (median, ± half IQR), memory in MB (1 MB = 1e6 bytes) and, for a run made
                with --counts, instructions per training step under callgrind

Names are "<cell label> <metric>", the cell label as in the tables (framework[:variant] model
device bBATCH): the action joins runs on the name, so a name must mean the same measurement in
every run. Memory is named by its source ("memory (tensor-level)", "memory (RSS growth)",
"memory (allocator peak)"): the figures differ by an order of magnitude, and a cell whose
source changed must start a new series rather than splice two kinds of figure into one line.
Cells that are not ok are left out (the action charts numbers, not failures); a suspect cell
is kept and says so in `extra`.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import results
from ..records.pool import measured_memory
from ..records.record import MB, Record, Status, cell_label

FORMATS = ("github-action-benchmark",)


@dataclass(frozen=True)
class Metric:
    suffix: str  # appended to the cell label to make the benchmark's name
    metric: str  # a metric with a {median, iqr, ...} summary (bench.measure.Stats.to_dict): Record.summary
    unit: str
    direction: str  # "bigger" or "smaller": which file (which github-action-benchmark tool)
    required: bool  # every ok record has it (the worker always writes it): absent = corrupt


SUMMARIZED = (
    Metric("train samples/s", "train_samples_per_s", "samples/s", "bigger", True),
    Metric("infer samples/s", "infer_samples_per_s", "samples/s", "bigger", False),
    Metric("step ms", "step_ms", "ms", "smaller", True),
)


def _finite(v: Any) -> bool:
    # The action parses with JSON.parse, which rejects NaN/Infinity (Python's json writes them).
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _label(rec: dict[str, Any]) -> str:
    try:
        return cell_label(rec)
    except (KeyError, TypeError):
        raise results.ResultsError(f"record {rec.get('key', '?')!r} lacks framework/model/device/batch_size: "
                                   "corrupt results file") from None


def _extra(rec: dict[str, Any], summary: dict[str, Any] | None = None, more: str = "") -> str:
    """Tooltip text: what the figure is over and where it came from (one fact a line)."""
    lines = [f"key {rec.get('key')}"]
    n = len((summary or {}).get("values") or [])
    if n:
        over = "processes (median of per-process medians)" if summary.get("per_process") else "timed repeats"
        lines.append(f"median of {n} {over}")
    lines.append(f"{rec.get('precision_applied') or rec.get('precision')}, {rec.get('threads')} threads, "
                 f"kernel {rec.get('kernel')}")
    if more:
        lines.append(more)
    r = Record(rec)
    if r.git_commit:
        lines.append(f"commit {str(r.git_commit)[:12]}{' (dirty)' if r.git_dirty else ''}")
    if rec.get("suspect"):
        reasons = "; ".join(r.self_check_reasons)
        lines.append(f"SUSPECT: {reasons}" if reasons else "SUSPECT")
    return "\n".join(lines)


def _memory_entries(rec: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """The judged memory figure (analytic.measured_memory_bytes, named by its source) and the
    tensor-level figure when the record has one and it is not already the judged figure."""
    by_source: dict[str, float] = {}
    r = Record(rec)
    value = r.measured_memory_bytes
    source = r.measured_memory_source()
    if not source:  # a record older than measured_memory_source: derive both as bench.records.pool does
        value, source = measured_memory(rec)
    if _finite(value):
        by_source[source] = value
    tensor = r.tensor_peak_bytes
    if _finite(tensor):
        by_source.setdefault("tensor-level", tensor)
    out = []
    for src, v in by_source.items():
        floor = r.train_floor_bytes
        more = f"{v:,.0f} bytes" + (f", {v / floor:.2f}x the analytic floor" if _finite(floor) and floor else "")
        out.append({"name": f"{label} memory ({src})", "unit": "MB", "value": v / MB, "extra": _extra(rec, more=more)})
    return out


def _cell_entries(rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(direction, entry) for one ok record."""
    label = _label(rec)
    if "metrics" not in rec and rec.get("counts"):
        # A `check --counts` process ran only the counted steps under valgrind: its record has
        # the count and no timing or memory, which is not corruption.
        return [("smaller", e) for e in _counts_entries(rec, label)]
    out: list[tuple[str, dict[str, Any]]] = []
    for m in SUMMARIZED:
        s = Record(rec).summary(m.metric)
        if not isinstance(s, dict) or "median" not in s:
            if m.required:
                raise results.ResultsError(f"ok record {rec.get('key', '?')!r} has no metrics.{m.metric}.median: "
                                           "corrupt results file")
            continue
        if not _finite(s["median"]):
            continue
        entry: dict[str, Any] = {"name": f"{label} {m.suffix}", "unit": m.unit, "value": float(s["median"])}
        if _finite(s.get("iqr")):
            entry["range"] = f"± {s['iqr'] / 2:.4g}"
        entry["extra"] = _extra(rec, s)
        out.append((m.direction, entry))
    return out + [("smaller", e) for e in _memory_entries(rec, label) + _counts_entries(rec, label)]


def _counts_entries(rec: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """Instructions per training step under callgrind, for a record made with --counts."""
    v = Record(rec).instructions_per_step
    if not _finite(v):
        return []
    c = rec["counts"]
    more = (f"{c.get('counted_steps')} steps counted under {c.get('valgrind_version')}, kernel {c.get('kernel')}, "
            f"CPU features seen: {' '.join(c.get('cpu_features_seen') or [])}")
    return [{"name": f"{label} instructions/step (callgrind)", "unit": "instructions", "value": float(v),
             "extra": _extra(rec, more=more)}]


def github_action_benchmark(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records (pooled, one per cell: bench.records.results.read_records) -> {"bigger": [...], "smaller": [...]},
    the entry lists for customBiggerIsBetter and customSmallerIsBetter, in record order."""
    out: dict[str, list[dict[str, Any]]] = {"bigger": [], "smaller": []}
    for rec in records:
        if not isinstance(rec, dict):
            raise results.ResultsError("a record is not a JSON object: corrupt results file")
        if rec.get("status") != Status.OK:
            continue
        try:
            entries = _cell_entries(rec)
        except results.ResultsError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # a field of the wrong shape
            raise results.ResultsError(f"record {rec.get('key', '?')!r} is malformed ({type(e).__name__}: {e}): "
                                       "corrupt results file") from None
        for direction, entry in entries:
            out[direction].append(entry)
    for direction, entries in out.items():
        seen: set[str] = set()
        for e in entries:
            if e["name"] in seen:  # the action would merge two measurements into one series
                raise results.ResultsError(f"two cells export the same name {e['name']!r}: export one run at a time")
            seen.add(e["name"])
    return out


def write(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write <out_dir>/bigger.json and <out_dir>/smaller.json (atomically); returns their paths.
    A run with no ok cell is an error: the action fails on an empty list, and an empty file
    would pass this step only to fail the next."""
    lists = github_action_benchmark(records)
    if not lists["bigger"] or not lists["smaller"]:
        raise results.ResultsError("nothing to export: the run has no ok cell")
    paths = []
    for direction in ("bigger", "smaller"):
        path = Path(out_dir) / f"{direction}.json"
        results.atomic_write_json(path, lists[direction])
        paths.append(path)
    return paths


def cmd_export(args: argparse.Namespace) -> int:
    run_dir = results.resolve_run(args.run, Path(args.results_dir))
    records = results.read_records(run_dir)
    out_dir = Path(args.out) if args.out else run_dir / "export"
    tools = {"bigger": "customBiggerIsBetter", "smaller": "customSmallerIsBetter"}
    for path in write(records, out_dir):
        print(f"{path}  (github-action-benchmark tool: {tools[path.stem]})")
    return 0


def add_parser(sub: Any) -> None:
    """Add `export` to the CLI's subcommands (`sub`: the parser's add_subparsers() action)."""
    e = sub.add_parser("export", help="write a run's figures for other CI tools (github-action-benchmark)")
    e.add_argument("run", help="run id (under --results-dir) or a run directory")
    e.add_argument("--format", default=FORMATS[0], choices=FORMATS,
                   help="github-action-benchmark: bigger.json (customBiggerIsBetter: samples/s) and smaller.json "
                        "(customSmallerIsBetter: step ms, memory MB)")
    e.add_argument("--out", metavar="DIR", help="output directory (default: RUN_DIR/export)")
    e.set_defaults(func=cmd_export)
