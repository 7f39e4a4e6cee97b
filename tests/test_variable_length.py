"""The variable-length model (lstm128_varlen): each sample runs for its own rows and is read
out at its own last step, in the reference and in every framework (packed in torch, masked in
Keras, a masked scan in JAX)."""
from __future__ import annotations

import numpy as np
import pytest

from bench import data, reference, registry
from bench.spec import ZOO, TrainSpec
from impls.base import Unsupported

LOGIT_TOL = 1e-5  # as tests/test_equivalence.py: fp32 over <= 28 steps vs the float64 reference
VARLEN, PLAIN = ZOO["lstm128_varlen"], ZOO["lstm128"]


def ragged_batch(lengths: list[int], seed: int = 0) -> np.ndarray:
    """Inked rows up to each length (the last one certainly inked), empty rows after it."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(len(lengths), 28, 28)).astype(np.float32)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
        x[i, n - 1, 0] = 1.0
    return x


LENGTHS = [1, 2, 5, 13, 17, 24, 27, 28]


def test_row_lengths_cut_only_trailing_empty_rows():
    x = ragged_batch(LENGTHS)
    x[3, 4] = 0.0  # an empty row inside the sequence does not end it
    assert data.row_lengths(x).tolist() == LENGTHS
    assert data.row_lengths(np.zeros((2, 28, 28), np.float32)).tolist() == [1, 1]  # nothing inked: one step


def test_mnist_lengths_vary():
    x, _ = data.load().test_arrays(10_000)
    n = data.row_lengths(x)
    assert n.min() >= 10 and n.max() == 28 and 23.0 < n.mean() < 26.0 and len(np.unique(n)) >= 8


def test_reference_reads_each_sample_at_its_own_last_step():
    w = reference.init_weights(VARLEN, 0)
    x = ragged_batch(LENGTHS)
    got = reference.forward(VARLEN, w, x)
    for i, n in enumerate(LENGTHS):
        alone = reference.forward(PLAIN, w, x[i:i + 1, :n])  # the plain LSTM on the cut sequence
        np.testing.assert_allclose(got[i], alone[0], atol=1e-12)
    padded = reference.forward(PLAIN, w, x)  # reading out at step 28 is a different function
    short = np.array(LENGTHS) < 28
    assert np.abs(padded[short] - got[short]).max(axis=1).min() > 1e-3


@pytest.mark.parametrize("fw", list(registry.FRAMEWORKS))
def test_every_variant_matches_the_reference_on_ragged_lengths(fw):
    from conftest import load_impl

    impl = load_impl(fw)
    x, y = ragged_batch(LENGTHS), np.arange(len(LENGTHS), dtype=np.int32) % 10
    want = reference.forward(VARLEN, reference.init_weights(VARLEN, 0), x)
    ran = 0
    for variant in registry.variants(fw):
        try:
            tr = impl.build(VARLEN, TrainSpec(), "cpu", "fp32", variant, 2)
        except Unsupported:
            continue  # GPU-only variants (jax cudnn) say so
        tr.set_weights(reference.init_weights(VARLEN, 0))
        got = tr.to_numpy(tr.predict(tr.stage(x, y)))
        diff = np.abs(got - want).max()
        assert diff <= LOGIT_TOL, f"{fw}:{variant}: max |logit - reference| = {diff:.2e}"
        assert any(w in tr.kernel for w in ("packed", "masked", "gathered")), tr.kernel  # the record says what ran
        ran += 1
    assert ran >= 1
