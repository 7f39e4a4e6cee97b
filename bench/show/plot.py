"""Plots of a run, made to be read at GitHub's width: at most 1200 px wide, no text under 9 pt.

- `plot_run`: training speed and memory per model, one point per framework variant, device and
  batch size, the analytic floor beside each memory figure;
- `plot_main_table`: the main table at one batch size as a dot plot, samples/s beside memory
  with its multiple of the analytic floor, a dot per ok cell;
- `plot_claim`: the verdict at a glance (claim-scatter.png: each comparison of
  bench.decide.claim a point, speed ratio against memory ratio, the claim's corner shaded and the
  comparisons where it holds named, its count in the title); over several batch sizes also each
  RNN's memory against cnn_tutorial's, and the two ratios against batch size;
- `plot_accuracy` (a run that evaluated during training): test accuracy against training
  seconds, the target in the legend.

Every title's second line says where and when (run_about: host, threads, profile, date).

A framework has one colour and a model one marker in every plot (several variants or devices of
one framework differ by line style and hollow markers), so a reader learns the key once. Each
`*_figure` function builds the matplotlib figure (what tests/test_plot.py inspects); the `plot_*`
functions write it. matplotlib is the `[plot]` extra; without it `bench plot` says how to get it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..decide.claim import CLAIM_BAND, CLAIM_CNN, SINGLE_PROCESS_SPEED_BAND, SPEED_ROUNDS, ClaimRow, claim_rows
from ..records.record import Record, Status, by_node, cell_label, env_suffix, framework_label, node_of, seed_of

DPI = 100
MAX_WIDTH_PX = 1200  # GitHub shows a README image at most ~1000 px wide: wider shrinks its text
MIN_FONT_PT = 9
FOOT_IN = 0.25  # the strip at the foot that holds the source line
LEGEND_COLUMNS = 6
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 12, "figure.labelsize": 10,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}

# Okabe-Ito colours: told apart by colour-blind readers too. Frameworks the map does not know
# get the spare ones in the order they are first drawn, so one process keeps one mapping.
FRAMEWORK_COLOURS = {"torch": "#D55E00", "tf": "#0072B2", "jax": "#009E73"}
SPARE_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#000000")
MODEL_MARKERS = {"lstm128": "o", "lstm512": "s", "bilstm512": "^", "lstm3x256": "D", "gru128": "v", "rnn128": "<",
                 "lstm128_varlen": ">", CLAIM_CNN: "X", "cnn_small": "P"}
SPARE_MARKERS = ("h", "*", "p", "8", "d")
SERIES_LINES = ("-", "--", ":", "-.")  # the k-th series of one framework in a plot (variant, device)
CLAIM_SIDE_COLOUR = "#F0E442"  # Okabe-Ito yellow: no framework's
FLOOR_LINE = {"color": "black", "ls": ":", "lw": 1.5}
CNN_FLOOR_LINE = {"color": "0.45", "ls": "-.", "lw": 1.2}
_colours: dict[str, str] = dict(FRAMEWORK_COLOURS)
_markers: dict[str, str] = dict(MODEL_MARKERS)


class PlotUnavailable(RuntimeError):
    pass


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("plots need matplotlib: pip install 'lstm-bench[plot]'") from None
    return plt


def framework_colour(framework: str) -> str:
    if framework not in _colours:
        _colours[framework] = SPARE_COLOURS[(len(_colours) - len(FRAMEWORK_COLOURS)) % len(SPARE_COLOURS)]
    return _colours[framework]


def model_marker(model: str) -> str:
    if model not in _markers:
        _markers[model] = SPARE_MARKERS[(len(_markers) - len(MODEL_MARKERS)) % len(SPARE_MARKERS)]
    return _markers[model]


@dataclass(frozen=True)
class SeriesStyle:
    """How one framework variant/device series is drawn: its framework's colour; the k-th
    series of that framework in the plot the k-th line style, hollow markers on odd k."""
    framework: str
    colour: str
    line: str
    filled: bool

    def kw(self, marker: str, **extra: Any) -> dict[str, Any]:
        return {"color": self.colour, "ls": self.line, "marker": marker, "markeredgecolor": self.colour,
                "markerfacecolor": self.colour if self.filled else "white", "gid": f"framework={self.framework}",
                **extra}


def series_styles(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], SeriesStyle]:
    """(framework, series label) pairs in drawing order -> their styles."""
    out: dict[tuple[str, str], SeriesStyle] = {}
    per_fw: dict[str, int] = {}
    for fw, label in dict.fromkeys(keys):
        k = per_fw[fw] = per_fw.get(fw, -1) + 1
        out[(fw, label)] = SeriesStyle(fw, framework_colour(fw), SERIES_LINES[k % len(SERIES_LINES)], k % 2 == 0)
    return out


def _series_label(rec: dict[str, Any], batch: bool = False, seed: bool = True) -> str:
    """torch, tf:xla gpu, ... : the device when not cpu, the node and seed when there are any."""
    label = framework_label(rec) + ("" if rec["device"] == "cpu" else f" {rec['device']}")
    node = node_of(rec)
    return label + (f" on {node}" if node else "") + (f" seed {seed_of(rec)}" if seed and seed_of(rec) else "") + \
        (f" b{rec['batch_size']}" if batch else "")


def legend_handles(styles: dict[tuple[str, str], SeriesStyle], marker: str | None = None) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], label=label, lw=2, **st.kw(marker or "None")) for (_, label), st in styles.items()]


def _number(v: float, suffix: str = "") -> str:
    return (f"{v:,.0f}" if v >= 10 else f"{v:g}") + suffix


def _log_axis(axis: Any, suffix: str = "") -> None:
    """Log scale with labelled ticks at 1, 2 and 5 of each decade, written as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _number(v, suffix)))
    axis.set_minor_locator(NullLocator())


