"""Ground truth in numpy: canonical weight layout, canonical initialisation, forward pass.

Every implementation is tested against `forward` from the weights `init_weights` draws, so
"the same network" is checked, not assumed. Layout (float32, PyTorch-like, gate order as torch):
  rnn.{layer}.{fwd|bwd}.w_ih (G*H, in), .w_hh (G*H, H), .b (G*H)   # lstm (i,f,g,o) and rnn
  GRU keeps its two biases apart: .b_ih, .b_hh (gates r,z,n), because the candidate's
  recurrent bias sits inside the reset-gate product (torch == Keras reset_after=True).
  conv.{i}.w (out, in, k, k), conv.{i}.b; fc.0.w (fc_hidden, C*H*W flattened channel-major), fc.0.b
  head.w (classes, features_in), head.b
"""
from __future__ import annotations

import numpy as np

from . import data
from .spec import GATES, ModelSpec

Weights = dict[str, np.ndarray]


def directions(model: ModelSpec) -> tuple[str, ...]:
    return ("fwd", "bwd") if model.bidirectional else ("fwd",)


def cnn_flat_features(model: ModelSpec) -> int:
    side_h, side_w = model.timesteps, model.features
    for _ in model.conv_channels:
        side_h, side_w = side_h // 2, side_w // 2
    return model.conv_channels[-1] * side_h * side_w


