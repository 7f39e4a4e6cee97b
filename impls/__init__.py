"""Framework implementations: the only package in lstm-bench that imports torch, TensorFlow or JAX.

Each module is found by import string through `bench.registry`, so importing this package
imports no framework.
"""
