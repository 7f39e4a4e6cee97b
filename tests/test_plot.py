"""Plots readable at GitHub's width (issue 28), checked on the figure objects (matplotlib Agg):
every axis labelled, one colour per framework in every plot and no colour shared by two
frameworks, ticks at the batch sizes measured, at most 1200 px wide, no text under 9 pt; and
`bench plot` writes the PNGs it says it writes. The claim scatter and the main-table chart
(issue 44, item 5) are checked against the committed baselines: the scatter's points are
bench.decide.claim's ratios, the points named are exactly where claim.py says the claim holds,
the main table has one dot per ok cell, and every title says host, threads, profile and date."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from bench import analytic, cli
from bench.decide import claim
from bench.records import results
from bench.records.record import cell_label
from bench.spec import ZOO

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
from matplotlib.text import Text  # noqa: E402

from bench.show import plot  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLAIM_BASELINE = ROOT / "results" / "baselines" / "cpu-2core-claim-2026-12-02"
QUICK_BASELINE = ROOT / "results" / "baselines" / "cpu-2core-quick-tensor-memory"
BATCHES = (16, 64, 256, 1024)
RNNS = ("lstm128", "lstm512", "bilstm512", "lstm3x256")
SPEED = {"torch": 1.0, "tf": 0.8, "jax": 0.7}  # a framework's speed, relative
OVERHEAD = {"torch": 2.5, "tf": 1.6, "jax": 1.3}  # measured memory over the floor


def record(fw: str, model: str, batch: int, variant: str = "default", target: float = 0.0,
           seed: int = 0) -> dict:
    """An ok record with the fields the plots read; the figures follow the published shapes
    (RNN speed falling with size, memory a multiple of the analytic floor)."""
    spec = ZOO[model]
    floor = analytic.cost(spec).train_floor_bytes(batch)
    flops = analytic.cost(spec).train_flops_per_sample
    # a framework's own strengths per model, so that its lines part from the others'
    knack = 1 + 0.15 * ((len(model) * (1 + list(SPEED).index(fw))) % 5 - 2)
    rate = knack * SPEED[fw] * 4e10 / flops * (batch / (batch + 32)) ** (2 if spec.family == "cnn" else 1) * \
        (1.3 if variant != "default" else 1.0)
    curve = None
    if target:
        steps = 50 * (1 + RNNS.index(model) if model in RNNS else 1)
        pts = [{"step": s, "train_s": s * batch / rate,
                "test_accuracy": 1 - 0.9 * math.exp(-s / (steps / 5)) - 0.012 - 0.005 * SPEED[fw] - 0.001 * seed}
               for s in range(0, steps * 2 + 1, steps // 5)]
        curve = {"eval_every_steps": steps // 5, "eval_s": 1.0, "points": pts, "target_accuracy": target}
    return {
        "key": f"{fw}.{variant}.{model}.cpu.b{batch}.s{seed}", "framework": fw, "variant": variant, "model": model,
        "device": "cpu", "batch_size": batch, "status": "ok", "threads": 2, "profile": "test",
        "env": {"cpu_model": "Test CPU 9000", "cpu_logical_cores": 4, "utc": "2099-01-01T00:00:05Z"},
        "cell": {"model": {"family": spec.family}, "train": {"seed": seed}},
        "metrics": {"train_samples_per_s": {"median": rate, "q1": rate * 0.97, "q3": rate * 1.02, "iqr": rate * 0.05}},
        "analytic": {"measured_memory_bytes": floor * OVERHEAD[fw] * knack + 3e6, "train_floor_bytes": floor,
                     "measured_memory_source": "tensor-level"},
        **({"accuracy_curve": curve} if curve else {}),
    }


def claim_run() -> list[dict]:
    return [record(fw, m, b) for fw in SPEED for m in (*RNNS, "cnn_tutorial") for b in BATCHES]


def accuracy_run() -> list[dict]:
    return [record(fw, m, 128, target=0.97, seed=s) for fw in SPEED for m in ("lstm128", "lstm3x256", "cnn_tutorial")
            for s in (0, 1)]


def variants_run() -> list[dict]:
    return [record(fw, m, 128, variant=v) for fw in SPEED for v in ("default", "xla" if fw == "tf" else "compiled")
            for m in ("lstm128", "lstm512", "cnn_tutorial", "cnn_small")]


SOURCE = "lstm-bench, run 20990101-000000-claim-abcd"


def all_figures() -> list[tuple[str, object]]:
    figs = [("run (one batch)", plot.run_figure(variants_run(), SOURCE)),
            ("run (several batches)", plot.run_figure(claim_run(), SOURCE)),
            ("main-table.png", plot.main_table_figure(variants_run(), SOURCE))]
    figs += [(name, fig) for name, fig in plot.claim_figures(claim_run(), SOURCE)]
    figs.append(("accuracy-vs-time.png", plot.accuracy_figure(accuracy_run(), SOURCE)))
    return figs


@pytest.fixture(scope="module")
def figures():
    figs = all_figures()
    yield figs
    import matplotlib.pyplot as plt

    for _, fig in figs:
        plt.close(fig)


def test_every_plot_is_made(figures):
    assert [name for name, _ in figures] == ["run (one batch)", "run (several batches)", "main-table.png",
                                             "claim-scatter.png", "claim-memory.png", "claim-ratios.png",
                                             "accuracy-vs-time.png"]


def test_every_axis_has_a_label(figures):
    for name, fig in figures:
        shared_x, shared_y = fig.get_supxlabel(), fig.get_supylabel()
        for ax in (a for a in fig.axes if a.get_visible()):
            assert ax.get_xlabel() or shared_x, f"{name}: {ax.get_title()!r} has no x label"
            assert ax.get_ylabel() or shared_y, f"{name}: {ax.get_title()!r} has no y label"
            assert ax.get_title(), f"{name}: a panel without a title"
        title = plot.figure_title(fig)
        assert len(title.split()) >= 4, f"{name}: no title in words: {title!r}"
        assert SOURCE not in title and "run" not in title.split(), f"{name}: the run id is the title"


def framework_colours(fig) -> dict[str, set[str]]:
    """framework -> the colours its artists were drawn in (every data artist carries its
    framework in its gid)."""
    from matplotlib.colors import to_hex

    out: dict[str, set[str]] = defaultdict(set)
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            gid = artist.get_gid() or ""
            if gid.startswith("framework="):
                colour = artist.get_color() if hasattr(artist, "get_color") else artist.get_edgecolor()
                if not isinstance(colour, str) and len(colour) and not isinstance(colour[0], float):
                    colour = colour[0]
                out[gid.split("=", 1)[1]].add(to_hex(colour))
    return out


def test_one_colour_per_framework_and_none_shared(figures):
    seen: dict[str, str] = {}
    for name, fig in figures:
        colours = framework_colours(fig)
        assert set(colours) == set(SPEED), f"{name}: frameworks drawn: {sorted(colours)}"
        for fw, cs in colours.items():
            assert len(cs) == 1, f"{name}: {fw} in several colours {cs}"
            assert seen.setdefault(fw, next(iter(cs))) == next(iter(cs)), f"{name}: {fw}'s colour changed"
    assert len(set(seen.values())) == len(seen), f"two frameworks share a colour: {seen}"


def test_a_framework_unknown_to_the_map_gets_a_colour_of_its_own():
    assert plot.framework_colour("mxnet") not in plot.FRAMEWORK_COLOURS.values()
    assert plot.framework_colour("mxnet") == plot.framework_colour("mxnet")


def test_batch_axes_are_ticked_at_the_batch_sizes(figures):
    for name, fig in figures:
        if name not in ("claim-memory.png", "claim-ratios.png"):
            continue
        labelled = 0
        for ax in (a for a in fig.axes if a.get_visible()):
            assert list(ax.get_xticks()) == list(BATCHES), name
            labels = [t.get_text() for t in ax.get_xticklabels()]  # none under a panel that shares its x
            assert labels in ([], [str(b) for b in BATCHES]), name
            labelled += bool(labels)
        assert labelled, f"{name}: no batch size written under any panel"


def test_compared_panels_share_their_y_axis(figures):
    for name, fig in figures:
        panels = [a for a in fig.axes if a.get_visible()]
        if name in ("claim-memory.png", "claim-ratios.png", "accuracy-vs-time.png"):
            assert len(panels) > 1 and len({a.get_ylim() for a in panels}) == 1, name
            assert all(panels[0].get_shared_y_axes().joined(panels[0], a) for a in panels), name


def test_floors_targets_and_the_claims_side_are_in_the_legend(figures):
    legends = {name: [t.get_text() for t in fig.legends[0].get_texts()] for name, fig in figures}
    assert any("analytic floor" in t for t in legends["claim-memory.png"])
    assert any("analytic floor" in t for t in legends["run (one batch)"])
    assert any(t.startswith("target: 97%") for t in legends["accuracy-vs-time.png"])
    assert any("claim's side" in t for t in legends["claim-ratios.png"])
    # shaded: a patch spanning the axis below parity in both ratio panels
    fig = dict(figures)["claim-ratios.png"]
    assert all(any(p.get_facecolor()[:3] != (1.0, 1.0, 1.0) for p in ax.patches) for ax in fig.axes)


def test_width_and_text_size_fit_githubs_column(figures):
    for name, fig in figures:
        assert fig.get_size_inches()[0] * plot.DPI <= plot.MAX_WIDTH_PX, name
        fig.canvas.draw()  # ticks and their labels exist once drawn
        small = {(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
                 if t.get_visible() and t.get_text() and t.get_fontsize() < plot.MIN_FONT_PT}
        assert not small, f"{name}: text under {plot.MIN_FONT_PT} pt: {sorted(small)[:5]}"


def test_bench_plot_writes_the_pngs_it_names(tmp_path, capsys):
    run = tmp_path / "results" / "sweep"
    recs = claim_run() + [record("torch", "lstm128", 128, target=0.97)]
    results.write_manifest(run, {"run_id": "sweep", "cells": []})
    for r in recs:
        results.write_record(run, r)
    assert cli.main(["--results-dir", str(tmp_path / "results"), "plot", "sweep"]) == 0
    written = [Path(p).name for p in capsys.readouterr().out.split()]
    assert written == ["plot.png", "main-table.png", "claim-scatter.png", "claim-memory.png", "claim-ratios.png",
                       "accuracy-vs-time.png"]
    from PIL import Image

    for name in written:
        assert Image.open(run / name).size[0] <= plot.MAX_WIDTH_PX


# --- the claim scatter and the main-table chart, on the committed baselines (issue 44, item 5) --
@pytest.fixture(scope="module")
def claim_baseline():
    recs = results.read_records(CLAIM_BASELINE)
    about = plot.run_about(recs, results.read_manifest(CLAIM_BASELINE))
    fig = plot.claim_scatter_figure(recs, "lstm-bench, run cpu-2core-claim-2026-12-02", about)
    yield recs, fig
    import matplotlib.pyplot as plt

    plt.close(fig)


def scatter_points(fig) -> dict[tuple[str, str], tuple[float, float]]:
    """(ClaimRow.group, rnn) -> the (x, y) of its drawn point (the marker's label names it)."""
    (ax,) = fig.axes
    out = {}
    for line in ax.lines:
        if line.get_label().startswith("_point "):
            group, rnn = line.get_label()[len("_point "):].split("|")
            assert (group, rnn) not in out, f"{group} {rnn} drawn twice"
            out[(group, rnn)] = (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
    return out


def test_the_scatter_draws_claim_pys_ratios_for_every_comparison_of_the_claim_baseline(claim_baseline):
    recs, fig = claim_baseline
    rows = claim.claim_rows(recs)
    assert len(rows) == 48  # 3 frameworks x 4 RNNs x 4 batch sizes
    points = scatter_points(fig)
    assert points == {(x.group, x.rnn): (x.speed_ratio, x.memory_ratio) for x in rows}
    # the figures themselves, as the published claim table has them
    assert points[("torch:default cpu b16", "lstm512")] == pytest.approx((0.615, 0.605), abs=5e-4)
    assert points[("jax:default cpu b1024", "lstm128")] == pytest.approx((8.556, 0.367), abs=5e-4)
    assert points[("tf:default cpu b16", "bilstm512")] == pytest.approx((0.198, 5.919), abs=5e-4)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_the_points_named_are_exactly_where_the_claim_holds(claim_baseline):
    recs, fig = claim_baseline
    (ax,) = fig.axes
    named = {t.get_text(): t.xy for t in ax.texts if t.get_gid() == "holds"}
    assert set(named) == {"torch lstm512 b16", "torch lstm3x256 b16", "jax lstm512 b16", "jax lstm512 b64",
                          "jax lstm3x256 b16"}
    holding = {plot.claim_point_label(x): (x.speed_ratio, x.memory_ratio) for x in claim.claim_rows(recs) if x.holds}
    assert named == holding  # each name points at its own comparison
    for x, y in named.values():  # inside the shaded corner: slower and leaner
        assert x < 1 and y < 1
    # the count in the title is the verdict's, word for word
    assert "holds in 5 of 48 comparisons" in claim.verdict(recs)
    assert "holds in 5 of 48 comparisons, fails in 43" in plot.figure_title(fig)


def test_the_scatter_shades_the_claims_corner(claim_baseline):
    _, fig = claim_baseline
    (ax,) = fig.axes
    from matplotlib.colors import to_hex

    corner = [c for c in ax.collections if to_hex(c.get_facecolor()[0]) == plot.CLAIM_SIDE_COLOUR.lower()]
    assert len(corner) == 1
    (xs, ys) = corner[0].get_paths()[0].vertices.T
    assert max(xs) == 1.0 and max(ys) == 1.0 and min(xs) <= ax.get_xlim()[0] and min(ys) <= ax.get_ylim()[0]


def test_every_title_says_host_threads_profile_and_date(claim_baseline, figures):
    _, fig = claim_baseline
    title = plot.figure_title(fig)
    for part in ("AMD EPYC, 2 cores", "2 threads", "claim profile", "2026-12-02 14:42 UTC"):
        assert part in title, (part, title)
    for name, f in figures:  # the synthetic records: from their env, threads and profile
        t = plot.figure_title(f).split("\n")
        assert t[1] == "Test CPU 9000, 4 cores · 2 threads · test profile · 2099-01-01 00:00 UTC", name


def test_the_manifests_date_is_the_runs_and_fills_what_records_lack():
    recs = claim_run()
    assert plot.run_about(recs, {"created_utc": "2098-05-06T07:08:09Z"}).endswith("2098-05-06 07:08 UTC")
    bare = [{k: v for k, v in r.items() if k not in ("env", "threads", "profile")} for r in recs]
    manifest = {"created_utc": "2098-05-06T07:08:09Z", "profile": "claim",
                "env": {"cpu_model": "AMD EPYC", "cpu_logical_cores": 2, "threads": 2}}
    assert plot.run_about(bare, manifest) == "AMD EPYC, 2 cores · 2 threads · claim profile · 2098-05-06 07:08 UTC"
    assert plot.run_about(bare) == "CPU not recorded"


def test_the_speed_bars_are_the_verdicts_interval_over_processes():
    from bench.decide import stats

    recs = []
    for fw, m, vals in (("torch", "lstm512", [400.0, 430.0, 415.0]), ("torch", "cnn_tutorial", [800.0, 780.0, 830.0]),
                        ("tf", "lstm512", [300.0, 320.0, 310.0]), ("tf", "cnn_tutorial", [330.0, 290.0, 350.0])):
        r = record(fw, m, 128)
        r["metrics"]["train_samples_per_s"] = {"median": sorted(vals)[1], "values": vals, "per_process": True,
                                               "q1": min(vals), "q3": max(vals)}
        recs.append(r)
    fig = plot.claim_scatter_figure(recs, SOURCE)
    (ax,) = fig.axes
    bars = {}
    for coll in ax.collections:
        if coll.get_label().startswith("_interval "):
            ((x0, _), (x1, _)) = coll.get_segments()[0]
            bars[coll.get_label()[len("_interval "):]] = (x0, x1)
    assert set(bars) == {"torch:default cpu b128|lstm512", "tf:default cpu b128|lstm512"}
    for fw in ("torch", "tf"):
        rnn, cnn = (r for r in recs if r["framework"] == fw)
        est = stats.ratio_ci(cnn["metrics"]["train_samples_per_s"]["values"],
                             rnn["metrics"]["train_samples_per_s"]["values"], paired=False)
        assert bars[f"{fw}:default cpu b128|lstm512"] == pytest.approx((est.lo, est.hi))
        _, basis = claim.speed_decision(rnn, cnn)
        assert f"95% CI {est.lo:.2f}..{est.hi:.2f}x" in basis  # the interval the verdict read
    # torch: decided slower and leaner, so named; tf: the interval crosses 0.95, so undecided and hollow
    assert [t.get_text() for t in ax.texts if t.get_gid() == "holds"] == ["torch lstm512 b128"]
    hollow = [ln for ln in ax.lines if ln.get_label() == "_point tf:default cpu b128|lstm512"]
    assert hollow[0].get_markerfacecolor() == "white"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_the_main_table_chart_has_one_dot_per_ok_cell_in_each_panel():
    recs = results.read_records(QUICK_BASELINE)
    ok = [r for r in recs if r["status"] == "ok"]
    assert len(ok) == 18
    failed = {**record("torch", "lstm128", 128), "status": "failed", "key": "torch.failed"}
    fig = plot.main_table_figure(recs + [failed], SOURCE, plot.run_about(recs, results.read_manifest(QUICK_BASELINE)))
    speed_ax, mem_ax = fig.axes

    def dots(ax):
        return {ln.get_label()[len("_cell "):]: float(ln.get_xdata()[0]) for ln in ax.lines
                if ln.get_label().startswith("_cell ")}

    speed, mem = dots(speed_ax), dots(mem_ax)
    assert len(speed_ax.lines) and len(speed) == len(mem) == 18
    assert speed == {cell_label(r): r["metrics"]["train_samples_per_s"]["median"] for r in ok}
    assert mem == {cell_label(r): r["analytic"]["measured_memory_bytes"] / 1e6 for r in ok}
    assert speed["torch lstm128 cpu b128"] == pytest.approx(5023, abs=1)  # the published table's row
    written = {t.get_text() for t in mem_ax.texts}
    assert "43 MB (3.4x)" in written and "16 MB (1.2x)" in written  # torch and tf lstm128: MB and x floor
    title = plot.figure_title(fig)
    assert "18 cells at batch 128" in title and "quick profile" in title and "2026-11-24 18:32 UTC" in title
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_the_main_table_batch_is_the_fullest_then_nearest_128():
    recs = claim_run()
    assert plot.main_table_batch(recs) == 256  # 15 cells at each batch: 64 and 256 tie, the larger wins
    assert plot.main_table_batch(recs + [record("torch", "lstm128", 128)]) == 256
    assert plot.main_table_batch([r for r in recs if r["batch_size"] != 256]) == 64


def test_accuracy_has_no_empty_panel_and_a_percent_axis(figures):
    fig = dict(figures)["accuracy-vs-time.png"]
    panels = fig.axes
    assert len(panels) == 3 and all(ax.get_visible() and ax.lines for ax in panels)
    low, high = panels[0].get_ylim()
    assert 0 <= low < 97 < high <= 100  # test accuracy in %, the 97% target inside
    assert "test accuracy, %" in fig.get_supylabel()


BATCH_BASELINE = ROOT / "results" / "baselines" / "cpu-2core-lstm128-batch-2026-12-02"


def test_lstm128_batch_figure_shows_speed_and_memory_against_the_floor():
    """benchmarks/variants/table.py's figure from the committed sweep: samples/s and the memory of
    a training step (not ms per sample, samples/s inverted), the memory points the records' tensor
    figures, the floor the analytic one, and the title naming host, threads, profile and date."""
    import importlib.util

    from bench.records import pool
    from bench.records.record import Status

    spec = importlib.util.spec_from_file_location("variants_table", ROOT / "benchmarks" / "variants" / "table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    procs = results.read_rounds(BATCH_BASELINE)
    sweep = table.lstm128_sweep([r for r in pool.pool_records(procs) if r.get("status") == Status.OK])
    batches = sorted({b for _, b in sweep})
    fig = table.batch_figure(sweep, batches, BATCH_BASELINE.name, procs,
                             plot.run_about(list(sweep.values()), results.read_manifest(BATCH_BASELINE)))
    speed_ax, mem_ax = fig.axes
    assert (speed_ax.get_title(), mem_ax.get_title()) == ("Training speed", "Memory of one training step")
    assert not any("ms per sample" in ax.get_ylabel() for ax in fig.axes)
    assert "AMD EPYC, 2 cores · 2 threads · ci profile · 2026-12-02" in plot.figure_title(fig)
    medians = [tuple(round(y, 3) for y in c.lines[0].get_ydata()) for c in mem_ax.containers]  # one per framework
    (floor,) = [line for line in mem_ax.get_lines() if line.get_linestyle() == ":"]
    at = batches.index(128)
    torch_b128 = next(r for r in procs if r["framework"] == "torch" and r["batch_size"] == 128)
    assert len(medians) == 3 and round(torch_b128["memory"]["tensor_peak_bytes"] / 1e6, 3) in {m[at] for m in medians}
    assert floor.get_ydata()[at] == pytest.approx(torch_b128["analytic"]["train_floor_bytes"] / 1e6)
    import matplotlib.pyplot as plt
    plt.close(fig)