def batch_axis(ax: Any, batches: list[int]) -> None:
    """Ticks at the batch sizes measured (16, 64, 256, 1024), not at powers of ten."""
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(batches[0] / 1.35, batches[-1] * 1.35)


def style():
    """The context every figure is built in: the font sizes and grid of STYLE."""
    return _plt().rc_context(STYLE)


def new_figure(rows: int, cols: int, height_in: float, width_in: float | None = None, **kw: Any):
    """A grid of panels at most MAX_WIDTH_PX wide (6 in a column unless `width_in` says), laid out
    by matplotlib, a strip left at the foot for the source line (build it inside `style()`)."""
    width_in = min(MAX_WIDTH_PX / DPI, width_in or 6.0 * cols)
    fig, axes = _plt().subplots(rows, cols, figsize=(width_in, height_in), squeeze=False, layout="constrained", **kw)
    foot = FOOT_IN / height_in
    fig.get_layout_engine().set(rect=(0, foot, 1, 1 - foot))  # a strip below for the source line
    return fig, axes


def finish(fig: Any, title: str, source: str, groups: list[list[Any]], about: str = "") -> None:
    """The title and one legend for the whole figure above the panels (each group of handles on
    a row of its own: the colours, then the markers, then the reference lines), and the source
    line at the foot. The title is the legend's own: constrained layout makes room for an outside
    legend and for a suptitle, but sets them on top of each other. `about` (run_about: host, threads,
    profile, date) is the title's second line."""
    from matplotlib.lines import Line2D

    groups = [g for g in groups if g] or [[Line2D([], [], ls="none", label=" ")]]
    ncol = min(LEGEND_COLUMNS, max(len(g) for g in groups))
    grid: list[Any] = []
    for g in groups:  # each group padded to whole rows with blank entries
        grid += g + [Line2D([], [], ls="none", label=" ")] * (-len(g) % ncol)
    nrow = len(grid) // ncol
    # matplotlib fills a legend column by column: handed over column-major, it reads row by row
    legend = fig.legend(handles=[grid[r * ncol + c] for c in range(ncol) for r in range(nrow)],
                        loc="outside upper center", ncol=ncol, frameon=False,
                        title=title + (f"\n{about}" if about else ""),
                        title_fontproperties={"size": STYLE["figure.titlesize"]})
    legend.get_title().set_multialignment("center")
    fig.text(0.995, 0.005, source, ha="right", va="bottom", fontsize=MIN_FONT_PT, color="0.35")


# --- what every title says besides its subject: where, when, how -----------------------------
def _date(utc: str) -> str:
    """2026-12-02T14:42:44Z -> 2026-12-02 14:42 UTC."""
    m = re.match(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})", utc or "")
    return f"{m.group(1)} {m.group(2)} UTC" if m else (utc or "")


def run_about(records: list[dict[str, Any]], manifest: dict[str, Any] | None = None) -> str:
    """The title's second line: host (CPU model and cores, the GPU when a cell used one), threads,
    profile and date (the manifest's created_utc, else the earliest record's). Read from the
    records, the manifest filling what they lack; several values (a Ray run over hosts) are joined
    with "/"; what neither says is left out."""
    manifest = manifest or {}
    envs = [r.get("env") or {} for r in records if r.get("env")] or [manifest.get("env") or {}]

    def joined(vals: Iterable[Any]) -> str:
        return "/".join(sorted({str(v) for v in vals if v not in (None, "")}))

    host = joined(e.get("cpu_model") for e in envs) or "CPU not recorded"
    cores = joined(e.get("cpu_logical_cores") for e in envs)
    host += f", {cores} cores" if cores else ""
    gpus = joined(g for r in records if r.get("device", "cpu") != "cpu" for g in (r.get("env") or {}).get("gpus") or [])
    host += f", {gpus}" if gpus else ""
    threads = joined(r.get("threads") for r in records if r.get("threads")) or \
        joined(e.get("threads") for e in envs if e.get("threads"))
    profile = joined(r.get("profile") for r in records) or joined([manifest.get("profile")])
    date = _date(manifest.get("created_utc") or min((e.get("utc") for e in envs if e.get("utc")), default=""))
    parts = [host, f"{threads} threads" if threads else "", f"{profile} profile" if profile else "", date]
    return " · ".join(p for p in parts if p)


def _about(records: list[dict[str, Any]], about: str | None) -> str:
    return run_about(records) if about is None else about


def figure_title(fig: Any) -> str:
    return fig.legends[0].get_title().get_text() if fig.legends else ""


def save(fig: Any, out: Path) -> Path:
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == Status.OK]


def _by_batch(recs: Iterable[dict[str, Any]], read: Callable[[Record], float | None]) -> tuple[list[int], list[float]]:
    pts = sorted((r["batch_size"], read(Record(r))) for r in recs)
    pts = [(b, v) for b, v in pts if v]
    return [b for b, _ in pts], [v / 1e6 for _, v in pts]


def _floor_by_batch(ok: list[dict[str, Any]], model: str) -> tuple[list[int], list[float]]:
    """A model's analytic floor (MB) at each batch size: the spec's, the same in every framework."""
    return _by_batch({r["batch_size"]: r for r in ok if r["model"] == model}.values(), lambda rv: rv.train_floor_bytes)


