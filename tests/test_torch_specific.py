"""PyTorch-only behaviour of impls/torch_impl.py: the kernel label a record carries.
Cross-framework equivalence lives in test_equivalence.py."""
from __future__ import annotations

import pytest

from bench.spec import ZOO, TrainSpec
from conftest import load_impl


def test_torch_kernel_labels_tell_compiled_from_eager_on_a_variable_length_model():
    """A variable-length model on CPU runs packed (ATen's per-step cells, no oneDNN) in both
    variants; the label of the compiled one used to be overwritten with the eager one's."""
    torch_impl = load_impl("torch")
    m = ZOO["lstm128_varlen"]
    eager = torch_impl.build(m, TrainSpec(), "cpu", "fp32", "eager", 2).kernel
    compiled = torch_impl.build(m, TrainSpec(), "cpu", "fp32", "compiled", 2).kernel
    assert eager != compiled
    assert eager == "aten-cpu-rnn (packed: per-step ATen cells, oneDNN takes no packed input)"
    assert compiled == "aten-cpu-rnn+inductor (packed: per-step ATen cells, oneDNN takes no packed input)"


@pytest.mark.parametrize("model, variant, on_gpu, library, label", [
    ("lstm128", "eager", True, True, "cudnn-rnn"),
    ("cnn_small", "channels_last", True, True, "cudnn-conv (channels_last)"),
    ("lstm128", "compiled", True, False, "cuda-native+inductor"),
    ("lstm128_varlen", "eager", True, True, "cudnn-rnn (packed)"),
    ("lstm128_varlen", "compiled", True, True, "cudnn-rnn+inductor (packed)"),
    ("lstm128_varlen", "gather", True, True, "cudnn-rnn (padded, gathered)"),
    ("lstm128_varlen", "gather", False, True, "aten-cpu-rnn+onednn (padded, gathered)"),
    ("cnn_tutorial", "compiled", False, True, "aten-cpu-conv+onednn+inductor"),
    ("gru128", "eager", False, False, "aten-cpu-rnn"),
])
def test_torch_kernel_labels(model, variant, on_gpu, library, label):
    """The labels records carry, GPU ones included (what the trainer would say there)."""
    assert load_impl("torch").kernel_label(ZOO[model], variant, on_gpu, library) == label
