"""Tables (rich, markdown, csv, json) and the RNN-vs-CNN verdict, from records.

The verdict tests the tutorials' claim "an RNN is slower than a CNN on MNIST but uses less
memory" cell by cell: each recurrent model against the tutorial CNN measured by the same
framework variant, on the same device, at the same batch size, in the same run.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

MB = 1e6
CLAIM_CNN = "cnn_tutorial"
# Within +-5% counts as "the same": RSS and allocator peaks move by a few MB between runs, and a
# claim of "less memory" that rests on 1% would not survive a rerun.
CLAIM_BAND = 0.05
# The speed half of the claim compares two processes' throughput. On the 2-core development
# machine one cell's samples/s moved by up to 48% across three runs of the same code (tf
# cnn_tutorial 602 / 762 / 891), partly whole-run drift that cancels in a ratio; the RNN/CNN
# ratio itself moved by up to 27% (jax lstm512 vs cnn_tutorial: 0.84 / 1.07 / 0.99). So with one
# process per cell a speed ratio inside 1/1.3..1.3 decides nothing. With >= SPEED_ROUNDS timing
# processes per cell the ratio gets a t interval over processes (bench.stats) and the +-5% band.
SINGLE_PROCESS_SPEED_BAND = 0.30
SPEED_ROUNDS = 3


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
    from .accuracy import tta_text

    return COLUMNS + ((TTA_COLUMN,) if any(tta_text(r) for r in records) else ())


def cell_label(rec: dict[str, Any]) -> str:
    fw = rec["framework"] + ("" if rec.get("variant") == "default" else f":{rec.get('variant')}")
    seed = int(_get(rec, "cell.train.seed", 0) or 0)  # shown only when not the default seed
    return f"{fw} {rec['model']} {rec['device']} b{rec['batch_size']}" + (f" seed {seed}" if seed else "")


def node_of(rec: dict[str, Any]) -> str | None:
    """The host a record was measured on, when a Ray run says so (records of a local run do not)."""
    return _get(rec, "node.hostname")


def by_node(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Records grouped by node (stable) when they come from more than one, and whether they do:
    figures from different machines are not to be read side by side as if alike."""
    several = len({node_of(r) for r in records if node_of(r)}) > 1
    return (sorted(records, key=lambda r: node_of(r) or "") if several else records), several


def _sgemm_key(rec: dict[str, Any]) -> tuple:
    return (_get(rec, "env.machine_id"), rec.get("device"), rec.get("threads"))


