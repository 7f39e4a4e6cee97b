"""Selection -> cells: the product of the selection's axes, each cell with its recipe and
protocol; unknown names and impossible recipes are refused before anything runs."""
from __future__ import annotations

import pytest

from bench import registry
from bench.runner.plan import Selection, default_selection, plan
from bench.spec import SpecError


def test_cells_are_the_product_of_the_selection():
    sel = Selection(frameworks=("torch", "jax"), models=("lstm128", "cnn_small"), devices=("cpu", "gpu"),
                    profile="smoke", batch_sizes=(16, 64), threads=3, seeds=(0, 1))
    cells = plan(sel)
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    first = cells[0]
    assert (first.framework, first.model.name, first.device, first.train.batch_size, first.train.seed) == \
        ("torch", "lstm128", "cpu", 16, 0)
    assert [c.train.seed for c in cells[:2]] == [0, 1]  # seeds vary fastest
    assert {c.threads for c in cells if c.device == "cpu"} == {3}
    assert {c.threads for c in cells if c.device == "gpu"} == {0}  # a GPU cell sets no thread count
    assert {c.profile for c in cells} == {"smoke"} and len({c.key for c in cells}) == len(cells)


def test_protocol_overrides_and_all_variants():
    (cell,) = plan(Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), profile="smoke",
                             warmup_steps=2, repeats=2, steps_per_repeat=3, threads=1))
    assert (cell.protocol.warmup_steps, cell.protocol.repeats, cell.protocol.steps_per_repeat) == (2, 2, 3)
    cells = plan(Selection(frameworks=("jax",), models=("lstm128",), devices=("cpu",), variants=("all",), threads=1))
    assert tuple(c.variant for c in cells) == registry.variants("jax")


def test_a_target_accuracy_alone_evaluates_about_20_times():
    (cell,) = plan(Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), steps=400,
                             target_accuracy=0.9, threads=1))
    assert cell.protocol.eval_every_steps == 20 and cell.protocol.target_accuracy == 0.9


@pytest.mark.parametrize("change, error, message", [
    ({"frameworks": ("caffe",)}, registry.UnknownFramework, "unknown framework 'caffe'"),
    ({"variants": ("turbo",)}, registry.UnknownFramework, "unknown variant 'turbo' for torch"),
    ({"models": ("lstm9",)}, SpecError, "lstm9"),
    ({"steps": 3}, SpecError, "fewer than the timing protocol needs"),
    ({"models": ("lstm128", "lstm128")}, SpecError, "the same cell twice"),
])
def test_bad_selections_are_refused(change, error, message):
    base = dict(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=1)
    with pytest.raises(error, match=message):
        plan(Selection(**{**base, **change}))


def test_the_default_selection_is_every_framework_and_the_default_models():
    sel = default_selection("ci")
    assert sel.frameworks == tuple(registry.FRAMEWORKS) and sel.profile == "ci" and "cpu" in sel.devices
