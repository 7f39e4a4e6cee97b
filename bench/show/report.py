"""Tables (rich, markdown, json) from records, with the RNN-vs-CNN verdict (bench.decide.claim) and the
accuracy notes (bench.decide.accuracy) beneath them."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from ..decide import accuracy
from ..decide.claim import CLAIM_HEADER, claim_table, flip_points, verdict_lines
from ..records.record import MB, Record, Status, by_node, cell_label, node_of


def _fmt(v: Any, spec: str, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:{spec}}{unit}"


@dataclass(frozen=True)
class Column:
    title: str
    help: str  # what the column means, printed by README and `show --explain`


COLUMNS = (
    Column("cell", "framework[:variant] model device batch (variant 'default' = the framework's fastest idiomatic path)"),
    Column("status", "ok | failed | oom | timeout | skipped; 'ok?' = suspect: a self-check failed or the machine was busy while timing (see below the table)"),
    Column("acc % @steps", "test accuracy (on all 10,000 test images unless shown) after the training steps shown"),
    Column("train samples/s", "median training throughput over the timed repeats, +- half the IQR"),
    Column("step ms", "median milliseconds per training step"),
    Column("infer/s", "median inference samples/s on the test set"),
    Column("compile s", "first training step (compilation, tracing, allocator warm-up), kept out of throughput"),
    Column("mem MB (x floor)", "tensor-level memory of a training step (CPU: what the framework allocated, see "
                               "memory.tensor_method; GPU: allocator peak). In brackets: / analytic floor (params, "
                               "grads, Adam, activations)"),
    Column("RSS MB", "process RSS growth during training (median over n fresh processes, +- half their range): "
                     "the allocator and runtime, noisy"),
    Column("GFLOP/s", "achieved training GFLOP/s (analytic FLOPs x samples/s); CPU: % of this machine's sgemm "
                      "(the median of the run's per-process measurements)"),
    Column("kernel", "what actually ran; (!) = the expected fast path did not"),
)
# Shown only when a record has a target (run --target-accuracy).
TTA_COLUMN = Column("to target", "time to accuracy: training seconds (compile included, evaluations every K "
                                 "steps excluded) and steps until the test accuracy first reached the target")


def columns(records: list[dict[str, Any]]) -> tuple[Column, ...]:
    return COLUMNS + ((TTA_COLUMN,) if any(accuracy.tta_text(r) for r in records) else ())


def _sgemm_key(rec: dict[str, Any]) -> tuple:
    return (Record(rec).machine_id, rec.get("device"), rec.get("threads"))


def pooled_sgemm(records: list[dict[str, Any]]) -> dict[tuple, float]:
    """The median sgemm GFLOP/s over a set's cells, per machine, device and thread count.
    Each worker measures sgemm for a fraction of a second at its start, and one such figure can
    be far off: in one run on the 2-core machine 17 cells measured 134-171 GFLOP/s and one 86,
    which put that cell at "92% of sgemm". The % column divides by the pooled figure instead;
    each record keeps its own calibration."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        g = Record(r).calibration_gflops
        if r.get("status") == Status.OK and g:
            groups.setdefault(_sgemm_key(r), []).append(float(g))
    return {k: float(statistics.median(v)) for k, v in groups.items()}


def row(rec: dict[str, Any], sgemm: dict[tuple, float] | None = None, tta: bool = False,
        node: bool = False) -> list[str]:
    cells = _row(rec, sgemm)
    if node:  # records from several nodes: the cell says where it ran
        cells[0] = f"{node_of(rec) or '?'}: {cells[0]}"
    if tta:
        cells.append(accuracy.tta_text(rec) or "-")
    return cells


def _row(rec: dict[str, Any], sgemm: dict[tuple, float] | None = None) -> list[str]:
    status = rec.get("status", "?")
    if status == Status.OK and rec.get("suspect"):
        status = "ok?"
    if status not in (Status.OK, "ok?"):
        reason = (rec.get("reason") or "")[:90]
        return [cell_label(rec), status, reason] + [""] * (len(COLUMNS) - 3)
    r = Record(rec)
    m = r.metrics
    tr = m["train_samples_per_s"]
    gfl = r.achieved_gflops
    pct = r.pct_of_achievable
    pooled = (sgemm or {}).get(_sgemm_key(rec))
    if pct is not None and gfl is not None and pooled:
        pct = 100.0 * gfl / pooled
    mem = r.measured_memory_bytes
    floor_x = r.memory_over_floor
    # Two decimals: on the 10,000-image test set one image is 0.01 points, and a target such
    # as 98.0% is missed by 97.98 (two images), which one decimal would round away.
    acc = _fmt(100 * m["test_accuracy"], ".2f") + f" @{m['trained_steps']}"
    if m["test_samples"] != 10000:
        acc += f" ({m['test_samples']} imgs)"
    return [
        cell_label(rec), status, acc,
        f"{tr['median']:,.0f} +- {tr['iqr'] / 2:,.0f}",
        _fmt(r.median("step_ms"), ".2f"),
        _fmt(r.infer_samples_per_s, ",.0f"),
        _fmt(m.get("compile_s"), ".2f"),
        _fmt(mem / MB if mem is not None else None, ",.1f") + (f" ({floor_x:.2f}x)" if floor_x else ""),
        _rss(rec),
        _fmt(gfl, ".1f") + (f" ({pct:.0f}%)" if pct is not None else ""),
        rec.get("kernel", "-") + ("" if rec.get("fast_path", True) else " (!)"),
    ]


