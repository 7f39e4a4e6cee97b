import dataclasses

import numpy as np
import pytest

from bench import reference
from bench.spec import ZOO, ModelSpec


def test_param_counts_by_hand():
    # lstm128: 4H(in+H) + 4H (one canonical bias) + head 10*H + 10
    assert reference.param_count(ZOO["lstm128"]) == 4 * 128 * (28 + 128) + 4 * 128 + 10 * 128 + 10 == 81674
    # tutorial CNN: 5*5*1*32+32, 5*5*32*64+64, 7*7*64*1024+1024, 1024*10+10 (about 3.27 M)
    assert reference.param_count(ZOO["cnn_tutorial"]) == 832 + 51264 + 3212288 + 10250 == 3274634
    assert 30_000 < reference.param_count(ZOO["cnn_small"]) < 40_000


def test_init_is_deterministic_and_sets_the_forget_bias():
    m = ZOO["lstm3x256"]
    a, b = reference.init_weights(m, 0), reference.init_weights(m, 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = reference.init_weights(m, 1)
    assert not np.array_equal(a["rnn.0.fwd.w_ih"], c["rnn.0.fwd.w_ih"])
    bias = a["rnn.1.fwd.b"]
    assert np.all(bias[256:512] == 1.0) and np.all(bias[:256] == 0) and np.all(bias[512:] == 0)
    bound = 1 / np.sqrt(256)
    assert np.abs(a["rnn.0.fwd.w_hh"]).max() <= bound and a["rnn.0.fwd.w_hh"].dtype == np.float32


def test_lstm_step_by_hand():
    """One LSTM step with all weights zero except known ones equals the gate equations."""
    m = ModelSpec("t", hidden=1, timesteps=1, features=1, classes=1, forget_bias=0.0)
    w = {k: np.zeros(s, np.float32) for k, s in reference.weight_shapes(m).items()}
    w["rnn.0.fwd.w_ih"][:, 0] = [1.0, 0.0, 2.0, 3.0]  # i, f, g, o
    w["head.w"][0, 0] = 1.0
    x = np.full((1, 1, 1), 0.5, np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sig(0.5) * np.tanh(1.0)
    expected = sig(1.5) * np.tanh(c)
    assert reference.forward(m, w, x)[0, 0] == pytest.approx(expected, abs=1e-12)


def test_bidirectional_backward_final_state_has_seen_the_whole_sequence(mnist):
    m = ZOO["bilstm512"]
    w = reference.init_weights(m, 0)
    x, _ = mnist.train_batch(0, 0, 2)
    base = reference.forward(m, w, x)
    x2 = x.copy()
    x2[:, 0, :] = 1.0  # change only the first row: the backward final state must see it
    w_fwd_only = dict(w)
    w_fwd_only["head.w"] = w["head.w"].copy()
    w_fwd_only["head.w"][:, :512] = 0.0
    assert not np.allclose(reference.forward(m, w_fwd_only, x2), reference.forward(m, w_fwd_only, x))
    assert base.shape == (2, 10)


def test_cnn_flatten_order_is_channel_major():
    m = ModelSpec("c", family="cnn", conv_channels=(2,), conv_kernel=1, fc_hidden=0, timesteps=4, features=4,
                  classes=8)
    w = {k: np.zeros(s, np.float32) for k, s in reference.weight_shapes(m).items()}
    w["conv.0.w"][:, 0, 0, 0] = [1.0, 2.0]  # channel c = (c+1) * pixel
    eye = np.eye(8, dtype=np.float32)
    w["head.w"] = eye  # logits = the flattened features
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 16
    pooled = x.reshape(2, 2, 2, 2).max(axis=(1, 3))  # (2, 2) max-pool of the single channel
    expected = np.concatenate([1.0 * pooled.ravel(), 2.0 * pooled.ravel()])  # C, then H, W
    assert np.allclose(reference.forward(m, w, x)[0], expected)


def test_check_weights_names_the_problem():
    m = ZOO["lstm128"]
    w = reference.init_weights(m, 0)
    w.pop("head.b")
    with pytest.raises(ValueError, match="missing .*head.b"):
        reference.forward(m, w, np.zeros((1, 28, 28), np.float32))
    w = reference.init_weights(m, 0)
    w["head.w"] = w["head.w"].T
    with pytest.raises(ValueError, match="head.w has shape"):
        reference.check_weights(m, w)


def test_cross_entropy_matches_definition():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    p0 = np.exp(2) / (np.exp(2) + 1 + np.exp(-1))
    assert reference.cross_entropy(logits, y) == pytest.approx(-(np.log(p0) + np.log(1 / 3)) / 2)


def test_gru_and_rnn_cells_differ_from_lstm(mnist):
    x, _ = mnist.train_batch(0, 0, 4)
    outs = [reference.forward(ZOO[n], reference.init_weights(ZOO[n], 0), x) for n in ("gru128", "rnn128")]
    assert all(np.isfinite(o).all() for o in outs)
    assert dataclasses.replace(ZOO["gru128"], cell="gru").cell == "gru"