# --- throughput and memory per model --------------------------------------------------------
def _speed(rv: Record) -> tuple[float, float, float] | None:
    """Median training samples/s and its distances to the quartiles (for error bars)."""
    s = rv.summary("train_samples_per_s")
    if not s or not s.get("median"):
        return None
    med = s["median"]
    return med, med - s.get("q1", med), s.get("q3", med) - med


def errorbar(ax: Any, xs: list[float], points: list[tuple[float, float, float]], st: SeriesStyle, marker: str,
             **kw: Any) -> None:
    """(value, distance down, distance up) at each x, in the series' style."""
    bars = ax.errorbar(xs, [v[0] for v in points], yerr=[[v[1] for v in points], [v[2] for v in points]], capsize=3,
                       **st.kw(marker, **kw))
    for artist in bars.lines[2]:  # the bars themselves, tagged like the line
        artist.set_gid(f"framework={st.framework}")


def _run_by_model(speed_ax: Any, mem_ax: Any, ok: list[dict[str, Any]]) -> list[list[Any]]:
    """One batch size: models side by side, a point per framework variant, the floor a dash."""
    from matplotlib.lines import Line2D

    models = list(dict.fromkeys(r["model"] for r in ok))
    styles = series_styles((r["framework"], _series_label(r)) for r in ok)
    step = min(0.8 / len(styles), 0.18)
    for i, (key, st) in enumerate(styles.items()):
        dx = (i - (len(styles) - 1) / 2) * step
        for j, m in enumerate(models):
            rec = next((r for r in ok if r["model"] == m and (r["framework"], _series_label(r)) == key), None)
            if rec is None:
                continue
            rv = Record(rec)
            if _speed(rv):
                errorbar(speed_ax, [j + dx], [_speed(rv)], st, model_marker(m), ls="none", markersize=8)
            if rv.measured_memory_bytes:
                mem_ax.plot([j + dx], [rv.measured_memory_bytes / 1e6], **st.kw(model_marker(m), ls="none",
                                                                                  markersize=8))
            if rv.train_floor_bytes:
                mem_ax.plot([j + dx], [rv.train_floor_bytes / 1e6], marker="_", markersize=14, mew=2, ls="none",
                            color="black")
    for ax in (speed_ax, mem_ax):
        ax.set_xticks(range(len(models)), models, rotation=20 if len(models) > 4 else 0)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_xlabel("model")
        ax.grid(False, axis="x")
    floor = Line2D([], [], marker="_", markersize=14, mew=2, ls="none", color="black", label="analytic floor")
    return [legend_handles(styles, "o"), [floor]]


def _run_by_batch(speed_ax: Any, mem_ax: Any, ok: list[dict[str, Any]], batches: list[int]) -> list[list[Any]]:
    """Several batch sizes: a line per framework variant and model against batch size, each
    model's analytic floor a black dotted line with its marker."""
    from matplotlib.lines import Line2D

    models = list(dict.fromkeys(r["model"] for r in ok))
    styles = series_styles((r["framework"], _series_label(r)) for r in ok)
    for key, st in styles.items():
        for m in models:
            rs = sorted((r for r in ok if r["model"] == m and (r["framework"], _series_label(r)) == key),
                        key=lambda r: r["batch_size"])
            pts = [(r["batch_size"], _speed(Record(r))) for r in rs]
            pts = [(b, v) for b, v in pts if v]
            if pts:
                errorbar(speed_ax, [b for b, _ in pts], [v for _, v in pts], st, model_marker(m), lw=1.6,
                          markersize=6)
            xs, ys = _by_batch(rs, lambda rv: rv.measured_memory_bytes)
            if xs:
                mem_ax.plot(xs, ys, lw=1.6, markersize=6, **st.kw(model_marker(m)))
    for m in models:
        xs, ys = _floor_by_batch(ok, m)
        if xs:
            mem_ax.plot(xs, ys, marker=model_marker(m), markersize=4, **FLOOR_LINE)
    for ax in (speed_ax, mem_ax):
        batch_axis(ax, batches)
        ax.set_xlabel("batch size (samples per training step)")
    markers = [Line2D([], [], color="0.3", marker=model_marker(m), ls="none", markersize=7, label=m) for m in models]
    floor = Line2D([], [], marker="o", markersize=4, label="analytic floor (marker: the model's)", **FLOOR_LINE)
    return [legend_handles(styles), markers, [floor]]


def run_figure(records: list[dict[str, Any]], source: str, about: str | None = None):
    """Training speed and memory of every ok cell: per model at one batch size, or against
    batch size when the run has several."""
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    ok = _ok(records)
    if not ok:
        raise PlotUnavailable("no ok cell to plot")
    batches = sorted({r["batch_size"] for r in ok})
    sources = sorted({Record(r).measured_memory_source() or "measured" for r in ok if Record(r).measured_memory_bytes})
    with style():
        fig, ((speed_ax, mem_ax),) = new_figure(1, 2, 5.4)
        if len(batches) == 1:
            groups = _run_by_model(speed_ax, mem_ax, ok)
            title = f"Training speed and memory per model, batch {batches[0]}"
        else:
            groups = _run_by_batch(speed_ax, mem_ax, ok, batches)
            title = "Training speed and memory against batch size"
        for ax in (speed_ax, mem_ax):
            ax.set_yscale("log")
            ax.margins(y=0.08)
            _log_axis(ax.yaxis)
        speed_ax.set(title="Training speed (median of the timed repeats; bars: quartiles)",
                     ylabel="training samples per second (log scale)")
        mem_ax.set(title="Memory of one training step", ylabel=f"MB, {' / '.join(sources)} (log scale)")
        finish(fig, title, source, groups, _about(records, about))
    return fig


