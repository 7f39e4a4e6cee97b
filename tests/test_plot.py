"""Plots readable at GitHub's width (issue 28), checked on the figure objects (matplotlib Agg):
every axis labelled, one colour per framework in every plot and no colour shared by two
frameworks, ticks at the batch sizes measured, at most 1200 px wide, no text under 9 pt; and
`bench plot` writes the PNGs it says it writes."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from bench import analytic, cli
from bench.records import results
from bench.spec import ZOO

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
from matplotlib.text import Text  # noqa: E402

from bench.show import plot  # noqa: E402

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
        "device": "cpu", "batch_size": batch, "status": "ok",
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
            ("run (several batches)", plot.run_figure(claim_run(), SOURCE))]
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
    assert [name for name, _ in figures] == ["run (one batch)", "run (several batches)", "claim-memory.png",
                                             "claim-ratios.png", "accuracy-vs-time.png"]


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
        if not name.startswith("claim"):
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
    assert written == ["plot.png", "claim-memory.png", "claim-ratios.png", "accuracy-vs-time.png"]
    from PIL import Image

    for name in written:
        assert Image.open(run / name).size[0] <= plot.MAX_WIDTH_PX
