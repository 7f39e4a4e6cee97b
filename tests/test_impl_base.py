"""impls/base.py: what every framework's trainer shares, checked without a framework (a numpy
trainer stands in), and that every installed framework's trainer satisfies the Trainer protocol."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.spec import ZOO, TrainSpec
from impls.base import AllocationEvent, PeakLive, Trainer, TrainerBase, nbytes, peak_live_bytes


def alloc(address: int, size: int, tag: str = "") -> AllocationEvent:
    return AllocationEvent(address, size, tag)


def free(address: int) -> AllocationEvent:
    return AllocationEvent(address, None)


def test_peak_live_bytes_is_the_worst_running_sum_and_what_was_live_then():
    events = [alloc(1, 100, "a"), alloc(2, 50, "b"), free(1), alloc(3, 120, "c"), alloc(4, 10, "d"), free(3),
              free(4), alloc(5, 150, "e"), free(2), free(5)]
    # running sum: 100 150 50 170 180 60 50 200 150 0
    assert peak_live_bytes(events) == PeakLive(200, ((50, "b"), (150, "e")))


def test_peak_live_bytes_leaves_out_blocks_allocated_before_the_region():
    # frees of blocks the region did not allocate change nothing, on either side
    assert peak_live_bytes([free(9), alloc(1, 30), free(8), alloc(2, 40), free(1)]).peak_bytes == 70
    assert peak_live_bytes([]) == PeakLive(0, ())


def test_peak_live_bytes_keeps_the_first_time_the_peak_was_reached():
    events = [alloc(1, 64, "first"), free(1), alloc(2, 64, "second")]
    assert peak_live_bytes(events).live_at_peak == ((64, "first"),)


def test_nbytes_sums_arrays_and_skips_absent_ones():
    a, b = np.zeros((3, 4), np.float32), np.zeros(5, np.int64)
    assert nbytes([a, None, b]) == 48 + 40
    assert nbytes([a, b], lambda x: x.size) == 17
    assert isinstance(nbytes(iter([])), int)


# "jax": a registry name, for the variant check (nothing of JAX is imported)
class NumpyTrainer(TrainerBase, framework="jax", allocator_peak_key="numpy_peak_bytes"):
    """The least TrainerBase subclass: records what the shared code calls, in order."""

    def __init__(self, model, train, device, precision, variant, threads) -> None:
        super().__init__(model, train, device, variant)
        self.calls: list[str] = []
        self.peak = 0

    def sync(self) -> None:
        self.calls.append("sync")

    def reset_memory(self) -> None:
        self.calls.append("reset")
        self.peak = 0

    def train_step(self, batch: Any) -> Any:
        self.calls.append("step")
        self.peak = 1000 + len(batch)

    def allocator_figures(self) -> dict[str, int]:
        return {"numpy_peak_bytes": self.peak, "numpy_current_bytes": 7}


def test_build_checks_the_variant_against_the_registry_and_sets_the_defaults():
    t = NumpyTrainer.build(ZOO["lstm128"], TrainSpec(), "cpu", variant="hoisted")
    assert (t.on_gpu, t.fast_path, t.fast_path_note) == (False, True, "")
    assert t.param_count == 4 * 128 * (28 + 128 + 1) + 10 * 128 + 10
    assert t.model_spec is ZOO["lstm128"] and t.train_spec == TrainSpec()
    with pytest.raises(ValueError, match=r"unknown jax variant 'eager' \(choose from default, hoisted"):
        NumpyTrainer.build(ZOO["lstm128"], TrainSpec(), "cpu", variant="eager")


def test_memory_is_empty_on_cpu_and_the_allocator_figures_on_gpu():
    assert NumpyTrainer.build(ZOO["lstm128"], TrainSpec(), "cpu").memory() == {}
    gpu = NumpyTrainer.build(ZOO["lstm128"], TrainSpec(), "gpu")
    assert gpu.memory() == {"numpy_peak_bytes": 0, "numpy_current_bytes": 7}


def test_gpu_tensor_memory_is_the_peak_of_one_step_after_a_reset():
    t = NumpyTrainer.build(ZOO["lstm128"], TrainSpec(), "gpu")
    t.peak = 10**9  # an earlier peak must not count
    breakdown = {"params": 1}
    out = t.gpu_tensor_memory(breakdown, (0, 0, 0), "numpy: a test")
    assert t.calls == ["sync", "reset", "step", "sync"]
    assert out == {"tensor_peak_bytes": 1003, "tensor_method": "numpy: a test", "tensor_breakdown": {"params": 1}}
    assert out["tensor_breakdown"] is breakdown  # the caller adds what exists only after the step


@pytest.mark.parametrize("model", ["lstm128", "cnn_small"])
def test_every_framework_trainer_is_a_trainer(impl, model):
    t = impl.build(ZOO[model], TrainSpec(), "cpu", "fp32", "default", 2)
    assert isinstance(t, Trainer) and isinstance(t, TrainerBase)
    assert t.framework == impl.FRAMEWORK and t.memory() == {}
    assert t.allocator_peak_key.startswith(impl.FRAMEWORK + "_")