def plot_run(records: list[dict[str, Any]], out: Path, source: str, about: str | None = None) -> Path:
    """`source` says where the figures come from (e.g. "run 20261202-..."): a line at the foot."""
    return save(run_figure(records, source, about), out)


# --- the main table as a chart: speed and memory per framework and model at one batch ---------
MAIN_TABLE_BATCH = 128  # the quick and full profiles' batch: preferred when a run has several


def main_table_batch(records: list[dict[str, Any]]) -> int | None:
    """The batch size the main-table chart shows: the one with the most ok cells, ties to the one
    nearest MAIN_TABLE_BATCH (in doublings), then the larger."""
    counts: dict[int, int] = {}
    for r in _ok(records):
        counts[r["batch_size"]] = counts.get(r["batch_size"], 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda b: (counts[b], -abs(math.log2(b / MAIN_TABLE_BATCH)), b))


def main_table_figure(records: list[dict[str, Any]], source: str, about: str | None = None,
                      batch: int | None = None):
    """The main table (`bench show`) as a dot plot at one batch size (main_table_batch unless
    given): a row per model, a dot per framework variant in each; training samples/s (bars: the
    quartiles) beside the memory of a training step with its multiple of the analytic floor, the
    floor a black line. Every ok cell of that batch is one dot in each panel (none in the memory
    panel without a memory figure). None without an ok cell."""
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    from matplotlib.lines import Line2D

    batch = batch or main_table_batch(records)
    cells = [r for r in _ok(records) if r["batch_size"] == batch]
    if not cells:
        return None
    models = list(dict.fromkeys(r["model"] for r in cells))
    styles = series_styles((r["framework"], _series_label(r)) for r in cells)
    step = min(0.8 / len(styles), 0.27)
    src = sorted({Record(r).measured_memory_source() or "measured" for r in cells if Record(r).measured_memory_bytes})
    with style():
        fig, ((speed_ax, mem_ax),) = new_figure(1, 2, 2.2 + 0.24 * len(models) * max(len(styles), 2), sharey=True)
        speeds, mems = [], []
        for k, (key, st) in enumerate(styles.items()):
            dy = (k - (len(styles) - 1) / 2) * step
            for i, m in enumerate(models):
                rec = next((r for r in cells if r["model"] == m and (r["framework"], _series_label(r)) == key), None)
                if rec is None:
                    continue
                rv, y, name = Record(rec), i + dy, f"_cell {cell_label(rec)}"
                sp = _speed(rv)
                if sp:
                    bars = speed_ax.errorbar([sp[0]], [y], xerr=[[sp[1]], [sp[2]]], capsize=2.5,
                                             **st.kw(model_marker(m), ls="none", markersize=7, label=name))
                    bars.lines[0].set_label(name)  # errorbar gives the label to its container only
                    for artist in bars.lines[2]:
                        artist.set_gid(f"framework={st.framework}")
                    speed_ax.annotate(_number(sp[0]), (sp[0] + sp[2], y), xytext=(5, 0), textcoords="offset points",
                                      va="center", fontsize=MIN_FONT_PT)
                    speeds.append(sp[0])
                mem = rv.measured_memory_bytes
                if mem:
                    mem_ax.plot([mem / 1e6], [y], **st.kw(model_marker(m), ls="none", markersize=7, label=name))
                    over = f" ({mem / rv.train_floor_bytes:.1f}x)" if rv.train_floor_bytes else ""
                    mem_ax.annotate(f"{mem / 1e6:,.0f} MB{over}" if mem >= 1e7 else f"{mem / 1e6:.1f} MB{over}",
                                    (mem / 1e6, y), xytext=(7, 0), textcoords="offset points", va="center",
                                    fontsize=MIN_FONT_PT)
                    mems.append(mem / 1e6)
        for i, m in enumerate(models):
            floor = next((Record(r).train_floor_bytes for r in cells if r["model"] == m and
                          Record(r).train_floor_bytes), None)
            if floor:
                mem_ax.plot([floor / 1e6] * 2, [i - 0.42, i + 0.42], **FLOOR_LINE)
                mems.append(floor / 1e6)
        for ax, vals, room in ((speed_ax, speeds, 3.0), (mem_ax, mems, 6.0)):
            ax.set_xscale("log")
            if vals:
                ax.set_xlim(min(vals) / 1.6, max(vals) * room)  # room on the right for the figures
            _log_axis(ax.xaxis)
            ax.grid(False, axis="y")
            for i in range(1, len(models)):
                ax.axhline(i - 0.5, color="0.85", lw=0.8)
        speed_ax.set_yticks(range(len(models)), models)
        speed_ax.set_ylim(len(models) - 0.5, -0.5)  # the table's order, top to bottom
        speed_ax.set(title="Training speed (median; bars: quartiles)", xlabel="training samples per second (log scale)")
        fig.supylabel("model")
        mem_ax.set(title="Memory of one training step (x the analytic floor)",
                   xlabel=f"MB, {' / '.join(src) or 'not measured'} (log scale)")
        mem_ax.tick_params(axis="y", labelleft=False)
        floor = Line2D([], [], label="analytic floor", **FLOOR_LINE)
        finish(fig, f"The main table as a chart: {len(cells)} cells at batch {batch}, a dot per framework and model",
               source, [legend_handles(styles, "o") + [floor]], _about(records, about))
    return fig


def plot_main_table(records: list[dict[str, Any]], out_dir: Path, source: str, about: str | None = None) -> list[Path]:
    """main-table.png (at main_table_batch), when the run has an ok cell."""
    fig = main_table_figure(records, source, about)
    return [] if fig is None else [save(fig, out_dir / "main-table.png")]


