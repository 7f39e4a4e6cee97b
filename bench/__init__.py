"""lstm-bench: one spec, three frameworks (PyTorch, TensorFlow/Keras, JAX), measured the same way.

This package imports no framework; only `impls/` does (see bench.registry).
"""
__version__ = "0.1.0"
