"""Framework implementations by import string, and why a missing one is unavailable.

Availability is decided with importlib.util.find_spec, which locates a package without
importing it: `python -m bench list` stays fast and works with any subset installed.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class FrameworkInfo:
    name: str
    module: str  # import string of the implementation
    requires: tuple[str, ...]  # top-level packages that must be importable
    extra: str  # pyproject extra that installs them
    title: str
    # Variant names and one-line descriptions, declared here so planning and `bench list` need
    # no framework import; each impl module reads its VARIANTS from here (why a variant is what
    # it is stays beside the code that makes it).
    variants: tuple[tuple[str, str], ...]

    @property
    def install_hint(self) -> str:
        return f"pip install 'lstm-bench[{self.extra}]'"


FRAMEWORKS: dict[str, FrameworkInfo] = {f.name: f for f in (
    FrameworkInfo("torch", "impls.torch_impl", ("torch",), "torch", "PyTorch", (
        ("default", "CPU: the fastest of eager/compiled/channels_last measured per model; GPU: eager (cuDNN)"),
        ("eager", "eager nn.LSTM/GRU/RNN (cuDNN on GPU), torch.optim.Adam (fused on GPU); variable length: packed"),
        ("gather", "variable-length models: padded fused LSTM, output gathered at each sample's last step"),
        ("compiled", "torch.compile (inductor, default mode) of the network (forward and backward) and of Adam's step"),
        ("channels_last", "CNNs: eager with torch.channels_last (NHWC) weights and activations"),
    )),
    FrameworkInfo("tf", "impls.tf_impl", ("tensorflow", "keras"), "tf", "TensorFlow/Keras", (
        ("default", "CPU: the faster of xla/graph measured here; GPU: graph mode with cuDNN"),
        ("xla", "tf.function(jit_compile=True) everywhere (on GPU: no cuDNN)"),
        ("graph", "tf.function without XLA"),
    )),
    FrameworkInfo("jax", "impls.jax_impl", ("jax", "optax"), "jax", "JAX + optax", (
        ("default", "lax.scan under jit, input projection inside the scan, no unrolling; CNNs: max-pool as reshape + max (fastest measured on CPU)"),
        ("hoisted", "as default, with the input projection hoisted out of the scan as one matmul over all steps"),
        ("unroll28", "as default, with the 28-step scan fully unrolled (longer compile)"),
        ("reduce_window", "CNNs: as default, with max-pool as lax.reduce_window (gradient: XLA's select_and_scatter)"),
        ("cudnn", "jax.experimental.rnn cuDNN LSTM, one call per layer (GPU and LSTM only)"),
    )),
)}
# The harness's own tests start real workers on a numpy test double (tests/fake_impl.py), so the
# runner's crash, timeout, resume and Ctrl-C paths run without a framework. Listed only where
# this variable is set (a test's child processes), never in a real run.
TEST_FRAMEWORKS_VARIABLE = "LSTM_BENCH_TEST_FRAMEWORKS"
if os.environ.get(TEST_FRAMEWORKS_VARIABLE) == "1":
    FRAMEWORKS["fake"] = FrameworkInfo("fake", "tests.fake_impl", ("numpy",), "fake", "numpy test double",
                                       (("default", "numpy test double"),))


class UnknownFramework(ValueError):
    pass


def get(name: str) -> FrameworkInfo:
    if name not in FRAMEWORKS:
        raise UnknownFramework(f"unknown framework {name!r} (choose from {', '.join(FRAMEWORKS)})")
    return FRAMEWORKS[name]


def unavailable_reason(name: str) -> str | None:
    """None if the framework's packages can be imported, else a one-line reason with the fix."""
    info = get(name)
    missing = [p for p in info.requires if importlib.util.find_spec(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed: {info.install_hint}"
    if importlib.util.find_spec(info.module) is None:
        return f"implementation module {info.module} not found"
    return None


def load(name: str) -> ModuleType:
    """Import an implementation module (this imports the framework: call it in a worker)."""
    return importlib.import_module(get(name).module)


def variants(name: str) -> tuple[str, ...]:
    return tuple(v for v, _ in get(name).variants)


def check_variant(framework: str, variant: str) -> None:
    if variant not in variants(framework):
        raise UnknownFramework(f"unknown variant {variant!r} for {framework} (choose from "
                               f"{', '.join(variants(framework))}, or 'all')")


def framework_env(name: str, threads: int, device: str) -> dict[str, str]:
    """Variables a framework reads at import time, so the runner puts them in the worker's
    environment before it starts (setting them after import does nothing)."""
    env: dict[str, str] = {}
    if name == "tf":
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # TF's CPU BFC allocator, the only TF CPU allocator that reports its allocations (the
        # tensor-level memory figure, impls/tf_impl.py tensor_memory). Read when TF creates its
        # CPU device. Measured not to slow training here (see tf_impl's tensor_memory).
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    if name == "jax":
        # JAX would otherwise grab 75% of GPU memory at start-up, hiding the real peak.
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        if threads > 0 and device == "cpu":
            # XLA:CPU sizes its thread pool once, from PJRT_NPROC, when the client is created;
            # XLA_FLAGS has no thread-count flag (see impls/jax_impl.py).
            env["PJRT_NPROC"] = str(threads)
    return env
