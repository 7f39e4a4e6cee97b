"""Plots of a run: throughput and memory per model, one bar per framework variant and device.

matplotlib comes with the `[all]` extra; without it `bench plot` says how to get it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


class PlotUnavailable(RuntimeError):
    pass


def plot_run(records: list[dict[str, Any]], out: Path, title: str) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("plots need matplotlib: pip install 'lstm-bench[all]'") from None
    from .report import _get

    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        raise PlotUnavailable("no ok cell to plot")
    models = list(dict.fromkeys(r["model"] for r in ok))
    series = list(dict.fromkeys(f"{r['framework']}:{r['variant']} {r['device']} b{r['batch_size']}" for r in ok))
    panels = (("train samples/s (median, IQR bars)", "metrics.train_samples_per_s", True),
              ("memory MB (CPU: RSS delta; GPU: allocator peak)", "analytic.measured_memory_bytes", False))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / max(1, len(series))
    for ax, (label, path, has_stats) in zip(axes, panels):
        for i, s in enumerate(series):
            xs, ys, errs = [], [], []
            for j, m in enumerate(models):
                rec = next((r for r in ok if r["model"] == m and
                            f"{r['framework']}:{r['variant']} {r['device']} b{r['batch_size']}" == s), None)
                if rec is None:
                    continue
                v = _get(rec, path)
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
