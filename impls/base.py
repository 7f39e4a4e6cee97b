"""The Implementation protocol every framework module fulfils.

A framework module (impls/<name>_impl.py) exposes:
  FRAMEWORK: str                     the registry name ("torch", "tf", "jax")
  VARIANTS: dict[str, str]           variant name -> one-line description ("default" always present)
  versions() -> dict[str, str]       framework (+ CUDA/cuDNN/BLAS) versions, for the record
  gpu_available() -> bool            whether this framework sees a GPU in this process
  build(model, train, device, precision, variant, threads) -> Trainer

The harness (bench/worker.py) drives a Trainer only through the methods below; it never
touches a framework object, so the timing and memory code is the same for every framework.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from bench.data import row_lengths
from bench.reference import Weights
from bench.spec import ModelSpec


class Unsupported(RuntimeError):
    """This framework/variant cannot run this cell here (e.g. a cuDNN-only variant on a CPU,
    a cell type a variant lacks). The worker records the cell as `skipped` with this message,
    which must say why in one line."""


def host_batch(model: ModelSpec, x: np.ndarray, y: np.ndarray, int_dtype: type = np.int32) -> tuple[np.ndarray, ...]:
    """The host arrays every framework stages: contiguous float32 images, integer labels and,
    for a variable-length model, each sample's length (bench.data.row_lengths) as a third
    element. One place, so the frameworks cannot disagree on what a batch carries."""
    host = (np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=int_dtype))
    if model.variable_length:
        host += (row_lengths(x).astype(int_dtype),)
    return host


@runtime_checkable
class Trainer(Protocol):
    param_count: int
    # What actually ran, e.g. "cudnn", "mkldnn-lstm", "xla-scan", "eigen-lstm", "xla-conv".
    kernel: str
    # False when the fast path the variant promises did not run (e.g. no cuDNN on GPU);
    # `fast_path_note` says why. The worker records both; --strict fails such a cell.
    fast_path: bool
    fast_path_note: str
    # The numerics that really applied ("fp32", "tf32", "bf16"), not just what was asked.
    precision_applied: str

    def stage(self, x: np.ndarray, y: np.ndarray) -> Any:
        """Copy one batch (x float32 (B,28,28), y int32 (B,), and a variable-length model's
        lengths: host_batch builds these) to the device; returns a handle
        train_step/predict accept. Called outside the timed region."""

    def train_step(self, batch: Any) -> Any:
        """One Adam step on a staged batch with dropout per spec. Returns the loss as a
        device value without forcing a sync (asynchronous frameworks stay asynchronous)."""

    def loss_value(self, loss: Any) -> float:
        """Turn a loss handle from train_step into a Python float (this syncs)."""

    def sync(self) -> None:
        """Block until all queued device work is done: the only timing boundary."""

    def predict(self, batch: Any) -> Any:
        """Logits for a staged batch, inference mode (no dropout), without forcing a sync."""

    def to_numpy(self, logits: Any) -> np.ndarray:
        """Logits handle -> float32 numpy (B, classes)."""

    def get_weights(self) -> Weights:
        """Canonical layout (bench/reference.py), float32 numpy copies."""

    def set_weights(self, w: Weights) -> None:
        """Load canonical weights; also resets the optimizer state (fresh Adam)."""

    def reset_memory(self) -> None:
        """Reset the allocator's peak counters where the framework can (GPU)."""

    def memory(self) -> dict[str, int]:
        """Allocator figures in bytes, named by source, e.g. {"torch_max_allocated_bytes": ...}.
        Empty on CPU where the framework keeps none."""

    def tensor_memory(self, batch: Any) -> dict[str, Any]:
        """Tensor-level memory of one training step on a staged batch (this may run one extra
        train step). What the framework itself allocates for the step with the model and
        optimizer state resident: params, gradients, Adam's moments, the activations kept for
        backward and the temporaries, without the process's allocator arenas, library caches
        or code, so that identical code gives an identical figure in every process (RSS moves
        by tens of percent). The worker calls it after its RSS window. Returns exactly:
          "tensor_peak_bytes": int (None only where the framework cannot say, with the reason
              in tensor_method): resident state + the step's peak transient allocations;
          "tensor_method": str, one line: how it was obtained (API, what is summed);
          "tensor_breakdown": dict[str, int]: named components in bytes where the framework
              gives them (e.g. params, optimizer_state, batch, grads, saved activations,
              temporaries, XLA's arguments/outputs/temps).
        On GPU the figure the harness judges is memory()'s allocator peak; this still returns
        what it can there."""
