"""Tables (rich, markdown, csv, json) and the RNN-vs-CNN verdict, from records.

The verdict tests the tutorials' claim "an RNN is slower than a CNN on MNIST but uses less
memory" cell by cell: each recurrent model against the tutorial CNN measured by the same
framework variant, on the same device, at the same batch size, in the same run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

MB = 1e6
CLAIM_CNN = "cnn_tutorial"
# Within +-5% counts as "the same": RSS and allocator peaks move by a few MB between runs, and a
# claim of "less memory" that rests on 1% would not survive a rerun.
CLAIM_BAND = 0.05


def _get(rec: dict[str, Any], path: str, default: Any = None) -> Any:
    cur: Any = rec
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


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
    Column("status", "ok | failed | oom | timeout | skipped; 'ok?' = suspect, a self-check failed (see below the table)"),
    Column("acc % @steps", "test accuracy (on all 10,000 test images unless shown) after the training steps shown"),
    Column("train samples/s", "median training throughput over the timed repeats, +- half the IQR"),
    Column("step ms", "median milliseconds per training step"),
    Column("infer/s", "median inference samples/s on the test set"),
    Column("compile s", "first training step (compilation, tracing, allocator warm-up), kept out of throughput"),
    Column("mem MB (x floor)", "CPU: peak RSS in training minus RSS before the model was built; GPU: allocator "
                               "peak. In brackets: measured / analytic floor (params, grads, Adam, activations)"),
    Column("GFLOP/s", "achieved training GFLOP/s (analytic FLOPs x samples/s); CPU: % of this machine's sgemm"),
    Column("kernel", "what actually ran; (!) = the expected fast path did not"),
)


def cell_label(rec: dict[str, Any]) -> str:
    fw = rec["framework"] + ("" if rec.get("variant") == "default" else f":{rec.get('variant')}")
    return f"{fw} {rec['model']} {rec['device']} b{rec['batch_size']}"


def row(rec: dict[str, Any]) -> list[str]:
    status = rec.get("status", "?")
    if status == "ok" and rec.get("suspect"):
        status = "ok?"
    if status not in ("ok", "ok?"):
        reason = (rec.get("reason") or "")[:90]
        return [cell_label(rec), status, reason] + [""] * (len(COLUMNS) - 3)
    m = _get(rec, "metrics", {})
    tr = m["train_samples_per_s"]
    gfl = _get(rec, "analytic.achieved_gflops")
    pct = _get(rec, "analytic.pct_of_achievable")
    mem = _get(rec, "analytic.measured_memory_bytes")
    floor_x = _get(rec, "analytic.memory_over_floor")
    acc = _fmt(100 * m["test_accuracy"], ".1f") + f" @{m['trained_steps']}"
    if m["test_samples"] != 10000:
        acc += f" ({m['test_samples']} imgs)"
    return [
        cell_label(rec), status, acc,
        f"{tr['median']:,.0f} +- {tr['iqr'] / 2:,.0f}",
        _fmt(_get(m, "step_ms.median"), ".2f"),
        _fmt(_get(m, "infer_samples_per_s.median"), ",.0f"),
        _fmt(m.get("compile_s"), ".2f"),
        _fmt(mem / MB if mem is not None else None, ",.0f") + (f" ({floor_x:.1f}x)" if floor_x else ""),
        _fmt(gfl, ".1f") + (f" ({pct:.0f}%)" if pct is not None else ""),
        rec.get("kernel", "-") + ("" if rec.get("fast_path", True) else " (!)"),
    ]


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimRow:
    group: str  # framework:variant device batch
    rnn: str
    speed_ratio: float  # rnn samples/s / cnn samples/s (< 1: RNN slower)
    memory_ratio: float | None  # rnn memory / cnn memory (< 1: RNN leaner)
    floor_ratio: float | None = None  # the same ratio of the analytic floors (what physics says)

    @property
    def slower(self) -> bool:
        return self.speed_ratio < 1.0 - CLAIM_BAND

    @property
    def leaner(self) -> bool | None:
        return None if self.memory_ratio is None else self.memory_ratio < 1.0 - CLAIM_BAND

    @property
    def holds(self) -> bool | None:
        return None if self.leaner is None else (self.slower and self.leaner)


def claim_rows(records: Iterable[dict[str, Any]]) -> list[ClaimRow]:
    ok = [r for r in records if r.get("status") == "ok"]
    cnns = {(r["framework"], r["variant"], r["device"], r["batch_size"]): r for r in ok if r["model"] == CLAIM_CNN}
    out = []
    for r in ok:
        if _get(r, "cell.model.family") != "rnn":
            continue
        gk = (r["framework"], r["variant"], r["device"], r["batch_size"])
        cnn = cnns.get(gk)
        if cnn is None:
            continue
        speed = r["metrics"]["train_samples_per_s"]["median"] / cnn["metrics"]["train_samples_per_s"]["median"]
        m_r, m_c = _get(r, "analytic.measured_memory_bytes"), _get(cnn, "analytic.measured_memory_bytes")
        mem = (m_r / m_c) if (m_r and m_c and m_c > 0) else None
        f_r, f_c = _get(r, "analytic.train_floor_bytes"), _get(cnn, "analytic.train_floor_bytes")
        floor = (f_r / f_c) if (f_r and f_c) else None
        group = f"{r['framework']}:{r['variant']} {r['device']} b{r['batch_size']}"
        out.append(ClaimRow(group, r["model"], speed, mem, floor))
    return out


def _why_not(x: ClaimRow) -> str:
    parts = []
    if not x.slower:
        parts.append("faster" if x.speed_ratio > 1.0 + CLAIM_BAND else "same speed")
    if x.leaner is False:
        parts.append("more memory" if x.memory_ratio > 1.0 + CLAIM_BAND else "same memory")
    return " and ".join(parts)


def verdict_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """A one-line verdict, then one line per comparison (speed and memory ratios vs the CNN)."""
    rows = claim_rows(records)
    if not rows:
        return [f"RNN-vs-CNN claim: not tested (needs an RNN and {CLAIM_CNN} measured ok by the same framework, "
                f"device and batch size)"]
    holds = [x for x in rows if x.holds]
    fails = [x for x in rows if x.holds is False]
    head = (f"RNN-vs-CNN claim ('an RNN is slower than {CLAIM_CNN} but uses less memory', +-{CLAIM_BAND:.0%} = same): "
            f"holds in {len(holds)} of {len(rows)} comparisons")
    if holds:
        head += f" ({', '.join(sorted({x.rnn for x in holds}))})"
    if fails:
        head += f"; fails in {len(fails)} ({', '.join(sorted({x.rnn for x in fails}))})"
    lines = [head]
    for x in rows:
        mem = "?" if x.memory_ratio is None else f"{x.memory_ratio:.2f}x"
        state = "holds" if x.holds else ("no memory figure" if x.holds is None else f"fails: {_why_not(x)}")
        floor = "" if x.floor_ratio is None else f" (analytic floor {x.floor_ratio:.2f}x)"
        lines.append(f"  {x.rnn:>10} vs {CLAIM_CNN} [{x.group}]: {x.speed_ratio:.2f}x speed, {mem} memory{floor}"
                     f" -> {state}")
    return lines


def verdict(records: Iterable[dict[str, Any]]) -> str:
    return verdict_lines(records)[0]


# ---------------------------------------------------------------------------------------------
def header() -> list[str]:
    return [c.title for c in COLUMNS]


def to_markdown(records: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(header()) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row(r)) + " |" for r in records]
    return "\n".join(lines) + "\n\n" + "\n".join(
        ln if not ln.startswith("  ") else "- " + ln.strip() for ln in verdict_lines(records)) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    from .results import to_frame

    df = to_frame(records)
    keep = [c for c in df.columns if not c.startswith(("losses", "env.", "cell.", "error_tail"))
            and not c.endswith(".values")]
    return df[keep].to_csv(index=False)


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=1, sort_keys=True)


def rich_table(records: list[dict[str, Any]], title: str):
    from rich.markup import escape  # reasons hold "[tf]"-like text that rich would eat as markup
    from rich.table import Table

    t = Table(title=title, header_style="bold", show_lines=False, caption="columns: python -m bench show --explain")
    for c in COLUMNS:
        numeric = c.title not in ("cell", "status", "kernel")
        t.add_column(c.title, justify="right" if numeric else "left", overflow="fold")
    for r in records:
        cells = row(r)
        style = None if r.get("status") == "ok" and not r.get("suspect") else (
            "yellow" if r.get("status") in ("ok", "skipped") else "red")
        t.add_row(*(escape(c) for c in cells), style=style)
    return t


def print_report(records: list[dict[str, Any]], title: str, console: Any) -> None:
    from rich.markup import escape

    console.print(rich_table(records, title))
    for r in records:
        if r.get("suspect"):
            console.print(f"[yellow]suspect[/] {r['key']}: " + escape("; ".join(_get(r, "self_check.reasons", []))))
        if r.get("status") == "ok" and not r.get("fast_path", True):
            console.print(f"[yellow]slow path[/] {r['key']}: {escape(str(r.get('fast_path_note')))}")
    for line in verdict_lines(records):
        console.print(line, markup=False)
