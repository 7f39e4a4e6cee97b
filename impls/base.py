"""The Implementation protocol every framework module fulfils.

A framework module (impls/<name>_impl.py) exposes:
  FRAMEWORK: str                     the registry name ("torch", "tf", "jax")
  VARIANTS: dict[str, str]           variant name -> one-line description ("default" always present),
                                     read from bench.registry, the one table of variants
  versions() -> dict[str, str]       framework (+ CUDA/cuDNN/BLAS) versions, for the record
  gpu_available() -> bool            whether this framework sees a GPU in this process
  build(model, train, device, precision, variant, threads) -> Trainer

The harness (bench/worker.py) drives a Trainer only through the methods below; it never
touches a framework object, so the timing and memory code is the same for every framework.
The frameworks' trainers derive from TrainerBase, which holds what they share. This module
imports no framework: the worker and the tests import it anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Protocol, TypeVar, runtime_checkable

import numpy as np

from bench import registry
from bench.data import row_lengths
from bench.reference import Weights, param_count
from bench.spec import ModelSpec, TrainSpec


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
    # The key of memory()'s figure that is the allocator's peak (the worker records it as
    # allocator_peak_bytes as well). Framework-named, as records have always carried it.
    allocator_peak_key: str

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
        """Allocator figures in bytes, named by source, e.g. {"torch_max_allocated_bytes": ...};
        the peak under allocator_peak_key. Empty on CPU where the framework keeps none."""

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


T = TypeVar("T", bound="TrainerBase")


class TrainerBase:
    """What every framework's trainer shares. A subclass names its framework (the registry's
    name) and the key of its allocator's peak in its class line,
        class TorchTrainer(TrainerBase, framework="torch", allocator_peak_key="torch_max_allocated_bytes"),
    calls __init__ first (it checks the variant against bench.registry before anything touches
    framework state), sets kernel and precision_applied, and implements the rest of Trainer;
    allocator_figures() only where the framework has GPU allocator figures."""

    framework: ClassVar[str]
    allocator_peak_key: ClassVar[str]

    def __init_subclass__(cls, *, framework: str, allocator_peak_key: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.framework, cls.allocator_peak_key = framework, allocator_peak_key

    def __init__(self, model: ModelSpec, train: TrainSpec, device: str, variant: str) -> None:
        known = registry.variants(self.framework)
        if variant not in known:
            raise ValueError(f"unknown {self.framework} variant {variant!r} (choose from {', '.join(known)})")
        self.model_spec, self.train_spec = model, train
        self.on_gpu = device == "gpu"
        self.param_count = param_count(model)
        # The fast path the variant promises ran, unless a subclass finds otherwise.
        self.fast_path, self.fast_path_note = True, ""

    @classmethod
    def build(cls: type[T], model: ModelSpec, train: TrainSpec, device: str, precision: str = "fp32",
              variant: str = "default", threads: int = 0) -> T:
        """The module-level build() of the implementation protocol (a module sets build = X.build).
        Every subclass's __init__ takes these six."""
        return cls(model, train, device, precision, variant, threads)  # type: ignore[call-arg]

    # Subclasses provide these (Trainer's methods).
    def sync(self) -> None:
        raise NotImplementedError

    def reset_memory(self) -> None:
        raise NotImplementedError

    def train_step(self, batch: Any) -> Any:
        raise NotImplementedError

    def allocator_figures(self) -> dict[str, int]:
        """The GPU allocator's figures, framework-named, the peak under allocator_peak_key."""
        raise NotImplementedError

    def memory(self) -> dict[str, int]:
        return self.allocator_figures() if self.on_gpu else {}

    def gpu_tensor_memory(self, breakdown: dict[str, int], batch: Any, method: str) -> dict[str, Any]:
        """tensor_memory on a GPU: the allocator's peak over one step after a reset, which is
        everything the framework holds on the device, resident state included. `breakdown` is
        returned as given (the caller may still add to it: components that exist after the step)."""
        self.sync()
        self.reset_memory()
        self.train_step(batch)
        self.sync()
        return {"tensor_peak_bytes": self.memory()[self.allocator_peak_key], "tensor_method": method,
                "tensor_breakdown": breakdown}


def nbytes(arrays: Iterable[Any], size: Callable[[Any], int] = lambda a: a.nbytes) -> int:
    """Bytes of some arrays of any framework, `size(a)` each (its nbytes unless told), None
    (a gradient not made yet) counting nothing."""
    return int(sum(size(a) for a in arrays if a is not None))


@dataclass(frozen=True)
class AllocationEvent:
    """One allocator event of a profiled region: an allocation of `alloc_bytes` at `address`,
    or, with alloc_bytes None, the free of whatever was allocated there. `tag` says what asked
    for it (e.g. the op), for the breakdown of what was live at the peak."""
    address: int
    alloc_bytes: int | None
    tag: str = ""


@dataclass(frozen=True)
class PeakLive:
    peak_bytes: int
    live_at_peak: tuple[tuple[int, str], ...]  # (bytes, tag) of each block live at the peak


def peak_live_bytes(events: Iterable[AllocationEvent]) -> PeakLive:
    """Peak of (bytes allocated - bytes freed) over a region's allocator events in time order,
    and what was live when it was first reached. Frees are matched to allocations by address,
    so a block allocated before the region (and freed in it) is left out on both sides: the
    figure is what the region itself added at its worst, the same for identical code."""
    events = list(events)
    live: dict[int, int] = {}
    cur = peak = 0
    peak_at = -1  # index of the event that first reached the peak
    for i, e in enumerate(events):
        if e.alloc_bytes is not None:
            live[e.address] = e.alloc_bytes
            cur += e.alloc_bytes
            if cur > peak:
                peak, peak_at = cur, i
        elif e.address in live:
            cur -= live.pop(e.address)
    # What was live there, replayed up to it: copying the live set at every new peak would
    # cost a pass over all live blocks each time the sum climbs.
    at_peak: dict[int, tuple[int, str]] = {}
    for e in events[:peak_at + 1]:
        if e.alloc_bytes is not None:
            at_peak[e.address] = (e.alloc_bytes, e.tag)
        else:
            at_peak.pop(e.address, None)
    return PeakLive(peak, tuple(at_peak.values()))
