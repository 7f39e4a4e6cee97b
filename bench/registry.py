"""Framework implementations by import string, and why a missing one is unavailable.

Availability is decided with importlib.util.find_spec, which locates a package without
importing it: `python -m bench list` stays fast and works with any subset installed.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class FrameworkInfo:
    name: str
    module: str  # import string of the implementation
    requires: tuple[str, ...]  # top-level packages that must be importable
    extra: str  # pyproject extra that installs them
    title: str

    @property
    def install_hint(self) -> str:
        return f"pip install 'lstm-bench[{self.extra}]'"


FRAMEWORKS: dict[str, FrameworkInfo] = {f.name: f for f in (
    FrameworkInfo("torch", "impls.torch_impl", ("torch",), "torch", "PyTorch"),
    FrameworkInfo("tf", "impls.tf_impl", ("tensorflow", "keras"), "tf", "TensorFlow/Keras"),
    FrameworkInfo("jax", "impls.jax_impl", ("jax", "optax"), "jax", "JAX + optax"),
)}


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