# --- the RNN-vs-CNN claim across batch sizes ------------------------------------------------
def claim_memory_figure(records: list[dict[str, Any]], source: str, about: str | None = None):
    """One panel per RNN (shared axes): its measured memory and cnn_tutorial's in each framework
    variant, against batch size, with both analytic floors."""
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    from matplotlib.lines import Line2D

    ok = _ok(records)
    batches = sorted({r["batch_size"] for r in ok})
    panels = list(dict.fromkeys(r["model"] for r in ok if Record(r).family == "rnn")) or \
        list(dict.fromkeys(r["model"] for r in ok))
    styles = series_styles((r["framework"], _series_label(r)) for r in ok)
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    src = sorted({Record(r).measured_memory_source() or "measured" for r in ok if Record(r).measured_memory_bytes})
    with style():
        fig, axes = new_figure(rows, cols, 1.4 + 3.2 * rows, sharex=True, sharey=True)
        for ax, m in zip(axes.flat, panels):
            compared = [m] + ([CLAIM_CNN] if m != CLAIM_CNN else [])  # the panel's RNN thick, the CNN thin
            for key, st in styles.items():
                mine = [r for r in ok if (r["framework"], _series_label(r)) == key]
                for model in compared:
                    xs, ys = _by_batch((r for r in mine if r["model"] == model), lambda rv: rv.measured_memory_bytes)
                    if xs:
                        thick = model == m
                        ax.plot(xs, ys, lw=2.2 if thick else 1.2, alpha=1.0 if thick else 0.75,
                                markersize=7 if thick else 6, **st.kw(model_marker(model)))
            for model, line in zip(compared, (FLOOR_LINE, CNN_FLOOR_LINE)):
                xs, ys = _floor_by_batch(ok, model)
                if xs:
                    ax.plot(xs, ys, **line)
            ax.set_title(m if m == CLAIM_CNN else f"{m} against {CLAIM_CNN}")
            ax.set_yscale("log")
            _log_axis(ax.yaxis)
            batch_axis(ax, batches)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.supxlabel("batch size (samples per training step)")
        fig.supylabel(f"MB per training step, {' / '.join(src)} (log scale)")
        handles = [Line2D([], [], color="0.3", lw=2.2, marker="o", label="the panel's RNN, measured"),
                    Line2D([], [], color="0.3", lw=1.2, alpha=0.75, marker=model_marker(CLAIM_CNN),
                           label=f"{CLAIM_CNN}, measured"),
                    Line2D([], [], label="analytic floor of the RNN", **FLOOR_LINE),
                    Line2D([], [], label=f"analytic floor of {CLAIM_CNN}", **CNN_FLOOR_LINE)]
        finish(fig, f"Memory of one training step against batch size: each RNN and {CLAIM_CNN}", source,
               [legend_handles(styles), handles], _about(records, about))
    return fig


def claim_ratio_figure(records: list[dict[str, Any]], source: str, about: str | None = None):
    """RNN / cnn_tutorial speed and memory against batch size, one line per framework variant
    and RNN; the claim's side of parity shaded, the +-CLAIM_BAND "same" band grey."""
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = claim_rows(_ok(records))
    if not rows:
        return None
    batches = sorted({x.batch_size for x in rows})
    label_of = {x.group: re.sub(r" b\d+(?= |$)", "", x.group).replace(":default", "").replace(" cpu", "")
                for x in rows}
    styles = series_styles((x.framework, label_of[x.group]) for x in rows)
    ratios = [v for x in rows for v in (x.speed_ratio, x.memory_ratio) if v]
    lo, hi = min(ratios + [0.8]) / 1.3, max(ratios + [1.25]) * 1.3
    with style():
        fig, ((speed_ax, mem_ax),) = new_figure(1, 2, 5.6, sharex=True, sharey=True)
        for key, st in styles.items():
            for rnn in dict.fromkeys(x.rnn for x in rows):
                xs = sorted((x for x in rows if (x.framework, label_of[x.group]) == key and x.rnn == rnn),
                            key=lambda x: x.batch_size)
                if not xs:
                    continue
                b = [x.batch_size for x in xs]
                speed_ax.plot(b, [x.speed_ratio for x in xs], lw=1.8, markersize=7, **st.kw(model_marker(rnn)))
                mem_ax.plot(b, [x.memory_ratio or float("nan") for x in xs], lw=1.8, markersize=7,
                            **st.kw(model_marker(rnn)))
        for ax, what in ((speed_ax, "Training speed"), (mem_ax, "Memory of a training step")):
            ax.axhspan(lo / 10, 1 - CLAIM_BAND, color=CLAIM_SIDE_COLOUR, alpha=0.3, lw=0)
            ax.axhspan(1 - CLAIM_BAND, 1 + CLAIM_BAND, color="0.6", alpha=0.3, lw=0)
            ax.axhline(1.0, color="black", lw=1)
            ax.set_title(f"{what}: RNN / {CLAIM_CNN}")
            ax.set_yscale("log")
            ax.set_ylim(lo, hi)
            _log_axis(ax.yaxis, "x")
            batch_axis(ax, batches)
        fig.supxlabel("batch size (samples per training step)")
        fig.supylabel(f"ratio RNN / {CLAIM_CNN} (log scale)")
        src = sorted({x.memory_source for x in rows})
        models = [Line2D([], [], color="0.3", marker=model_marker(m), ls="none", markersize=7, label=m)
                  for m in dict.fromkeys(x.rnn for x in rows)]
        shades = [Patch(color=CLAIM_SIDE_COLOUR, alpha=0.3, label="the claim's side: the RNN slower (left), leaner "
                                                                  "(right)"),
                  Patch(color="0.6", alpha=0.3, label=f"within ±{CLAIM_BAND:.0%}: the same"),
                  Line2D([], [], color="black", lw=1, label=f"parity with {CLAIM_CNN}")]
        finish(fig, f"Where 'an RNN is slower than {CLAIM_CNN} but uses less memory' holds (memory: {', '.join(src)})",
               source, [legend_handles(styles), models, shades], _about(records, about))
    return fig


