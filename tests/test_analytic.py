"""FLOPs and the memory floor against calculations done by hand (see bench/analytic.py)."""
from bench import analytic
from bench.spec import ZOO


def test_lstm128_by_hand():
    c = analytic.cost(ZOO["lstm128"])
    # per step: 2 * 4H * (in + H) = 2 * 512 * 156 = 159,744; x 28 steps; head 2 * 10 * 128
    assert c.forward_flops_per_sample == 28 * 159_744 + 2_560 == 4_475_392
    assert c.train_flops_per_sample == 3 * 4_475_392
    # state: 81,674 params x (param, grad, m, v) x 4 bytes
    assert c.state_bytes == 81_674 * 16
    # activations: 28 steps x 6H (4 gates, c, h) + 10 logits; input 28 x 28; fp32
    assert c.activation_bytes_per_sample == (28 * 6 * 128 + 10 + 784) * 4
    assert c.train_floor_bytes(128) == 81_674 * 16 + 128 * (21_504 + 794) * 4


def test_cnn_tutorial_by_hand():
    c = analytic.cost(ZOO["cnn_tutorial"])
    conv1 = 2 * 28 * 28 * 32 * 1 * 25  # 1,254,400
    conv2 = 2 * 14 * 14 * 64 * 32 * 25  # 20,070,400
    fc1 = 2 * 3136 * 1024  # 6,422,528
    head = 2 * 1024 * 10
    assert c.forward_flops_per_sample == conv1 + conv2 + fc1 + head == 27_767_808
    acts = 28 * 28 * 32 + 14 * 14 * 32 + 14 * 14 * 64 + 7 * 7 * 64 + 1024 + 10
    assert c.activation_bytes_per_sample == (acts + 784) * 4
    assert c.state_bytes == 3_274_634 * 16


def test_bidirectional_and_stacked_scale_as_expected():
    one = analytic.cost(ZOO["lstm512"]).forward_flops_per_sample
    bi = analytic.cost(ZOO["bilstm512"]).forward_flops_per_sample
    head1, head2 = 2 * 10 * 512, 2 * 10 * 1024
    assert bi - head2 == 2 * (one - head1)
