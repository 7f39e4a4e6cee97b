"""Variants table and batch sweep of a run of benchmarks/variants/variants.toml, as markdown.

  python benchmarks/variants/table.py RUN [--md OUT.md] [--plot OUT.png]

Train samples/s is the median over the cell's processes of each process's median (the process
is the unit of independence), with the processes' min..max beside it. GFLOP/s is the analytic
training FLOPs per sample x that median, and % of sgemm divides it by the median sgemm rate the
run's processes measured at their start. For torch and TF the default's row is starred and the
selection rule (bench.defaults.pick_default) is applied to the measurement: a line says per
model whether the published default still holds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import defaults  # noqa: E402
from bench.records import pool, results
from bench.show import report
from bench.records.record import Status  # noqa: E402
from bench.spec import ZOO  # noqa: E402

MODELS = ("lstm128", "lstm512", "bilstm512", "lstm3x256", "cnn_tutorial", "cnn_small")
FRAMEWORKS = ("torch", "tf", "jax")
LSTM_GOAL_PCT = 50.0  # issue 13: every LSTM cell at >= 50% of the run's sgemm at batch >= 128


def per_process(rec: dict[str, Any], metric: str = "train_samples_per_s") -> list[float]:
    m = rec["metrics"][metric]
    return list(m["values"]) if m.get("per_process") else [m["median"]]


def actual_variant(rec: dict[str, Any]) -> str:
    """The variant a cell ran, `default` resolved from the kernel it recorded (what default
    runs depends on the code's bench.defaults at the time, not today's map)."""
    v, fw, kernel = rec["variant"], rec["framework"], rec.get("kernel", "")
    if v != "default" or fw == "jax":
        return v
    if fw == "tf":
        return "xla" if kernel.startswith("xla") else "graph"
    return "compiled" if "+inductor" in kernel else "channels_last" if "(channels_last)" in kernel else "eager"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--results-dir", default=str(ROOT / "results"))
    p.add_argument("--md")
    p.add_argument("--plot")
    p.add_argument("--drop-before", metavar="UTC",
                   help="leave out process records written before this time (e.g. 2026-12-01T20:41:00Z): "
                        "processes that shared the machine with other work")
    args = p.parse_args()
    run_dir = results.resolve_run(args.run, Path(args.results_dir))
    procs_all = results.read_rounds(run_dir)
    kept = [r for r in procs_all if not args.drop_before or str((r.get("env") or {}).get("utc", "")) >= args.drop_before]
    recs = [r for r in pool.pool_records(kept) if r.get("status") == Status.OK]
    if not recs:
        print(f"error: no ok cells in {run_dir}", file=sys.stderr)
        return 2
    sgemm = statistics.median(report.pooled_sgemm(recs).values())  # one machine, device, thread count
    env = recs[0]["env"]
    procs = sorted({r["rounds"]["full"] for r in recs})
    out = [f"# Variants and batch sensitivity, CPU ({run_dir.name})", "",
           f"Machine: {env.get('cpu_model')}, {env.get('threads')} threads, machine id "
           f"{str(env.get('machine_id'))[:12]}; code {str((env.get('git') or {}).get('commit', '?'))[:10]}; "
           f"profile {recs[0].get('profile')}; {' or '.join(map(str, procs))} fresh processes per cell, "
           f"round-robin; sgemm {sgemm:.0f} GFLOP/s (median of the processes' start-up measurements, "
           f"{min(float(r['analytic']['calibration_gflops']) for r in recs):.0f}.."
           f"{max(float(r['analytic']['calibration_gflops']) for r in recs):.0f})."]
    if args.drop_before:
        out.append(f"Left out: {len(procs_all) - len(kept)} of {len(procs_all)} processes, written before "
                   f"{args.drop_before} (they shared the machine with other work).")
    out.append("")
    b128 = {(r["framework"], r["model"], actual_variant(r)): r for r in recs if r["batch_size"] == 128}
    out += ["## Every variant at batch 128", "",
            "samples/s: median of the per-process medians (min..max over processes). "
            "* = what `default` runs for that model.", "",
            "| model | framework | variant | train samples/s | processes min..max | GFLOP/s | % of sgemm | / best of framework |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    verdicts = []
    for model in MODELS:
        fam = ZOO[model].family
        for fw in FRAMEWORKS:
            cells = {v: r for (f, mdl, v), r in b128.items() if f == fw and mdl == model}
            if not cells:
                continue
            rates = {v: per_process(r) for v, r in cells.items()}
            meds = {v: statistics.median(s) for v, s in rates.items()}
            best = max(meds.values())
            default_v = defaults.cpu_default(fw, model, fam)
            for v in sorted(cells, key=lambda v: -meds[v]):
                r, s = cells[v], rates[v]
                gfl = meds[v] * r["analytic"]["train_flops_per_sample"] / 1e9
                star = " *" if v == default_v else ""
                out.append(f"| {model} | {fw} | {v}{star} | {meds[v]:,.0f} | {min(s):,.0f}..{max(s):,.0f} | "
                           f"{gfl:.1f} | {100 * gfl / sgemm:.0f}% | {meds[v] / best:.2f} |")
            if fw in defaults.CPU_DEFAULT and len(cells) > 1:
                c = defaults.pick_default(rates, default_v)
                within = meds.get(default_v, 0) / best >= 1 - defaults.GOAL_WITHIN
                verdicts.append(f"- {fw} {model}: default {default_v}; rule picks {c.variant} ({c.reason}); "
                                f"default within {defaults.GOAL_WITHIN:.0%} of best: {'yes' if within else 'NO'}")
            if fam == "rnn" and default_v in meds:
                gfl = meds[default_v] * cells[default_v]["analytic"]["train_flops_per_sample"] / 1e9
                if 100 * gfl / sgemm < LSTM_GOAL_PCT:
                    verdicts.append(f"- {fw} {model}: default at {100 * gfl / sgemm:.0f}% of sgemm, under the "
                                    f"{LSTM_GOAL_PCT:.0f}% goal")
    out += ["", "## The defaults against the measurement", ""] + verdicts
    sweep = lstm128_sweep(recs)
    batches = sorted({b for _, b in sweep})
    out += ["", "## lstm128: batch sensitivity (each framework's default)", "",
            "Step time in ms (median of per-process medians); samples/s in brackets; "
            "the last row is JAX / torch samples/s.", "",
            "| framework | " + " | ".join(f"b{b}" for b in batches) + " |",
            "|---|" + "---:|" * len(batches)]
    for fw in FRAMEWORKS:
        cells = []
        for b in batches:
            r = sweep.get((fw, b))
            cells.append("-" if r is None else
                         f"{statistics.median(per_process(r, 'step_ms')):.1f} ({statistics.median(per_process(r)):,.0f})")
        out.append(f"| {fw} | " + " | ".join(cells) + " |")
    ratio = []
    for b in batches:
        j, t = sweep.get(("jax", b)), sweep.get(("torch", b))
        ratio.append("-" if not (j and t) else
                     f"{statistics.median(per_process(j)) / statistics.median(per_process(t)):.2f}")
    out.append("| jax / torch | " + " | ".join(ratio) + " |")
    text = "\n".join(out) + "\n"
    print(text)
    if args.md:
        results.atomic_write_bytes(Path(args.md), text.encode())
    if args.plot:
        from bench.show import plot

        _plot(sweep, batches, Path(args.plot), run_dir.name, kept,
              plot.run_about(list(sweep.values()), results.read_manifest(run_dir)))
    return 0


def lstm128_sweep(recs: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(framework, batch) -> the pooled record of lstm128 in each framework's CPU default."""
    sweep: dict[tuple[str, int], dict[str, Any]] = {}
    for r in recs:
        if r["model"] == "lstm128" and actual_variant(r) == defaults.cpu_default(r["framework"], "lstm128", "rnn"):
            sweep.setdefault((r["framework"], r["batch_size"]), r)
    return sweep


