"""JAX-only behaviour of impls/jax_impl.py: variants, internal layout, donation, dropout keys,
precision bookkeeping, and the cuDNN weight packing (checked on CPU through lstm_ref)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bench import data, reference  # noqa: E402
from bench.spec import ZOO, TrainSpec  # noqa: E402
from impls import jax_impl as J  # noqa: E402
from impls.base import Unsupported  # noqa: E402

RNN_MODELS = [n for n, m in ZOO.items() if m.family == "rnn"]
CPU_VARIANTS = ("default", "hoisted", "unroll28")


@pytest.fixture(scope="module")
def batch():
    return data.load().train_batch(0, 0, 16)


@pytest.mark.parametrize("name", list(ZOO))
def test_weights_round_trip_bit_for_bit(name):
    m = ZOO[name]
    w = reference.init_weights(m, 3)
    t = J.build(m, TrainSpec(), "cpu")
    t.set_weights(w)
    got = t.get_weights()
    assert set(got) == set(w)
    for k in w:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], w[k]), k


@pytest.mark.parametrize("variant", CPU_VARIANTS)
@pytest.mark.parametrize("name", list(ZOO))
def test_every_cpu_variant_matches_the_numpy_reference(name, variant, batch):
    m = ZOO[name]
    try:
        t = J.build(m, TrainSpec(), "cpu", variant=variant)
    except Unsupported:
        assert m.family == "cnn" and variant != "default"
        return
    w = reference.init_weights(m, 0)
    t.set_weights(w)
    x, y = batch
    logits = t.to_numpy(t.predict(t.stage(x, y)))
    assert logits.dtype == np.float32
    assert np.abs(logits - reference.forward(m, w, x)).max() < 1e-5


def test_lstm_keeps_two_biases_like_torch(batch):
    """Both biases train (Adam moves each by ~lr), and get_weights reports their sum."""
    m = ZOO["lstm128"]
    t = J.build(m, TrainSpec(), "cpu")
    w = reference.init_weights(m, 0)
    t.set_weights(w)
    assert not np.any(np.asarray(t.params["rnn.0.fwd.b_hh"]))
    t.train_step(t.stage(*batch))
    b_ih, b_hh = (np.asarray(t.params[f"rnn.0.fwd.b_{s}"]) for s in ("ih", "hh"))
    assert np.any(b_hh)
    assert np.array_equal(t.get_weights()["rnn.0.fwd.b"], b_ih + b_hh)


def test_train_step_donates_and_predict_compiles_once(batch):
    t = J.build(ZOO["lstm128"], TrainSpec(), "cpu")
    staged = t.stage(*batch)
    old = t.params["head.b"]
    t.train_step(staged)
    t.sync()
    assert old.is_deleted()  # donated: XLA reused the buffer for the new parameters
    x2, y2 = data.load().train_batch(0, 1, 16)
    t.predict(staged)
    t.predict(t.stage(x2, y2))
    assert t._predict._cache_size() == 1


def test_dropout_masks_follow_the_seed(batch):
    m = ZOO["lstm3x256"]
    assert m.dropout > 0

    def losses(seed):
        t = J.build(m, TrainSpec(seed=seed), "cpu")
        t.set_weights(reference.init_weights(m, 0))
        b = t.stage(*batch)
        return [t.loss_value(t.train_step(b)) for _ in range(3)]

    a, b, c = losses(0), losses(0), losses(1)
    assert a == b
    assert a != c
    # Training-mode dropout changes the first loss relative to the dropout-free network.
    t = J.build(dataclasses.replace(m, dropout=0.0), TrainSpec(), "cpu")
    t.set_weights(reference.init_weights(m, 0))
    assert abs(t.loss_value(t.train_step(t.stage(*batch))) - a[0]) > 1e-4


def test_unsupported_cells_say_why():
    for name, variant in (("gru128", "cudnn"), ("cnn_small", "cudnn"), ("cnn_small", "hoisted"),
                          ("cnn_tutorial", "unroll28"), ("lstm128", "cudnn")):
        with pytest.raises(Unsupported) as e:
            J.build(ZOO[name], TrainSpec(), "cpu", variant=variant)
        assert str(e.value) and "\n" not in str(e.value)
    if not J.gpu_available():
        with pytest.raises(Unsupported):
            J.build(ZOO["lstm128"], TrainSpec(), "gpu")
    with pytest.raises(ValueError):
        J.build(ZOO["lstm128"], TrainSpec(), "cpu", variant="nope")


def test_precision_applied_on_cpu(batch):
    m = ZOO["lstm128"]
    w = reference.init_weights(m, 0)
    t = J.build(m, TrainSpec(), "cpu", precision="tf32")
    assert t.precision_applied == "fp32"  # TF32 does not exist on CPU
    t = J.build(m, TrainSpec(), "cpu", precision="bf16")
    t.set_weights(w)
    assert t.precision_applied == "bf16"
    x, y = batch
    logits = t.to_numpy(t.predict(t.stage(x, y)))
    assert logits.dtype == np.float32
    assert np.abs(logits - reference.forward(m, w, x)).max() < 1e-2
    assert t.get_weights()["head.w"].dtype == np.float32  # parameters stay fp32


@pytest.mark.parametrize("name", ["lstm128", "bilstm512", "lstm3x256"])
def test_cudnn_weight_packing_matches_lstm_ref(name, batch):
    """The GPU variant cannot run here; its packing of our weights into cuDNN's flat vector can
    be checked with jax.experimental.rnn's own unpacker and CPU reference LSTM."""
    from jax.experimental import rnn

    m = ZOO[name]
    w = reference.init_weights(m, 0)
    p = {k: jnp.asarray(v) for k, v in J.to_internal(m, w).items()}
    rng = np.random.default_rng(1)
    for k in [k for k in p if k.endswith("b_hh")]:  # split each bias unevenly between the two
        extra = jnp.asarray(rng.normal(size=p[k].shape).astype(np.float32) * 0.1)
        p[k], p[k[:-2] + "ih"] = p[k] + extra, p[k[:-2] + "ih"] - extra
    seq = jnp.asarray(batch[0])
    B, T = seq.shape[:2]
    for layer in range(m.layers):
        n_in = seq.shape[-1]
        flat = J.cudnn_weights(m, p, layer)
        assert flat.size == rnn.get_num_params_in_lstm(n_in, m.hidden, 1, m.bidirectional)
        unpacked = rnn.unpack_lstm_weights(flat, n_in, m.hidden, 1, m.bidirectional)
        h0 = jnp.zeros((m.directions, B, m.hidden), jnp.float32)
        seq, h_n, _ = rnn.lstm_ref(seq, h0, h0, *unpacked, jnp.full((B,), T, jnp.int32), n_in, m.hidden, 1, 0.0,
                                   m.bidirectional)
    feats = jnp.concatenate([h_n[i] for i in range(m.directions)], axis=-1)
    logits = np.asarray(feats @ p["head.w"] + p["head.b"])
    assert np.abs(logits - reference.forward(m, w, batch[0])).max() < 1e-5