def pooled_sgemm(records: list[dict[str, Any]]) -> dict[tuple, float]:
    """The median sgemm GFLOP/s over a set's cells, per machine, device and thread count.
    Each worker measures sgemm for a fraction of a second at its start, and one such figure can
    be far off: in one run on the 2-core machine 17 cells measured 134-171 GFLOP/s and one 86,
    which put that cell at "92% of sgemm". The % column divides by the pooled figure instead;
    each record keeps its own calibration."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        g = _get(r, "analytic.calibration_gflops")
        if r.get("status") == "ok" and g:
            groups.setdefault(_sgemm_key(r), []).append(float(g))
    return {k: float(statistics.median(v)) for k, v in groups.items()}


def row(rec: dict[str, Any], sgemm: dict[tuple, float] | None = None, tta: bool = False,
        node: bool = False) -> list[str]:
    cells = _row(rec, sgemm)
    if node:  # records from several nodes: the cell says where it ran
        cells[0] = f"{node_of(rec) or '?'}: {cells[0]}"
    if tta:
        from .accuracy import tta_text

        cells.append(tta_text(rec) or "-")
    return cells


def _row(rec: dict[str, Any], sgemm: dict[tuple, float] | None = None) -> list[str]:
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
    pooled = (sgemm or {}).get(_sgemm_key(rec))
    if pct is not None and gfl is not None and pooled:
        pct = 100.0 * gfl / pooled
    mem = _get(rec, "analytic.measured_memory_bytes")
    floor_x = _get(rec, "analytic.memory_over_floor")
    # Two decimals: on the 10,000-image test set one image is 0.01 points, and a target such
    # as 98.0% is missed by 97.98 (two images), which one decimal would round away.
    acc = _fmt(100 * m["test_accuracy"], ".2f") + f" @{m['trained_steps']}"
    if m["test_samples"] != 10000:
        acc += f" ({m['test_samples']} imgs)"
    return [
        cell_label(rec), status, acc,
        f"{tr['median']:,.0f} +- {tr['iqr'] / 2:,.0f}",
        _fmt(_get(m, "step_ms.median"), ".2f"),
        _fmt(_get(m, "infer_samples_per_s.median"), ",.0f"),
        _fmt(m.get("compile_s"), ".2f"),
        _fmt(mem / MB if mem is not None else None, ",.1f") + (f" ({floor_x:.2f}x)" if floor_x else ""),
        _rss(rec),
        _fmt(gfl, ".1f") + (f" ({pct:.0f}%)" if pct is not None else ""),
        rec.get("kernel", "-") + ("" if rec.get("fast_path", True) else " (!)"),
    ]


def _rss(rec: dict[str, Any]) -> str:
    v = _get(rec, "memory.rss_delta_train_bytes")
    if v is None:
        return "-"
    vals = _get(rec, "memory.rss_delta_rounds_bytes") or [v]
    half = (max(vals) - min(vals)) / 2
    return f"{v / MB:,.0f}" + (f" +- {half / MB:,.0f} (n={len(vals)})" if len(vals) > 1 else " (n=1)")


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimRow:
    group: str  # framework:variant device batch
    rnn: str
    speed_ratio: float  # rnn samples/s / cnn samples/s (< 1: RNN slower)
    memory_ratio: float | None  # rnn / cnn of the judged figure (< 1: RNN leaner)
    floor_ratio: float | None = None  # the same ratio of the analytic floors (what physics says)
    memory_source: str = "tensor-level"  # what memory_ratio compares (tensor-level, allocator peak, RSS growth)
    rss_ratio: float | None = None  # rnn / cnn of the median RSS growth, shown beside
    rss_noise: float | None = None  # the larger per-process relative spread of the two RSS figures
    framework: str = ""
    batch_size: int = 0
    # "slower", "faster", "same" or None (undecided: inside the process noise)
    speed: str | None = None
    speed_basis: str = ""  # how `speed` was decided, for the table and the notes

    @property
    def slower(self) -> bool:
        return self.speed == "slower"

    @property
    def rss_within_noise(self) -> bool:
        return (self.rss_ratio is not None and self.rss_noise is not None
                and abs(self.rss_ratio - 1.0) <= max(CLAIM_BAND, self.rss_noise))

    @property
    def memory_within_noise(self) -> bool:
        """Judged on RSS (no tensor-level figure): a difference inside the spread says nothing."""
        return self.memory_source == "RSS growth" and self.rss_within_noise

    @property
    def leaner(self) -> bool | None:
        if self.memory_ratio is None or self.memory_within_noise:
            return None
        return self.memory_ratio < 1.0 - CLAIM_BAND

    @property
    def holds(self) -> bool | None:
        # Not leaner: the claim fails whatever the speed, so a noisy speed cannot flip it.
        if self.leaner is None:
            return None
        if not self.leaner:
            return False
        return None if self.speed is None else self.speed == "slower"

    @property
    def state(self) -> str:
        if self.memory_ratio is None:
            return "no memory figure"
        if self.memory_within_noise:
            return "same within noise (RSS only, difference inside its spread)"
        if self.holds:
            return "holds (slower, less memory)"
        if self.holds is None:
            return f"undecided: less memory, speed inside the process noise ({self.speed_basis})"
        return f"fails: {_why_not(self)}"


def claim_rows(records: Iterable[dict[str, Any]]) -> list[ClaimRow]:
    from .accuracy import seed_of

    ok = [r for r in records if r.get("status") == "ok"]
    several = by_node(ok)[1]
    # Paired by seed as well: a --seeds run has one comparison per seed, each labelled with it;
    # and by node: a speed ratio across two machines says nothing about the models.
    cnns = {(r["framework"], r["variant"], r["device"], r["batch_size"], seed_of(r), node_of(r)): r
            for r in ok if r["model"] == CLAIM_CNN}
    out = []
    for r in ok:
        if _get(r, "cell.model.family") != "rnn":
            continue
        seed = seed_of(r)
        gk = (r["framework"], r["variant"], r["device"], r["batch_size"], seed, node_of(r))
        cnn = cnns.get(gk)
        if cnn is None:
            continue
        speed = r["metrics"]["train_samples_per_s"]["median"] / cnn["metrics"]["train_samples_per_s"]["median"]
        m_r, m_c = _get(r, "analytic.measured_memory_bytes"), _get(cnn, "analytic.measured_memory_bytes")
        src_r = _get(r, "analytic.measured_memory_source", "RSS growth" if r["device"] == "cpu" else "allocator peak")
        src_c = _get(cnn, "analytic.measured_memory_source", src_r)
        same_source = src_r == src_c
        mem = (m_r / m_c) if (m_r and m_c and m_c > 0 and same_source) else None
        f_r, f_c = _get(r, "analytic.train_floor_bytes"), _get(cnn, "analytic.train_floor_bytes")
        floor = (f_r / f_c) if (f_r and f_c) else None
        rss_r, rss_c = _get(r, "memory.rss_delta_train_bytes"), _get(cnn, "memory.rss_delta_train_bytes")
        rss = (rss_r / rss_c) if (rss_r and rss_c and rss_c > 0) else None
        spreads = [v for v in (_get(r, "memory.rss_delta_spread"), _get(cnn, "memory.rss_delta_spread")) if v is not None]
        noise = max(spreads) if len(spreads) == 2 else None
        where = f" on {node_of(r)}" if several else ""
        group = f"{r['framework']}:{r['variant']} {r['device']}{where} b{r['batch_size']}" + \
            (f" seed {seed}" if seed else "")
        decided, basis = speed_decision(r, cnn)
        out.append(ClaimRow(group, r["model"], speed, mem, floor, src_r, rss, noise, r["framework"], r["batch_size"],
                            decided, basis))
    return out


def _why_not(x: ClaimRow) -> str:
    # Memory first and alone when it already fails the claim: the speed decision may be noisy,
    # the memory one is not, and the line must read the same run after run.
    if x.leaner is False:
        return "more memory" if x.memory_ratio > 1.0 + CLAIM_BAND else "same memory"
    return "faster" if x.speed == "faster" else "same speed"


def speed_decision(rnn: dict[str, Any], cnn: dict[str, Any]) -> tuple[str | None, str]:
    """Is the RNN slower than the CNN? The process is the unit: with >= SPEED_ROUNDS timing
    processes per cell, a 95% t interval on the ratio (unpaired) against +-CLAIM_BAND; with
    fewer, the ratio itself against the single-process noise band."""
    def per_process(r: dict[str, Any]) -> list[float]:
        m = r["metrics"]["train_samples_per_s"]
        return list(m.get("values") or []) if m.get("per_process") else []

    a, b = per_process(rnn), per_process(cnn)
    if len(a) >= SPEED_ROUNDS and len(b) >= SPEED_ROUNDS:
        from bench import stats  # scipy: loaded only when rounds exist

        est = stats.ratio_ci(b, a, paired=False)
        basis = f"{len(a)}+{len(b)} processes, 95% CI {est.lo:.2f}..{est.hi:.2f}x"
        if est.hi < 1.0 - CLAIM_BAND:
            return "slower", basis
        if est.lo > 1.0 + CLAIM_BAND:
            return "faster", basis
        if 1.0 - CLAIM_BAND <= est.lo and est.hi <= 1.0 + CLAIM_BAND:
            return "same", basis
        return None, basis
    ratio = rnn["metrics"]["train_samples_per_s"]["median"] / cnn["metrics"]["train_samples_per_s"]["median"]
    basis = f"one process per cell: decided only outside 1/{1 + SINGLE_PROCESS_SPEED_BAND:.1f}..{1 + SINGLE_PROCESS_SPEED_BAND:.1f}x"
    if ratio < 1.0 / (1.0 + SINGLE_PROCESS_SPEED_BAND):
        return "slower", basis
    if ratio > 1.0 + SINGLE_PROCESS_SPEED_BAND:
        return "faster", basis
    return None, basis


def verdict_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """The verdict: a headline, then one line per comparison with its decision only. The
    decisions rest on deterministic figures (tensor-level / allocator memory) and on speed
    ratios far from the band, so the same code gives the same lines run after run; the
    measured ratios are in claim_table()."""
    rows = claim_rows(records)
    if not rows:
        return [f"RNN-vs-CNN claim: not tested (needs an RNN and {CLAIM_CNN} measured ok by the same framework, "
                f"device and batch size)"]
    holds = [x for x in rows if x.holds]
    fails = [x for x in rows if x.holds is False]
    sources = sorted({x.memory_source for x in rows})
    head = (f"RNN-vs-CNN claim ('an RNN is slower than {CLAIM_CNN} but uses less memory'; memory: "
            f"{', '.join(sources)}; +-{CLAIM_BAND:.0%} = same): holds in {len(holds)} of {len(rows)} comparisons")
    if holds:
        head += f" ({_by_framework(holds)})"
    if fails:
        head += f"; fails in {len(fails)} ({_by_framework(fails)})"
    noisy = [x for x in rows if x.holds is None]
    if noisy:
        head += f"; undecided in {len(noisy)}"
    lines = [head]
    for x in rows:
        lines.append(f"  {x.rnn:>10} vs {CLAIM_CNN} [{x.group}]: {x.state}")
    return lines


def _by_framework(rows: list[ClaimRow]) -> str:
    by: dict[str, list[str]] = {}
    for x in rows:
        by.setdefault(x.group.split(" ")[0], []).append(x.rnn + (f"@b{x.batch_size}" if len({r.batch_size for r in rows}) > 1 else ""))
    # One name per model: a --seeds run compares each seed, which would repeat every name.
    def names(v: list[str]) -> str:
        return ", ".join(n + (f" (x{v.count(n)})" if v.count(n) > 1 else "") for n in dict.fromkeys(v))

    return "; ".join(f"{g}: {names(v)}" for g, v in by.items())


def claim_table(records: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Rows of the verdict table: the measured ratios behind each decision."""
    out = []
    for x in claim_rows(records):
        rss = "-" if x.rss_ratio is None else f"{x.rss_ratio:.2f}x" + (" (within noise)" if x.rss_within_noise else "")
        out.append([x.rnn, x.group, f"{x.speed_ratio:.2f}x", "-" if x.memory_ratio is None else
                    f"{x.memory_ratio:.2f}x", "-" if x.floor_ratio is None else f"{x.floor_ratio:.2f}x", rss,
                    x.state])
    return out


