"""A test double of a framework implementation (numpy only) that claims a GPU, so the worker's
GPU bookkeeping (allocator peaks, no CPU calibration, --strict, 'no GPU' skips) is exercised
on machines without one. It is only ever registered by tests."""
from __future__ import annotations

import time

import numpy as np

from bench import analytic, reference

FRAMEWORK = "fake"
VARIANTS = {"default": "numpy test double"}
STATE = {"gpu": True, "fast_path": True}


def versions():
    out = {"fake": "0"}
    try:  # the tiny package of the environment tests (tests/test_envs.py): which one this worker ran with
        import lbtiny

        out["lbtiny"] = lbtiny.__version__
    except ImportError:
        pass
    return out


def gpu_available():
    return STATE["gpu"]


class FakeTrainer:
    kernel = "fake-kernel"
    fast_path_note = "fake: no fast path"
    precision_applied = "fp32"
    allocator_peak_key = "jax_peak_bytes_in_use"  # memory() below

    def __init__(self, model):
        self.model = model
        self.param_count = reference.param_count(model)
        self.fast_path = STATE["fast_path"]
        self.t = 0
        self.peak = 0

    def stage(self, x, y):
        return x, y

    def train_step(self, batch):
        self.t += 1
        time.sleep(0.003)  # a realistic step: a microsecond window could not pass the 1% self-check
        self.peak = max(self.peak, 1_000_000 + 1000 * len(batch[0]))
        return 2.3 * 0.98 ** self.t

    def loss_value(self, loss):
        return float(loss)

    def sync(self):
        pass

    def predict(self, batch):
        return reference.forward(self.model, self.w, batch[0]).astype(np.float32)

    def to_numpy(self, logits):
        return logits

    def get_weights(self):
        return self.w

    def set_weights(self, w):
        self.w = w

    def reset_memory(self):
        self.peak = 0

    def memory(self):
        return {"jax_peak_bytes_in_use": self.peak}

    def tensor_memory(self, batch):
        # A plausible, deterministic figure: the analytic floor plus a fixed 20% (a framework
        # always holds some temporaries beyond it). No step runs: the allocator peak of a GPU
        # cell, already read by memory(), stays what the worker's tests expect.
        floor = analytic.cost(self.model).train_floor_bytes(len(batch[0]))
        extra = floor // 5
        return {"tensor_peak_bytes": floor + extra,
                "tensor_method": "fake: analytic floor x 1.2 (numpy test double)",
                "tensor_breakdown": {"analytic_floor": floor, "temporaries": extra}}


def build(model, train, device, precision="fp32", variant="default", threads=0):
    return FakeTrainer(model)
