"""Every framework runs *the same* network: the product's core promise, checked in numbers.

Tolerances (fp32, CPU):
- logits vs the float64 numpy reference: 1e-5 absolute. Each framework's fp32 rounding over
  28 recurrent steps stays ~1e-6 here; 1e-5 leaves a margin without hiding a wrong gate
  order, bias or flatten order (those give differences of 1e-2 and more).
- weights after one Adam step, framework vs framework: 1e-5 absolute, with Adam eps = 1e-4
  for this test. Adam's first step is lr * g / (|g| + eps): with eps = 1e-8, a gradient
  component of ~1e-9 (the plain RNN's vanishing gradients have many) turns a 1e-10 rounding
  difference into a 1e-4 weight difference, which says nothing about the implementations.
  eps = 1e-4 keeps the step well-conditioned yet still exposes a wrong eps placement (Keras'
  epsilon-hat would shift updates by ~10% of lr = 1e-4) or a wrong bias correction.
- loss curves over 50 steps: LOSS_CURVE_TOL below. Rounding differences compound through
  training (Adam normalises every gradient component, so a tiny difference in a near-zero
  gradient component becomes a weight difference of up to lr); the tolerance is an order of
  magnitude above what was measured here and two orders below what a wrong recipe gives
  (e.g. Keras' default eps=1e-7 or its epsilon-hat placement).
"""
from __future__ import annotations

import dataclasses
import itertools
from functools import lru_cache

import numpy as np
import pytest

from bench import data, reference, registry
from bench.spec import ZOO, TrainSpec
from conftest import FRAMEWORKS, load_impl
from impls.base import Unsupported

LOGIT_TOL = 1e-5
STEP_TOL = 1e-5
LOSS_CURVE_TOL = 2e-3
MODELS = list(ZOO)
PAIRS = list(itertools.combinations(FRAMEWORKS, 2))


def no_dropout(name: str):
    return dataclasses.replace(ZOO[name], dropout=0.0)


@lru_cache(maxsize=1)
def mnist_data():
    return data.load()


def build(fw: str, model, train=TrainSpec(), variant="default", precision="fp32"):
    impl = load_impl(fw)
    tr = impl.build(model, train, "cpu", precision, variant, 2)
    tr.set_weights(reference.init_weights(model, train.seed))
    return tr


def batch(n: int, step: int = 0):
    return mnist_data().train_batch(0, step, n)


@pytest.mark.parametrize("model", MODELS)
def test_logits_equal_the_numpy_reference(impl, model):
    m = ZOO[model]
    x, y = batch(16)
    for variant in registry.variants(impl.FRAMEWORK):
        try:
            tr = build(impl.FRAMEWORK, m, variant=variant)
        except Exception as e:  # a GPU-only variant says so; anything else is a failure
            from impls.base import Unsupported

            if isinstance(e, Unsupported):
                continue
            raise
        got = tr.to_numpy(tr.predict(tr.stage(x, y)))
        want = reference.forward(m, reference.init_weights(m, 0), x)
        assert got.shape == (16, 10) and got.dtype == np.float32
        diff = np.abs(got - want).max()
        assert diff <= LOGIT_TOL, f"{impl.FRAMEWORK}:{variant} {model}: max |logit - reference| = {diff:.2e}"


@pytest.mark.parametrize("model", MODELS)
def test_weight_round_trip_is_exact(impl, model):
    m = ZOO[model]
    w = reference.init_weights(m, 5)
    tr = impl.build(m, TrainSpec(seed=5), "cpu", "fp32", "default", 2)
    tr.set_weights(w)
    back = tr.get_weights()
    assert set(back) == set(w)
    for k in w:
        assert back[k].dtype == np.float32 and np.array_equal(back[k], w[k]), k
    assert tr.param_count == reference.param_count(m)


ONE_STEP = TrainSpec(eps=1e-4)


def one_step_weights(fw: str, model: str, variant: str = "default"):
    m = no_dropout(model)
    tr = build(fw, m, ONE_STEP, variant=variant)
    x, y = batch(16)
    loss = tr.loss_value(tr.train_step(tr.stage(x, y)))
    return loss, tr.get_weights()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_one_adam_step_gives_the_same_weights(pair, model):
    (la, wa), (lb, wb) = (one_step_weights(fw, model) for fw in pair)
    assert abs(la - lb) <= LOGIT_TOL
    w0 = reference.init_weights(ZOO[model], 0)
    worst = max(np.abs(wa[k] - wb[k]).max() for k in wa)
    moved = max(np.abs(wa[k] - w0[k]).max() for k in wa)
    assert moved > 5e-4, "the step did not move the weights: the comparison would be vacuous"
    assert worst <= STEP_TOL, f"{pair} {model}: max |weight difference| after one step = {worst:.2e}"


# torch's other variants against eager, where they apply: the compiled step (network
# and Adam both compiled) on an RNN and a CNN, channels_last on both CNNs. Same tolerance as
# across frameworks: inductor may fuse and reorder, and must still be the same function.
TORCH_VARIANT_CASES = [("compiled", "lstm128"), ("compiled", "cnn_small"), ("channels_last", "cnn_small"),
                       ("channels_last", "cnn_tutorial")]


