"""TensorFlow/Keras-only behaviour: the torch-formula Adam, Keras' GRU layout, variant choice,
retracing, optimizer reset. Cross-framework equivalence lives in test_equivalence.py."""
from __future__ import annotations

import numpy as np
import pytest

from bench import data, reference
from bench.spec import ModelSpec, TrainSpec
from conftest import load_impl


@pytest.fixture(scope="module")
def tfi():
    return load_impl("tf")


def _torch_adam(p, grads, lr, b1, b2, eps, scale=1.0):
    """torch.optim.Adam's update in float64 (torch/optim/adam.py, single-tensor path)."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - scale * lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
    return p


def test_adam_follows_torch_not_keras_epsilon_hat(tfi):
    import keras

    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    # Gradient components around eps are where "epsilon hat" and torch's eps part ways.
    grads = [np.array([1e-8, -3e-9, 0.5, -2e-3], np.float32) * (1 + 0.1 * s) for s in range(3)]
    p0 = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    results = {}
    for name, double in (("single", False), ("double", True)):
        var = keras.Variable(p0.copy())
        opt = tfi._TorchAdam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps,
                             double=(var,) if double else (), name="t_adam")
        opt.build([var])
        for g in grads:
            opt.apply([g], [var])
        results[name] = np.asarray(var.numpy(), np.float64)
    want = _torch_adam(p0.astype(np.float64), [g.astype(np.float64) for g in grads], lr, b1, b2, eps)
    np.testing.assert_allclose(results["single"], want, rtol=0, atol=2e-8)
    want2 = _torch_adam(p0.astype(np.float64), [g.astype(np.float64) for g in grads], lr, b1, b2, eps, scale=2.0)
    np.testing.assert_allclose(results["double"], want2, rtol=0, atol=2e-8)

    stock = keras.Variable(p0.copy())
    k_opt = keras.optimizers.Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps, name="k_adam")
    for g in grads:
        k_opt.apply([g], [stock])
    # The stock optimizer moves the eps-sized components visibly differently: the override matters.
    assert np.abs(np.asarray(stock.numpy(), np.float64) - want).max() > 5e-5


def test_gru_weights_use_keras_gate_order_and_two_bias_rows(tfi):
    m = ModelSpec("g8", cell="gru", hidden=8)
    w = reference.init_weights(m, 3)
    w["rnn.0.fwd.b_ih"] = np.arange(24, dtype=np.float32)
    w["rnn.0.fwd.b_hh"] = -np.arange(24, dtype=np.float32)
    tr = tfi.build(m, TrainSpec(), "cpu")
    tr.set_weights(w)
    cell = tr.net.rnns[0][0].cell
    H = 8
    k, b = cell.kernel.numpy(), cell.bias.numpy()
    assert b.shape == (2, 3 * H)
    # Keras z, r, h  <-  canonical r, z, n
    np.testing.assert_array_equal(k[:, :H], w["rnn.0.fwd.w_ih"][H:2 * H].T)
    np.testing.assert_array_equal(k[:, H:2 * H], w["rnn.0.fwd.w_ih"][:H].T)
    np.testing.assert_array_equal(b[0, :H], np.arange(H, 2 * H))
    np.testing.assert_array_equal(b[1, 2 * H:], -np.arange(2 * H, 3 * H))
    back = tr.get_weights()
    assert all(np.array_equal(back[n], w[n]) for n in w)


@pytest.mark.parametrize("family, model", [("rnn", ModelSpec("l8", hidden=8)),
                                           ("cnn", ModelSpec("c", family="cnn", conv_channels=(2,), fc_hidden=4))])
def test_variants_report_what_runs_on_cpu(tfi, family, model):
    kernels = {v: tfi.build(model, TrainSpec(), "cpu", variant=v).kernel for v in tfi.VARIANTS}
    assert kernels["xla"] == "xla-cpu" and kernels["graph"] == "tf-graph-cpu"
    assert kernels["default"] == ("xla-cpu" if tfi.default_cpu_jit(model) else "tf-graph-cpu")
    tr = tfi.build(model, TrainSpec(), "cpu")
    assert tr.fast_path and tr.memory() == {} and tr.precision_applied == "fp32"


def test_gpu_request_without_a_gpu_is_unsupported(tfi):
    from impls.base import Unsupported

    if tfi.gpu_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(Unsupported, match="no GPU"):
        tfi.build(ModelSpec("l8", hidden=8), TrainSpec(), "gpu")


def test_predict_does_not_retrace_and_set_weights_resets_adam(tfi):
    m = ModelSpec("l8", hidden=8, dropout=0.0)
    ds = data.load()
    tr = tfi.build(m, TrainSpec(), "cpu", variant="xla")
    w = reference.init_weights(m, 0)

    def run():
        tr.set_weights(w)
        return [tr.loss_value(tr.train_step(tr.stage(*ds.train_batch(0, s, 32)))) for s in range(4)]

    first, second = run(), run()
    assert first == second  # fresh Adam state (and step count) after set_weights
    for s in range(3):
        tr.to_numpy(tr.predict(tr.stage(*ds.train_batch(1, s, 32))))
    assert tr._predict_fn.experimental_get_tracing_count() == 1
    assert tr._train_fn.experimental_get_tracing_count() == 1


def test_cpu_default_follows_the_measured_choice_per_zoo_model(tfi):
    from bench.spec import ZOO

    assert tfi.build(ZOO["lstm128"], TrainSpec(), "cpu").kernel == "tf-graph-cpu"
    assert tfi.build(ZOO["lstm512"], TrainSpec(), "cpu").kernel == "xla-cpu"
    # XLA since the 2026-12-01 variants runs (1.27x and 1.25x graph; bench/defaults.py)
    assert tfi.build(ZOO["cnn_small"], TrainSpec(), "cpu").kernel == "xla-cpu"
    assert tfi.build(ZOO["cnn_tutorial"], TrainSpec(), "cpu").kernel == "tf-graph-cpu"
