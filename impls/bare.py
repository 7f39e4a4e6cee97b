"""Bare hand-written training loops, one per framework, for the harness-overhead benchmark.

Each is what a user would type without lstm-bench: the framework's standard LSTM layer, Adam,
cross-entropy, a Python loop over pre-staged batches, one sync at the end. No protocol
object, no canonical weights, no loss bookkeeping. `python -m bench overhead` times one of
these and the harness's own measurement of the same model side by side, interleaved, in one
process. Only single-direction LSTM stacks (lstm128, lstm512, lstm3x256) are covered.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from bench.spec import ModelSpec, TrainSpec

# framework -> factory(model, train, threads, batches) -> run(n_steps) -> seconds
BareLoop = Callable[[int], float]


def _check(model: ModelSpec) -> None:
    if model.family != "rnn" or model.cell != "lstm" or model.bidirectional:
        raise ValueError(f"bare loops cover single-direction LSTMs only, not {model.name}")


def torch_loop(model: ModelSpec, train: TrainSpec, threads: int, batches: list) -> BareLoop:
    import torch
    import torch.nn.functional as F
    from torch import nn

    _check(model)
    if threads:
        torch.set_num_threads(threads)
    lstm = nn.LSTM(model.features, model.hidden, model.layers, batch_first=True)
    head = nn.Linear(model.hidden, model.classes)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps)
    data = [(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))) for x, y in batches]

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            x, y = data[i % len(data)]
            opt.zero_grad()
            _, (h, _) = lstm(x)
            loss = F.cross_entropy(head(h[-1]), y)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    return run


def tf_loop(model: ModelSpec, train: TrainSpec, threads: int, batches: list) -> BareLoop:
    import tensorflow as tf

    _check(model)
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF already initialised (by the harness's trainer, same threads)
            pass
    import keras

    layers = [keras.layers.LSTM(model.hidden, return_sequences=i < model.layers - 1) for i in range(model.layers)]
    net = keras.Sequential([keras.Input((model.timesteps, model.features)), *layers, keras.layers.Dense(model.classes)])
    opt = keras.optimizers.Adam(train.lr, train.beta1, train.beta2, train.eps)
    opt.build(net.trainable_variables)
    data = [(tf.constant(x), tf.constant(y)) for x, y in batches]

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = net(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return loss

    step(*data[0]).numpy()  # trace + compile outside the timing, as a user would warm up

    def run(n: int) -> float:
        t0 = time.perf_counter()
        loss = None
        for i in range(n):
            loss = step(*data[i % len(data)])
        loss.numpy()
        return time.perf_counter() - t0

    return run


def jax_loop(model: ModelSpec, train: TrainSpec, threads: int, batches: list) -> BareLoop:
    import jax
    import jax.numpy as jnp
    import optax

    _check(model)
    H = model.hidden
    key = jax.random.PRNGKey(train.seed)
    params = {"layers": [], "head": None}
    for layer in range(model.layers):
        key, k1, k2 = jax.random.split(key, 3)
        inp = model.features if layer == 0 else H
        s = 1 / np.sqrt(H)
        params["layers"].append({"wi": jax.random.uniform(k1, (inp, 4 * H), minval=-s, maxval=s),
                                 "wh": jax.random.uniform(k2, (H, 4 * H), minval=-s, maxval=s),
                                 "b": jnp.zeros(4 * H)})
    key, k = jax.random.split(key)
    params["head"] = {"w": jax.random.uniform(k, (H, model.classes), minval=-0.1, maxval=0.1),
                      "b": jnp.zeros(model.classes)}
    opt = optax.adam(train.lr, train.beta1, train.beta2, train.eps)
    state = opt.init(params)

    def forward(p, x):
        seq = jnp.swapaxes(x, 0, 1)
        for lp in p["layers"]:
            def cell(carry, xt, lp=lp):
                h, c = carry
                z = xt @ lp["wi"] + h @ lp["wh"] + lp["b"]
                i, f, g, o = jnp.split(z, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            zeros = jnp.zeros((x.shape[0], H))
            (h, _), seq = jax.lax.scan(cell, (zeros, zeros), seq)
        return h @ p["head"]["w"] + p["head"]["b"]

    @jax.jit
    def step(p, s, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    data = [(jax.device_put(x), jax.device_put(y)) for x, y in batches]
    box = {"p": params, "s": state}
    box["p"], box["s"], loss = step(box["p"], box["s"], *data[0])
    loss.block_until_ready()

    def run(n: int) -> float:
        t0 = time.perf_counter()
        p, s = box["p"], box["s"]
        for i in range(n):
            p, s, loss = step(p, s, *data[i % len(data)])
        loss.block_until_ready()
        box["p"], box["s"] = p, s
        return time.perf_counter() - t0

    return run


LOOPS = {"torch": torch_loop, "tf": tf_loop, "jax": jax_loop}