def _rss(rec: dict[str, Any]) -> str:
    r = Record(rec)
    v = r.rss_delta_train_bytes
    if v is None:
        return "-"
    vals = r.rss_delta_rounds_bytes or [v]
    half = (max(vals) - min(vals)) / 2
    return f"{v / MB:,.0f}" + (f" +- {half / MB:,.0f} (n={len(vals)})" if len(vals) > 1 else " (n=1)")


# ---------------------------------------------------------------------------------------------
def header(records: list[dict[str, Any]] | None = None) -> list[str]:
    return [c.title for c in (columns(records) if records is not None else COLUMNS)]


def to_markdown(records: list[dict[str, Any]]) -> str:
    cols = columns(records)
    tta = len(cols) > len(COLUMNS)
    lines = ["| " + " | ".join(c.title for c in cols) + " |", "|" + "---|" * len(cols)]
    sgemm = pooled_sgemm(records)
    grouped, several = by_node(records)
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row(r, sgemm, tta, several)) + " |" for r in grouped]
    out = "\n".join(lines) + "\n\n" + "\n".join(
        ln if not ln.startswith("  ") else "- " + ln.strip() for ln in verdict_lines(records)) + "\n"
    seeds = accuracy.seed_table(records)
    if seeds:
        out += "\n| " + " | ".join(accuracy.SEED_HEADER) + " |\n|" + "---|" * len(accuracy.SEED_HEADER) + "\n"
        out += "".join("| " + " | ".join(r) + " |\n" for r in seeds)
    agree = accuracy.agreement_lines(records)
    if agree:
        out += "\n" + "\n".join(ln if not ln.startswith("  ") else "- " + ln.strip() for ln in agree) + "\n"
    table = claim_table(records)
    if table:
        out += "\n| " + " | ".join(CLAIM_HEADER) + " |\n|" + "---|" * len(CLAIM_HEADER) + "\n"
        out += "".join("| " + " | ".join(r) + " |\n" for r in table)
    flips = flip_points(records)
    if flips:
        out += "\n" + "".join(f"- {f}\n" for f in flips)
    return out


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=1, sort_keys=True)


def rich_table(records: list[dict[str, Any]], title: str):
    from rich.markup import escape  # reasons hold "[tf]"-like text that rich would eat as markup
    from rich.table import Table

    t = Table(title=title, header_style="bold", show_lines=False, caption="columns: lstm-bench show --explain")
    cols = columns(records)
    for c in cols:
        numeric = c.title not in ("cell", "status", "kernel")
        t.add_column(c.title, justify="right" if numeric else "left", overflow="fold")
    sgemm = pooled_sgemm(records)
    grouped, several = by_node(records)
    for r in grouped:
        cells = row(r, sgemm, len(cols) > len(COLUMNS), several)
        style = None if r.get("status") == Status.OK and not r.get("suspect") else (
            "yellow" if r.get("status") in (Status.OK, Status.SKIPPED) else "red")
        t.add_row(*(escape(c) for c in cells), style=style)
    return t


def busy_line(records: list[dict[str, Any]]) -> str | None:
    """One line naming the cells timed while other programs used their CPUs (None: there were none)."""
    keys = sorted({r["key"] for r in records if Record(r).machine_busy})
    if not keys:
        return None
    return (f"machine busy while timing {len(keys)} cell(s): {', '.join(keys)}; their figures are suspect "
            f"(measure them again with --resume RUN_ID --retry-suspect)")


def print_report(records: list[dict[str, Any]], title: str, console: Any) -> None:
    from rich.markup import escape

    console.print(rich_table(records, title))
    for r in records:
        if r.get("suspect"):
            console.print(f"[yellow]suspect[/] {r['key']}: " + escape("; ".join(Record(r).self_check_reasons)))
        for w in Record(r).warnings:
            console.print(f"[yellow]warning[/] {r['key']}: " + escape(w))
        if r.get("status") == Status.OK and not r.get("fast_path", True):
            console.print(f"[yellow]slow path[/] {r['key']}: {escape(str(r.get('fast_path_note')))}")
    table = claim_table(records)
    if table:
        from rich.table import Table

        t = Table(title="RNN vs CNN (the tutorials' claim)", header_style="bold")
        for c in CLAIM_HEADER:
            t.add_column(c)
        for r in table:
            t.add_row(*(escape(c) for c in r))
        console.print(t)
    for line in verdict_lines(records) + flip_points(records):
        console.print(line, markup=False)
    from rich.table import Table

    seeds = accuracy.seed_table(records)
    if seeds:
        t = Table(title="accuracy over seeds", header_style="bold")
        for c in accuracy.SEED_HEADER:
            t.add_column(c)
        for r in seeds:
            t.add_row(*(escape(c) for c in r))
        console.print(t)
    for line in accuracy.agreement_lines(records):
        console.print(line, markup=False)