def test_versions_and_memory_on_cpu():
    v = J.versions()
    assert v["jax"] == jax.__version__ and "optax" in v
    t = J.build(ZOO["cnn_small"], TrainSpec(), "cpu")
    assert t.memory() == {}
    assert t.kernel == "xla-conv-cpu" and t.fast_path
    assert J.build(ZOO["lstm128"], TrainSpec(), "cpu").kernel == "xla-scan-cpu"


def test_sync_waits_for_predict_and_train_outputs():
    """The harness times inference between two sync() calls: sync must cover predict's output
    (an earlier version blocked on the training state only and timed just the dispatch)."""
    import numpy as np

    from bench import reference
    from bench.spec import ZOO, TrainSpec
    from impls import jax_impl

    m = ZOO["lstm128"]
    tr = jax_impl.build(m, TrainSpec(), "cpu", "fp32", "default", 2)
    tr.set_weights(reference.init_weights(m, 0))
    x = np.zeros((64, 28, 28), np.float32)
    y = np.zeros(64, np.int32)
    b = tr.stage(x, y)
    assert all(a.is_ready() for a in b)  # staged data is on the device before timing starts
    out = tr.predict(b)
    tr.sync()
    assert out.is_ready()
    loss = tr.train_step(b)
    tr.sync()
    assert loss.is_ready()