CLAIM_HEADER = ["rnn", "vs cnn_tutorial at", "speed", "memory (judged)", "analytic floor", "RSS growth", "verdict"]


def flip_points(records: Iterable[dict[str, Any]]) -> list[str]:
    """Where the memory claim changes sides as the batch grows, per framework variant, device
    and RNN: the measured memory ratio crossing 1 between two measured batch sizes."""
    rows = claim_rows(records)
    by: dict[tuple[str, str], list[ClaimRow]] = {}
    for x in rows:
        by.setdefault((x.group.rsplit(" ", 1)[0], x.rnn), []).append(x)
    out = []
    for (grp, rnn), xs in by.items():
        xs = sorted((x for x in xs if x.memory_ratio is not None), key=lambda x: x.batch_size)
        if len(xs) < 2:
            continue
        for a, b in zip(xs, xs[1:]):
            if (a.memory_ratio < 1) != (b.memory_ratio < 1):
                # log-linear interpolation of the ratio in batch size: where it would cross 1.
                la, lb = math.log(a.batch_size), math.log(b.batch_size)
                ra, rb = math.log(a.memory_ratio), math.log(b.memory_ratio)
                cross = math.exp(la + (0 - ra) * (lb - la) / (rb - ra))
                less_below = a.memory_ratio < 1
                out.append(f"{rnn} [{grp}] uses {'less' if less_below else 'more'} memory than {CLAIM_CNN} below "
                           f"batch ~{cross:.0f} and {'more' if less_below else 'less'} above it (measured "
                           f"{a.memory_ratio:.2f}x at b{a.batch_size}, {b.memory_ratio:.2f}x at b{b.batch_size})")
        if all((x.memory_ratio < 1) == (xs[0].memory_ratio < 1) for x in xs):
            out.append(f"{rnn} [{grp}] uses {'less' if xs[0].memory_ratio < 1 else 'more'} memory than {CLAIM_CNN} "
                       f"at every measured batch (b{xs[0].batch_size}..b{xs[-1].batch_size}: "
                       f"{xs[0].memory_ratio:.2f}x..{xs[-1].memory_ratio:.2f}x)")
    return out


def verdict(records: Iterable[dict[str, Any]]) -> str:
    return verdict_lines(records)[0]


# ---------------------------------------------------------------------------------------------
def header(records: list[dict[str, Any]] | None = None) -> list[str]:
    return [c.title for c in (columns(records) if records is not None else COLUMNS)]


def to_markdown(records: list[dict[str, Any]]) -> str:
    from . import accuracy

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

    t = Table(title=title, header_style="bold", show_lines=False, caption="columns: python -m bench show --explain")
    cols = columns(records)
    for c in cols:
        numeric = c.title not in ("cell", "status", "kernel")
        t.add_column(c.title, justify="right" if numeric else "left", overflow="fold")
    sgemm = pooled_sgemm(records)
    grouped, several = by_node(records)
    for r in grouped:
        cells = row(r, sgemm, len(cols) > len(COLUMNS), several)
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

    from . import accuracy

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