def per_process_memory_mb(rec: dict[str, Any], procs: list[dict[str, Any]]) -> list[float]:
    """The tensor-level memory of one training step (MB) in each ok process of the cell: a
    deterministic figure, so its processes should agree (the bars show it if they do not)."""
    return [r["memory"]["tensor_peak_bytes"] / 1e6 for r in procs
            if r["key"] == rec["key"] and r.get("status") == Status.OK
            and (r.get("memory") or {}).get("tensor_peak_bytes") is not None]


def batch_figure(sweep: dict[tuple[str, int], dict[str, Any]], batches: list[int], title: str,
                 procs: list[dict[str, Any]], about: str):
    """Training samples/s and the memory of one training step against batch size, median and
    min..max over processes, the memory beside lstm128's analytic floor (two questions: how fast,
    and what the batch costs in memory; ms per sample would repeat the first, inverted). In
    bench.show.plot's style, titled with host, threads, profile and date, the run id at the foot."""
    from matplotlib.lines import Line2D

    from bench.show import plot

    with plot.style():
        fig, ((speed_ax, mem_ax),) = plot.new_figure(1, 2, 5.0)
        styles = plot.series_styles((fw, fw) for fw in FRAMEWORKS if any((fw, b) in sweep for b in batches))
        marker = plot.model_marker("lstm128")
        for (fw, _), st in styles.items():
            bs = [b for b in batches if (fw, b) in sweep]
            for ax, vals in ((speed_ax, [per_process(sweep[(fw, b)]) for b in bs]),
                             (mem_ax, [per_process_memory_mb(sweep[(fw, b)], procs) for b in bs])):
                xs = [b for b, v in zip(bs, vals) if v]
                pts = [(m, m - min(v), max(v) - m) for m, v in ((statistics.median(v), v) for v in vals if v)]
                if xs:
                    plot.errorbar(ax, xs, pts, st, marker, lw=1.6)
        floor = sorted({(r["batch_size"], r["analytic"]["train_floor_bytes"] / 1e6) for r in sweep.values()
                        if (r.get("analytic") or {}).get("train_floor_bytes")})
        if floor:
            mem_ax.plot([b for b, _ in floor], [v for _, v in floor], marker=marker, markersize=4, **plot.FLOOR_LINE)
        for ax in (speed_ax, mem_ax):
            plot.batch_axis(ax, batches)
            ax.set_xlabel("batch size (samples per training step)")
            ax.set_ylim(bottom=0)
        speed_ax.set(title="Training speed", ylabel="training samples per second")
        mem_ax.set(title="Memory of one training step", ylabel="MB, tensor-level")
        floor_handle = Line2D([], [], marker=marker, markersize=4,
                              label="analytic floor (weights, grads, Adam state, batch, saved activations)",
                              **plot.FLOOR_LINE)
        plot.finish(fig, "lstm128 against batch size, each framework's default: median and min..max over processes",
                    f"run {title}", [plot.legend_handles(styles) + ([floor_handle] if floor else [])], about)
    return fig


def _plot(sweep: dict[tuple[str, int], dict[str, Any]], batches: list[int], path: Path, title: str,
          procs: list[dict[str, Any]], about: str) -> None:
    from bench.show import plot

    fig = batch_figure(sweep, batches, title, procs, about)
    tmp = path.with_suffix(".tmp.png")
    plot.save(fig, tmp)
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