def weight_shapes(model: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor and its shape, in the fixed order the initialiser draws them."""
    shapes: dict[str, tuple[int, ...]] = {}
    if model.family == "rnn":
        g, h = GATES[model.cell], model.hidden
        for layer in range(model.layers):
            inp = model.features if layer == 0 else h * model.directions
            for d in directions(model):
                p = f"rnn.{layer}.{d}."
                shapes[p + "w_ih"] = (g * h, inp)
                shapes[p + "w_hh"] = (g * h, h)
                if model.cell == "gru":
                    shapes[p + "b_ih"] = (g * h,)
                    shapes[p + "b_hh"] = (g * h,)
                else:
                    shapes[p + "b"] = (g * h,)
        head_in = h * model.directions
    else:
        cin = 1
        for i, c in enumerate(model.conv_channels):
            shapes[f"conv.{i}.w"] = (c, cin, model.conv_kernel, model.conv_kernel)
            shapes[f"conv.{i}.b"] = (c,)
            cin = c
        head_in = cnn_flat_features(model)
        if model.fc_hidden:
            shapes["fc.0.w"] = (model.fc_hidden, head_in)
            shapes["fc.0.b"] = (model.fc_hidden,)
            head_in = model.fc_hidden
    shapes["head.w"] = (model.classes, head_in)
    shapes["head.b"] = (model.classes,)
    return shapes


def param_count(model: ModelSpec) -> int:
    return int(sum(np.prod(s) for s in weight_shapes(model).values()))


def init_weights(model: ModelSpec, seed: int) -> Weights:
    """Canonical initialisation, drawn once in numpy and set into every framework.

    Weights ~ U(-1/sqrt(fan), 1/sqrt(fan)) as torch's defaults (fan = hidden for recurrent
    layers, fan-in otherwise); biases zero except the LSTM forget gate, which starts at
    `forget_bias` (the tutorials' BasicLSTMCell(forget_bias=1.0), as an initial value).
    """
    rng = np.random.default_rng([seed, 0x157])
    out: Weights = {}
    for name, shape in weight_shapes(model).items():
        if name.endswith((".b", ".b_ih", ".b_hh")):
            b = np.zeros(shape, np.float32)
            if model.family == "rnn" and model.cell == "lstm" and name.startswith("rnn."):
                h = model.hidden
                b[h:2 * h] = model.forget_bias
            out[name] = b
            continue
        if name.startswith("rnn."):
            fan = model.hidden
        else:
            fan = int(np.prod(shape[1:]))
        bound = 1.0 / np.sqrt(fan)
        out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def check_weights(model: ModelSpec, w: Weights) -> None:
    """Raise ValueError naming the first tensor missing, extra or misshapen."""
    shapes = weight_shapes(model)
    missing, extra = set(shapes) - set(w), set(w) - set(shapes)
    if missing or extra:
        raise ValueError(f"weights for {model.name}: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for k, s in shapes.items():
        if tuple(w[k].shape) != s:
            raise ValueError(f"weights for {model.name}: {k} has shape {tuple(w[k].shape)}, expected {s}")


# ---------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _cell_step(model: ModelSpec, w: Weights, p: str, xt: np.ndarray, h: np.ndarray, c: np.ndarray):
    H = model.hidden
    if model.cell == "lstm":
        z = xt @ w[p + "w_ih"].T + h @ w[p + "w_hh"].T + w[p + "b"]
        i, f, g, o = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        return o * np.tanh(c), c
    if model.cell == "gru":
        gi = xt @ w[p + "w_ih"].T + w[p + "b_ih"]
        gh = h @ w[p + "w_hh"].T + w[p + "b_hh"]
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        zg = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1.0 - zg) * n + zg * h, c
    return np.tanh(xt @ w[p + "w_ih"].T + h @ w[p + "w_hh"].T + w[p + "b"]), c


def _rnn_features(model: ModelSpec, w: Weights, x: np.ndarray) -> np.ndarray:
    """Run the stack in float64 (ground truth), return the final-state readout (B, H*dirs)."""
    seq = x.astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in w.items()}
    B, T = seq.shape[0], seq.shape[1]
    # Variable length: a sample's state stops changing after its own last step, so the final
    # state is the one at that step (its outputs past it are zeros, as in a packed sequence).
    lengths = data.row_lengths(x) if model.variable_length else np.full(B, T)
    finals = []
    for layer in range(model.layers):
        outs, finals = [], []
        for d in directions(model):
            p = f"rnn.{layer}.{d}."
            h = np.zeros((B, model.hidden))
            c = np.zeros((B, model.hidden))
            ys = [None] * T
            order = range(T) if d == "fwd" else range(T - 1, -1, -1)
            for t in order:
                h_new, c_new = _cell_step(model, w, p, seq[:, t], h, c)
                live = (t < lengths)[:, None]
                h, c = np.where(live, h_new, h), np.where(live, c_new, c)
                ys[t] = np.where(live, h_new, 0.0)
            outs.append(np.stack(ys, axis=1))
            finals.append(h)
        seq = np.concatenate(outs, axis=-1)
    return np.concatenate(finals, axis=-1)


def _conv_same(x: np.ndarray, wt: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (B, C, H, W), wt (O, C, k, k): stride-1 SAME cross-correlation via im2col."""
    k = wt.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    B, C, H, W = x.shape
    cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # B,C,H,W,k,k
    return np.einsum("bchwij,ocij->bohw", cols, wt, optimize=True) + b[None, :, None, None]


def _maxpool2(x: np.ndarray) -> np.ndarray:
    B, C, H, W = x.shape
    x = x[:, :, : H // 2 * 2, : W // 2 * 2]
    return x.reshape(B, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


def _cnn_features(model: ModelSpec, w: Weights, x: np.ndarray) -> np.ndarray:
    a = x.astype(np.float64)[:, None, :, :]
    for i in range(len(model.conv_channels)):
        a = _maxpool2(np.maximum(_conv_same(a, w[f"conv.{i}.w"].astype(np.float64), w[f"conv.{i}.b"]), 0.0))
    a = a.reshape(a.shape[0], -1)  # channel-major (C, H, W): the canonical flatten order
    if model.fc_hidden:
        a = np.maximum(a @ w["fc.0.w"].T.astype(np.float64) + w["fc.0.b"], 0.0)
    return a


def forward(model: ModelSpec, w: Weights, x: np.ndarray) -> np.ndarray:
    """Logits (B, classes) in float64, inference mode (no dropout). x: (B, 28, 28) in [0, 1]."""
    check_weights(model, w)
    feats = _rnn_features(model, w, x) if model.family == "rnn" else _cnn_features(model, w, x)
    return feats @ w["head.w"].T.astype(np.float64) + w["head.b"]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy, the loss every framework minimises."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())