def claim_figures(records: list[dict[str, Any]], source: str, about: str | None = None) -> list[tuple[str, Any]]:
    """(file name, figure): the scatter of the verdict for any run with an RNN and cnn_tutorial
    measured alike; over several batch sizes also memory and the two ratios against batch size."""
    out = []
    scatter = claim_scatter_figure(records, source, about)
    if scatter is not None:
        out.append(("claim-scatter.png", scatter))
    if len({r["batch_size"] for r in _ok(records)}) < 2:
        return out
    out.append(("claim-memory.png", claim_memory_figure(records, source, about)))
    ratios = claim_ratio_figure(records, source, about)
    return out + ([("claim-ratios.png", ratios)] if ratios is not None else [])


def plot_claim(records: list[dict[str, Any]], out_dir: Path, source: str, about: str | None = None) -> list[Path]:
    """claim-scatter.png when an RNN and cnn_tutorial were both measured; for a run over several
    batch sizes claim-memory.png and claim-ratios.png too. Returns the PNGs written."""
    return [save(fig, out_dir / name) for name, fig in claim_figures(records, source, about)]


# --- the verdict at a glance: speed ratio against memory ratio -------------------------------
def _claim_group(rec: dict[str, Any], several_nodes: bool) -> str:
    """The comparison a record belongs to, spelt as ClaimRow.group (bench.decide.claim.claim_rows)."""
    where = f" on {node_of(rec)}" if several_nodes else ""
    seed = seed_of(rec)
    return f"{rec['framework']}:{rec['variant']}{env_suffix(rec)} {rec['device']}{where} b{rec['batch_size']}" + \
        (f" seed {seed}" if seed else "")


def _per_process(rec: dict[str, Any]) -> list[float]:
    """Per-process training samples/s of a pooled record (what claim.speed_decision reads)."""
    m = rec["metrics"]["train_samples_per_s"]
    return list(m.get("values") or []) if m.get("per_process") else []


