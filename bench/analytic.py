"""Analytic cost of a training step from the spec alone: FLOPs and the memory floor.

Conventions (stated so a reader can redo them by hand):
- FLOPs count 2 per multiply-add of matmuls and convolutions; element-wise gate maths,
  activations and pooling are left out (they are <2% for every zoo model).
- A training step costs 3x the forward FLOPs (backward = grad wrt inputs + grad wrt weights,
  each as large as the forward), the usual convention.
- The memory floor is what a training step must hold at once, fp32: parameters, gradients,
  Adam's two moments (16 bytes per parameter), the input batch, and the activations backprop
  needs, per sample: LSTM 6H per step and direction (4 gate activations, c and h),
  GRU 5H (3 gates, the recurrent candidate term, h), plain RNN 1H (h);
  CNN each conv's ReLU output and pooled output, the dense layers' outputs, the logits.
  Anything a framework keeps beyond that (workspace, caches, the runtime itself) shows as
  measured / floor > 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from .reference import cnn_flat_features, param_count
from .spec import GATES, ModelSpec

BYTES_FP32 = 4
TRAIN_FLOPS_PER_FORWARD = 3
# Activations per time step and direction, in units of H, that backprop must keep.
_RNN_SAVED_PER_STEP = {"lstm": 6, "gru": 5, "rnn": 1}


@dataclass(frozen=True)
class Cost:
    forward_flops_per_sample: int
    train_flops_per_sample: int
    params: int
    state_bytes: int  # params + grads + Adam m, v
    activation_bytes_per_sample: int

    def train_floor_bytes(self, batch_size: int) -> int:
        return self.state_bytes + batch_size * self.activation_bytes_per_sample


def _rnn_forward_flops(m: ModelSpec) -> int:
    g, h, flops = GATES[m.cell], m.hidden, 0
    for layer in range(m.layers):
        inp = m.features if layer == 0 else h * m.directions
        flops += m.directions * m.timesteps * 2 * g * h * (inp + h)
    return flops + 2 * m.classes * h * m.directions


def _cnn_forward_flops(m: ModelSpec) -> int:
    side_h, side_w, cin, flops = m.timesteps, m.features, 1, 0
    for c in m.conv_channels:
        flops += 2 * side_h * side_w * c * cin * m.conv_kernel ** 2
        side_h, side_w, cin = side_h // 2, side_w // 2, c
    flat = cnn_flat_features(m)
    if m.fc_hidden:
        flops += 2 * flat * m.fc_hidden
        flat = m.fc_hidden
    return flops + 2 * flat * m.classes


def _rnn_activations(m: ModelSpec) -> int:
    per_step = _RNN_SAVED_PER_STEP[m.cell] * m.hidden * m.directions * m.layers
    return m.timesteps * per_step + m.classes


def _cnn_activations(m: ModelSpec) -> int:
    side_h, side_w, total = m.timesteps, m.features, 0
    for c in m.conv_channels:
        total += side_h * side_w * c  # ReLU output (its mask is derivable from it)
        side_h, side_w = side_h // 2, side_w // 2
        total += side_h * side_w * c  # pooled output = next layer's input
    return total + m.fc_hidden + m.classes


def cost(m: ModelSpec) -> Cost:
    fwd = _rnn_forward_flops(m) if m.family == "rnn" else _cnn_forward_flops(m)
    acts = _rnn_activations(m) if m.family == "rnn" else _cnn_activations(m)
    p = param_count(m)
    inputs = m.timesteps * m.features
    return Cost(
        forward_flops_per_sample=fwd,
        train_flops_per_sample=TRAIN_FLOPS_PER_FORWARD * fwd,
        params=p,
        state_bytes=4 * p * BYTES_FP32,
        activation_bytes_per_sample=(acts + inputs) * BYTES_FP32,
    )