@pytest.mark.parametrize("variant, model", TORCH_VARIANT_CASES, ids=[f"{v}-{m}" for v, m in TORCH_VARIANT_CASES])
def test_torch_variants_take_the_same_adam_step_as_eager(variant, model):
    load_impl("torch")
    (la, wa), (lb, wb) = one_step_weights("torch", model, "eager"), one_step_weights("torch", model, variant)
    assert abs(la - lb) <= LOGIT_TOL
    worst = max(np.abs(wa[k] - wb[k]).max() for k in wa)
    assert worst <= STEP_TOL, f"torch:{variant} {model}: max |weight difference| after one step = {worst:.2e}"


@pytest.mark.parametrize("fw", ["torch", "tf"])
def test_default_runs_the_measured_cpu_choice(fw):
    """`default` on CPU is the variant bench.defaults names for the model: the same kernel."""
    from bench.defaults import cpu_default

    for model in ("lstm128", "lstm512", "cnn_small", "cnn_tutorial"):
        m = ZOO[model]
        chosen = cpu_default(fw, model, m.family)
        assert build(fw, m, variant="default").kernel == build(fw, m, variant=chosen).kernel, (fw, model, chosen)


def loss_curve(fw: str, steps: int = 50, model: str = "lstm128") -> np.ndarray:
    m = no_dropout(model)
    tr = build(fw, m)
    handles = [tr.train_step(tr.stage(*batch(128, s))) for s in range(steps)]
    return np.array([tr.loss_value(h) for h in handles])


@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_loss_curves_agree_over_50_steps(pair):
    a, b = (loss_curve(fw) for fw in pair)
    assert a[-1] < a[0] - 0.5  # it trains
    diff = np.abs(a - b).max()
    assert diff <= LOSS_CURVE_TOL, f"{pair}: max |loss difference| over 50 steps = {diff:.2e}"


def test_loss_decreases_and_accuracy_is_far_above_chance(impl):
    """150 steps of lstm128 (about 81% in torch here); chance is 10%."""
    m, t = ZOO["lstm128"], TrainSpec(batch_size=128, steps=150)
    tr = build(impl.FRAMEWORK, m, t)
    handles = [tr.train_step(tr.stage(*batch(128, s))) for s in range(t.steps)]
    losses = np.array([tr.loss_value(h) for h in handles])
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < losses[:10].mean() - 1.0, (losses[:10].mean(), losses[-10:].mean())
    x, y = mnist_data().test_arrays(2000)
    acc = (tr.to_numpy(tr.predict(tr.stage(x, y))).argmax(axis=1) == y).mean()
    assert acc > 0.6, acc


def test_training_dropout_is_on_and_inference_dropout_is_off(impl):
    m = ZOO["lstm3x256"]  # dropout 0.5
    tr = build(impl.FRAMEWORK, m)
    x, y = batch(32)
    staged = tr.stage(x, y)
    p1, p2 = tr.to_numpy(tr.predict(staged)), tr.to_numpy(tr.predict(staged))
    assert np.array_equal(p1, p2)  # inference is deterministic: no dropout
    assert np.abs(p1 - reference.forward(m, reference.init_weights(m, 0), x)).max() <= LOGIT_TOL
    l1 = tr.loss_value(tr.train_step(staged))
    tr2 = build(impl.FRAMEWORK, no_dropout("lstm3x256"))
    l2 = tr2.loss_value(tr2.train_step(tr2.stage(x, y)))
    assert abs(l1 - l2) > 1e-4  # dropout changed the training loss


@pytest.mark.parametrize("precision, applied", [("fp32", "fp32"), ("tf32", "fp32"), ("bf16", "bf16")])
def test_precision_flag_reaches_the_framework(impl, precision, applied):
    m = ZOO["lstm128"]
    x, y = batch(16)
    try:
        tr = build(impl.FRAMEWORK, m, precision=precision)
    except Unsupported as e:
        # Only bf16 may be refused, and only by the CPU itself (oneDNN lacks bf16 primitives on
        # some ISAs): the refusal must say so, since the worker records it as the skip reason.
        assert precision == "bf16" and "bf16" in str(e), e
        pytest.skip(f"this CPU refuses bf16: {e}")
    assert tr.precision_applied == applied  # TF32 does not exist on a CPU: it must say fp32
    got = tr.to_numpy(tr.predict(tr.stage(x, y)))
    diff = np.abs(got - reference.forward(m, reference.init_weights(m, 0), x)).max()
    if applied == "bf16":
        assert 1e-4 < diff < 0.1, diff  # visibly bf16, still the same network
    else:
        assert diff <= LOGIT_TOL


def test_impl_module_declares_what_the_registry_says(impl):
    info = registry.get(impl.FRAMEWORK)
    assert set(impl.VARIANTS) == set(registry.variants(info.name))
    v = impl.versions()
    assert isinstance(v, dict) and v


def test_torch_bf16_refused_by_the_cpu_is_a_skip_with_the_reason(monkeypatch):
    # A CI runner's oneDNN raised "could not create a primitive descriptor" for a bf16 LSTM; the
    # trainer must turn that into Unsupported at build time, not fail the cell mid-run.
    torch_impl = load_impl("torch")

    def refuse(self, x):
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive.")

    monkeypatch.setattr(torch_impl.RnnNet, "forward", refuse)
    with pytest.raises(Unsupported, match="bf16 on this CPU"):
        torch_impl.build(ZOO["lstm128"], TrainSpec(), "cpu", "bf16", "default", 2)
    torch_impl.build(ZOO["lstm128"], TrainSpec(), "cpu", "fp32", "default", 2)  # fp32 never probes
