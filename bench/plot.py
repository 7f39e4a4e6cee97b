"""Plots of a run: throughput and memory per model, one bar per framework variant and device.

matplotlib comes with the `[all]` extra; without it `bench plot` says how to get it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .claim import CLAIM_CNN, claim_rows
from .record import Record, Status, cell_label


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


def plot_accuracy(records: list[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """Time to accuracy: test accuracy against training seconds (evaluations excluded), one
    panel per model, one line per framework variant and seed, the target dashed. None written
    when no record evaluated during training (run --target-accuracy / --eval-every)."""
    ok = [r for r in records if r.get("status") == Status.OK and (r.get("accuracy_curve") or {}).get("points")]
    if not ok:
        return []
    plt = _plt()
    models = list(dict.fromkeys(r["model"] for r in ok))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.5), squeeze=False)
    for ax, m in zip(axes[0], models):
        targets = set()
        for r in (r for r in ok if r["model"] == m):
            c = r["accuracy_curve"]
            pts = c["points"]
            ax.plot([p["train_s"] for p in pts], [100 * p["test_accuracy"] for p in pts], ".-",
                    label=cell_label(r).replace(f" {m}", ""))
            if c.get("target_accuracy"):
                targets.add(c["target_accuracy"])
        for t in targets:
            ax.axhline(100 * t, color="k", ls="--", lw=1)
        ax.set(xlabel="training seconds (compile included, evaluations excluded)", ylabel="test accuracy %",
               title=m)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: time to accuracy")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "accuracy-vs-time.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return [out]


def plot_run(records: list[dict[str, Any]], out: Path, title: str) -> Path:
    plt = _plt()
    ok = [r for r in records if r.get("status") == Status.OK]
    if not ok:
        raise PlotUnavailable("no ok cell to plot")
    models = list(dict.fromkeys(r["model"] for r in ok))
    series = list(dict.fromkeys(f"{r['framework']}:{r['variant']} {r['device']} b{r['batch_size']}" for r in ok))
    panels = (("train samples/s (median, IQR bars)", lambda r: r.summary("train_samples_per_s"), True),
              ("memory MB (CPU: tensor-level; GPU: allocator peak)", lambda r: r.measured_memory_bytes, False))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / max(1, len(series))
    for ax, (label, read, has_stats) in zip(axes, panels):
        for i, s in enumerate(series):
            xs, ys, errs = [], [], []
            for j, m in enumerate(models):
                rec = next((r for r in ok if r["model"] == m and
                            f"{r['framework']}:{r['variant']} {r['device']} b{r['batch_size']}" == s), None)
                if rec is None:
                    continue
                v = read(Record(rec))
                if v is None:
                    continue
                xs.append(j + i * width)
                if has_stats:
                    ys.append(v["median"])
                    errs.append([[v["median"] - v["q1"]], [v["q3"] - v["median"]]])
                else:
                    ys.append(v / 1e6)
            if not xs:
                continue
            yerr = None
            if errs:
                yerr = [[e[0][0] for e in errs], [e[1][0] for e in errs]]
            ax.bar(xs, ys, width, label=s, yerr=yerr, capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models, rotation=20)
        ax.set_yscale("log")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_claim(records: list[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """For a run over several batch sizes: memory vs batch size (measured and analytic floor)
    of each RNN against cnn_tutorial, one panel per framework variant and device, and the
    RNN/CNN speed ratio vs batch size. Returns the PNGs written (none for a single batch)."""
    plt = _plt()
    ok = [r for r in records if r.get("status") == Status.OK]
    if len({r["batch_size"] for r in ok}) < 2:
        return []
    groups = list(dict.fromkeys(f"{r['framework']}:{r['variant']} {r['device']}" for r in ok))
    models = list(dict.fromkeys(r["model"] for r in ok if Record(r).family == "rnn")) + [CLAIM_CNN]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.5), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for i, m in enumerate(models):
            rs = sorted((r for r in ok if r["model"] == m and f"{r['framework']}:{r['variant']} {r['device']}" == g),
                        key=lambda r: r["batch_size"])
            pts = [(r["batch_size"], Record(r).measured_memory_bytes, Record(r).train_floor_bytes) for r in rs]
            pts = [p for p in pts if p[1]]
            if not pts:
                continue
            colour = f"C{i}"
            style = dict(lw=2.5) if m == CLAIM_CNN else {}
            ax.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], "o-", color=colour, label=f"{m} measured", **style)
            ax.plot([p[0] for p in pts], [p[2] / 1e6 for p in pts], "--", color=colour, alpha=0.6)
        src = next((Record(r).measured_memory_source() for r in ok), "measured")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=f"MB ({src}; dashed: analytic floor)", title=g)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: memory of a training step vs batch size")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    mem_png = out_dir / "claim-memory.png"
    fig.savefig(mem_png, dpi=100)
    plt.close(fig)

    rows = claim_rows(ok)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, key in enumerate(dict.fromkeys((x.group.rsplit(" ", 1)[0], x.rnn) for x in rows)):
        xs = sorted((x for x in rows if (x.group.rsplit(" ", 1)[0], x.rnn) == key), key=lambda x: x.batch_size)
        label = f"{key[1]} [{key[0]}]"
        marker = ("o", "s", "^", "D")[i % 4]
        axes[0].plot([x.batch_size for x in xs], [x.speed_ratio for x in xs], marker + "-", label=label)
        axes[1].plot([x.batch_size for x in xs], [x.memory_ratio or float("nan") for x in xs], marker + "-", label=label)
    for ax, what in zip(axes, ("speed", "memory")):
        ax.axhline(1.0, color="k", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=f"RNN / {CLAIM_CNN} {what}",
               title=f"{what} ratio (claim: speed < 1 and memory < 1)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    ratio_png = out_dir / "claim-ratios.png"
    fig.savefig(ratio_png, dpi=100)
    plt.close(fig)
    return [mem_png, ratio_png]
