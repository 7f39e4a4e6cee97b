"""fp32 means no TF32 anywhere: each framework's own switches, checked where they live. The
defaults are the trap: torch's cuDNN flag and TF's TF32 execution are ON unless turned off,
and JAX uses TF32 for fp32 matmuls on GPUs unless the precision says otherwise."""
import pytest

from bench.spec import ZOO, TrainSpec
from conftest import load_impl


def test_torch_fp32_turns_off_both_tf32_switches():
    impl = load_impl("torch")
    import torch

    torch.backends.cudnn.allow_tf32 = True  # torch's own default
    impl.build(ZOO["lstm128"], TrainSpec(), "cpu", "fp32")
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"


def test_tf_fp32_turns_off_tensor_float_32_execution():
    impl = load_impl("tf")
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(True)  # TF's own default
    impl.build(ZOO["lstm128"], TrainSpec(), "cpu", "fp32")
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


@pytest.mark.parametrize("precision, on_gpu, expected", [
    ("fp32", False, "HIGHEST"), ("fp32", True, "HIGHEST"), ("tf32", True, "HIGH"),
    ("tf32", False, "HIGHEST"),  # no TF32 on a CPU: runs and is recorded as fp32
    ("bf16", False, "DEFAULT")])
def test_jax_passes_an_explicit_precision_to_every_dot(precision, on_gpu, expected):
    impl = load_impl("jax")
    from jax import lax

    assert impl.numerics(precision, on_gpu).precision == getattr(lax.Precision, expected)
    t = impl.build(ZOO["lstm128"], TrainSpec(), "cpu", precision)
    assert t.num == impl.numerics(precision, False)