def claim_speed_intervals(records: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(ClaimRow.group, rnn) -> the 95% interval of the RNN / cnn_tutorial speed ratio that
    claim.speed_decision judges: the same t interval over processes (stats.ratio_ci, unpaired),
    for the comparisons whose two cells both have >= SPEED_ROUNDS timing processes. Memory has
    none: the tensor-level figure is exact."""
    ok = _ok(records)
    several = by_node(ok)[1]
    cells = {(_claim_group(r, several), r["model"]): r for r in ok}
    out = {}
    for (group, model), rec in cells.items():
        cnn = cells.get((group, CLAIM_CNN))
        if model == CLAIM_CNN or cnn is None or Record(rec).family != "rnn":
            continue
        a, b = _per_process(rec), _per_process(cnn)
        if len(a) >= SPEED_ROUNDS and len(b) >= SPEED_ROUNDS:
            from ..decide import stats  # numpy and scipy: loaded only when rounds exist

            est = stats.ratio_ci(b, a, paired=False)
            out[(group, model)] = (est.lo, est.hi)
    return out


def claim_point_label(x: ClaimRow) -> str:
    """"torch lstm512 b16": the words written beside a comparison where the claim holds."""
    g = x.group.replace(":default", "").replace(" cpu", "")
    return re.sub(r" b(\d+)", lambda m: f" {x.rnn} b{m.group(1)}", g, count=1)


def _spread_labels(ys: list[float], lo: float, hi: float, gap: float) -> list[float]:
    """Label heights (log10) near the wanted `ys` (sorted high to low), at least `gap` apart,
    inside lo..hi."""
    out: list[float] = []
    for y in ys:
        out.append(min(y, hi, out[-1] - gap) if out else min(y, hi))
    shift = lo - out[-1] if out and out[-1] < lo else 0.0
    return [y + shift for y in out]


def _claim_counts(rows: list[ClaimRow]) -> str:
    holds = sum(1 for x in rows if x.holds)
    fails = sum(1 for x in rows if x.holds is False)
    undecided = len(rows) - holds - fails
    return f"holds in {holds} of {len(rows)} comparisons" + (f", fails in {fails}" if fails else "") + \
        (f", undecided in {undecided}" if undecided else "")


def claim_scatter_figure(records: list[dict[str, Any]], source: str, about: str | None = None):
    """Each comparison of claim.claim_rows a point: RNN / cnn_tutorial training speed (x) against
    RNN / cnn_tutorial memory (y), log-log; colour the framework, marker the RNN, size the batch
    (a thin line joins one framework's RNN across batch sizes). The claim's corner (slower and
    leaner) shaded, the bands where claim.py calls a ratio the same (or the speed undecided) grey;
    the comparisons where claim.py says the claim holds ringed and named, the undecided hollow,
    the verdict's count in the title. None when no RNN was measured beside cnn_tutorial."""
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = claim_rows(_ok(records))
    if not rows:
        return None
    drawn = [x for x in rows if x.memory_ratio is not None]
    intervals = claim_speed_intervals(records)
    batches = sorted({x.batch_size for x in rows})
    size = {b: 6.0 + (7.0 * i / (len(batches) - 1) if len(batches) > 1 else 2.0) for i, b in enumerate(batches)}
    series_of = {x.group: re.sub(r" b\d+(?= |$)", "", x.group).replace(":default", "").replace(" cpu", "")
                 for x in rows}
    styles = series_styles((x.framework, series_of[x.group]) for x in rows)
    single = any((x.group, x.rnn) not in intervals for x in rows)
    xs = [v for x in drawn for v in (x.speed_ratio, *intervals.get((x.group, x.rnn), ()))]
    ys = [x.memory_ratio for x in drawn]
    speed_band = (1 / (1 + SINGLE_PROCESS_SPEED_BAND), 1 + SINGLE_PROCESS_SPEED_BAND) if single else \
        (1 - CLAIM_BAND, 1 + CLAIM_BAND)
    x_lo, x_hi = min(xs + [speed_band[0]]) / 1.5, max(xs + [speed_band[1]]) * 1.4
    y_lo, y_hi = min(ys + [0.8]) / 1.5, max(ys + [1.25]) * 1.4
    holding = sorted((x for x in drawn if x.holds), key=lambda x: -x.memory_ratio)
    if holding:  # room at the left of the claim's corner for the names
        x_lo = min(x_lo, min(x.speed_ratio for x in holding) / 8)
    with style():
        fig, ((ax,),) = new_figure(1, 1, 7.6, width_in=10.0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.fill_between([x_lo, 1.0], y_lo, 1.0, color=CLAIM_SIDE_COLOUR, alpha=0.35, lw=0, zorder=0)
        ax.axvspan(*speed_band, color="0.6", alpha=0.25, lw=0, zorder=0)
        ax.axhspan(1 - CLAIM_BAND, 1 + CLAIM_BAND, color="0.6", alpha=0.25, lw=0, zorder=0)
        ax.axvline(1.0, color="black", lw=1, zorder=1)
        ax.axhline(1.0, color="black", lw=1, zorder=1)
        for (fw, label), st in styles.items():
            for rnn in dict.fromkeys(x.rnn for x in drawn):
                line = sorted((x for x in drawn if x.framework == fw and series_of[x.group] == label and x.rnn == rnn),
                              key=lambda x: x.batch_size)
                if len(line) > 1:
                    ax.plot([x.speed_ratio for x in line], [x.memory_ratio for x in line], color=st.colour,
                            ls=st.line, lw=0.9, alpha=0.45, zorder=2, gid=f"framework={fw}")
                for x in line:
                    ci = intervals.get((x.group, x.rnn))
                    if ci:
                        bars = ax.errorbar([x.speed_ratio], [x.memory_ratio], xerr=[[x.speed_ratio - ci[0]],
                                           [ci[1] - x.speed_ratio]], fmt="none", ecolor=st.colour, elinewidth=1.3,
                                           capsize=3, zorder=3)
                        for artist in (*bars.lines[1], *bars.lines[2]):
                            artist.set_gid(f"framework={fw}")
                            artist.set_label(f"_interval {x.group}|{x.rnn}")
                    if x.holds:
                        ax.plot([x.speed_ratio], [x.memory_ratio], marker="o", markersize=size[x.batch_size] + 8,
                                mfc="none", mec="black", mew=1.4, ls="none", zorder=3)
                    kw = st.kw(model_marker(x.rnn), ls="none", markersize=size[x.batch_size], zorder=4,
                               label=f"_point {x.group}|{x.rnn}")
                    if x.holds is None:
                        kw["markerfacecolor"] = "white"
                    ax.plot([x.speed_ratio], [x.memory_ratio], **kw)
        if holding:
            span = math.log10(y_hi / y_lo)
            gap = span * 0.045
            spots = _spread_labels([math.log10(x.memory_ratio) for x in holding], math.log10(y_lo) + gap,
                                   math.log10(1 - CLAIM_BAND) - gap / 2, gap)
            for x, y in zip(holding, spots):
                ax.annotate(claim_point_label(x), (x.speed_ratio, x.memory_ratio), xytext=(0.015, 10 ** y),
                            textcoords=("axes fraction", "data"), ha="left", va="center", fontsize=STYLE["font.size"],
                            gid="holds", zorder=5,
                            arrowprops={"arrowstyle": "-", "color": "0.3", "lw": 0.8, "shrinkA": 2,
                                        "shrinkB": size[x.batch_size] / 2 + 4})
        _log_axis(ax.xaxis, "x")
        _log_axis(ax.yaxis, "x")
        src = ", ".join(sorted({x.memory_source for x in rows}))
        ax.set_title(f"Each RNN against {CLAIM_CNN}, same framework and batch size")
        ax.set_xlabel(f"training speed, RNN / {CLAIM_CNN} (samples/s; log scale; left of 1: the RNN is slower)")
        ax.set_ylabel(f"memory of a training step, RNN / {CLAIM_CNN} ({src}; log scale)")
        models = [Line2D([], [], color="0.3", marker=model_marker(m), ls="none", markersize=8, label=m)
                  for m in dict.fromkeys(x.rnn for x in rows)]
        sizes = [Line2D([], [], color="0.3", marker="o", ls="none", markersize=size[b], label=f"batch {b}")
                 for b in batches] if len(batches) > 1 else []
        band = 1 + SINGLE_PROCESS_SPEED_BAND
        speed_note = f"speed undecided\n(1/{band:.1f}..{band:.1f}x, one\nprocess per cell)" if single else \
            f"the same speed\n(±{CLAIM_BAND:.0%})"
        marks = [Patch(color=CLAIM_SIDE_COLOUR, alpha=0.35, label="the claim's corner:\nslower, less memory"),
                 Patch(color="0.6", alpha=0.25,
                       label=f"grey bands: the\nsame memory (±{CLAIM_BAND:.0%}),\nor {speed_note}"),
                 Line2D([], [], marker="o", markersize=13, mfc="none", mec="black", mew=1.4, ls="none",
                        label="the claim holds\n(bench.decide.claim)")]
        if any(x.holds is None for x in drawn):
            marks.append(Line2D([], [], marker="o", markersize=8, mfc="white", mec="0.3", ls="none",
                                label="hollow: undecided\n(speed in the noise)"))
        if intervals:
            marks.append(Line2D([], [], color="0.3", marker="|", markersize=8, lw=1.3,
                                label="bars: 95% CI of the\nspeed ratio over\nprocesses (the verdict's)"))
        ax.legend(handles=sizes + marks, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  labelspacing=0.9, borderaxespad=0)
        missing = len(rows) - len(drawn)
        title = f"RNN slower than {CLAIM_CNN} but leaner? The claim {_claim_counts(rows)}" + \
            (f" ({missing} without a memory figure, not drawn)" if missing else "")
        finish(fig, title, source, [legend_handles(styles), models], _about(records, about))
    return fig


# --- time to accuracy ------------------------------------------------------------------------
ACCURACY_BELOW_TARGET_PCT = 15  # the accuracy axis starts at most this far below the lowest target


def _panel_grid(n: int) -> tuple[int, int]:
    """(rows, cols) for n panels with no empty one where that is possible: a row up to three,
    then two columns for four, three for more (the last row's spare panels removed)."""
    cols = n if n <= 3 else (2 if n == 4 else 3)
    return math.ceil(n / cols), cols


def accuracy_figure(records: list[dict[str, Any]], source: str, about: str | None = None):
    """One panel per model (shared y, no empty panel): test accuracy (%) against training
    seconds (evaluations excluded), one line per framework variant and seed. The axis starts at
    most ACCURACY_BELOW_TARGET_PCT points under the lowest target, so the region that decides the
    time to target is not squeezed by the first evaluations (the label says when some lie under
    it). None when nothing was evaluated during training (run --target-accuracy / --eval-every)."""
    ok = [r for r in _ok(records) if (r.get("accuracy_curve") or {}).get("points")]
    if not ok:
        return None
    _plt()  # without matplotlib: the one-line PlotUnavailable, before the imports below
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MultipleLocator

    models = list(dict.fromkeys(r["model"] for r in ok))
    several_batches = len({r["batch_size"] for r in ok}) > 1
    # A line per seed, all of one series alike: the seeds' spread is what the plot shows.
    key = lambda r: (r["framework"], _series_label(r, batch=several_batches, seed=False))  # noqa: E731
    seeds: dict[tuple[str, str], set[int]] = {}
    for r in ok:
        seeds.setdefault(key(r), set()).add(seed_of(r))
    styles = series_styles(key(r) for r in ok)
    rows, cols = _panel_grid(len(models))
    pcts = [100.0 * p["test_accuracy"] for r in ok for p in r["accuracy_curve"]["points"]]
    targets = sorted({r["accuracy_curve"]["target_accuracy"] for r in ok if r["accuracy_curve"].get("target_accuracy")})
    low = 5 * math.floor(min(pcts) / 5)
    if targets:
        low = max(low, 5 * math.floor((100 * targets[0] - ACCURACY_BELOW_TARGET_PCT) / 5))
    high = min(100.0, max(pcts) + 1.0)
    with style():
        fig, axes = new_figure(rows, cols, 1.6 + 3.3 * rows, sharey=True)
        for ax in list(axes.flat)[len(models):]:
            fig.delaxes(ax)  # no empty panel
        for ax, m in zip(axes.flat, models):
            for r in (r for r in ok if r["model"] == m):
                pts = r["accuracy_curve"]["points"]
                st = styles[key(r)]
                ax.plot([p["train_s"] for p in pts], [100.0 * p["test_accuracy"] for p in pts], lw=1.6,
                        markersize=5, **st.kw(model_marker(m)))
            for t in {r["accuracy_curve"].get("target_accuracy") for r in ok if r["model"] == m} - {None, 0}:
                ax.axhspan(100.0 * t, 100.0, color=CLAIM_SIDE_COLOUR, alpha=0.3, lw=0)
                ax.axhline(100.0 * t, color="black", ls="--", lw=1.2)
            ax.set_title(m)
            ax.set_xlim(left=0)
            ax.set_ylim(low, high)
            ax.yaxis.set_major_locator(MultipleLocator(5 if high - low > 12 else 1))
        fig.supxlabel("training seconds (compile included, evaluations excluded)")
        below = " (earlier evaluations below the axis)" if min(pcts) < low else ""
        fig.supylabel(f"test accuracy, %{below}")
        series = legend_handles(styles)
        for h, k in zip(series, styles):
            if len(seeds[k]) > 1:
                h.set_label(f"{h.get_label()} ({len(seeds[k])} seeds)")
        marks = [Line2D([], [], color="black", ls="--", lw=1.2, label=f"target: {100 * t:g}% test accuracy")
                 for t in targets]
        if targets:
            marks.append(Patch(color=CLAIM_SIDE_COLOUR, alpha=0.3, label="target reached"))
        finish(fig, "Test accuracy against training time", source, [series, marks], _about(records, about))
    return fig


def plot_accuracy(records: list[dict[str, Any]], out_dir: Path, source: str, about: str | None = None) -> list[Path]:
    """accuracy-vs-time.png, when the run evaluated during training; else nothing."""
    fig = accuracy_figure(records, source, about)
    return [] if fig is None else [save(fig, out_dir / "accuracy-vs-time.png")]
