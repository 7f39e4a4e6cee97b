"""JAX: lax.scan RNNs and lax.conv CNNs under jax.jit, optax Adam, params and optimizer state donated.

Plain `jax.lax` over a dict of arrays rather than flax (not a dependency of lstm-bench): the
networks are a few lines each, the parameters stay in (nearly) the canonical layout, so
get/set_weights are transposes, one permutation and a bias split that round-trip exactly, and
the scan form this benchmark compares (input projection hoisted or not, unroll) is ours to
choose rather than a library's.

Threads: XLA:CPU sizes its intra-op thread pool once, when the CPU client is created, from the
environment variable PJRT_NPROC (else NPROC, else the usable core count). So the worker sets
PJRT_NPROC=<threads> before `import jax`; this module only reads it back (`threads_applied`).
XLA_FLAGS has no thread-count flag: --xla_cpu_multi_thread_eigen=false only stops Eigen
matmul/conv from splitting one op across the pool, and --xla_force_host_platform_device_count
makes more devices, not more threads. On GPU the worker sets XLA_PYTHON_CLIENT_PREALLOCATE=false
before import so the allocator's peak means what this cell used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from bench import registry
from bench.reference import Weights, check_weights, directions, init_weights
from bench.spec import ModelSpec, TrainSpec
from impls.base import TrainerBase, Unsupported, host_batch, nbytes

FRAMEWORK = "jax"
VARIANTS = dict(registry.get(FRAMEWORK).variants)
# The environment the worker sets before `import jax` for a CPU cell with `threads` > 0.
THREAD_ENV_VAR = "PJRT_NPROC"


@dataclass(frozen=True)
class _Form:
    """How the recurrent layers are computed. `hoist`: x_t @ W_ih for all t as one matmul
    before the scan instead of one small matmul per step inside it; `unroll`: lax.scan unroll.

    Measured on the 2-core CPU (jax 0.10.2, lstm128 batch 128, interleaved runs): in-scan,
    unroll 1 was fastest. Hoisting was ~0.6x of it: the (T, B, 4H) projection, its bias add and
    its gradient are memory-bound passes over 7 MB arrays, slower here than 28 small in-cache
    matmuls. Unrolling was slower the more it unrolled (4: ~0.65x, 28: ~0.15x, compile 1 s -> 6 s):
    in the unrolled backward pass XLA:CPU fuses the elementwise cell-state gradient chain
    dc_t = dc_{t+1} * f_{t+1} + ... across steps and recomputes it inside every step's fusion
    (profile: per-step gradient fusions from 8.6 ms down to 0.5 ms, O(T^2));
    lax.optimization_barrier on the carry does not stop it (XLA:CPU drops the barrier)."""

    hoist: bool = False
    unroll: int = 1
    cudnn: bool = False
    # CNNs: 2x2/2 max-pool as a reshape and a max over the two window axes (gradient: an
    # equality mask, elementwise) or as lax.reduce_window, whose gradient, select_and_scatter,
    # XLA:CPU expands into a variadic reduce-window over the values and four full-size s32
    # iota index arrays, then a scatter: in a profile of cnn_small b128 (XLA_FLAGS=
    # --xla_cpu_enable_xprof_traceme=true) those took ~70 of the step's 116 ms of op time, the
    # convolutions ~5. Ties inside a window (the gradient is split, not sent to the first)
    # follow ReLU, whose zeros get no gradient either way.
    pool_reshape: bool = True


_FORMS = {
    "default": _Form(),
    "hoisted": _Form(hoist=True),
    "unroll28": _Form(unroll=28),
    "cudnn": _Form(cudnn=True),
    "reduce_window": _Form(pool_reshape=False),
}


def versions() -> dict[str, str]:
    import jaxlib.version

    v = {"jax": jax.__version__, "jaxlib": jaxlib.version.__version__, "optax": optax.__version__}
    try:
        from jax._src.lib import cuda_versions  # private; None on CPU-only installs
        if cuda_versions is not None and gpu_available():
            v["cuda"] = str(cuda_versions.cuda_runtime_get_version())
            v["cudnn"] = str(cuda_versions.cudnn_get_version())
    except Exception:  # noqa: BLE001 - versions are best effort, never fatal
        pass
    return v


def gpu_available() -> bool:
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


# ---------------------------------------------------------------------------------------------
# Internal parameter layout: the canonical dict, except that dense/recurrent matrices are kept as
# (in, out) so every matmul is a plain x @ W, conv kernels as HWIO for NHWC convolutions, and the
# first dense layer after the CNN flatten has its rows permuted from the canonical channel-major
# (C, H, W) order to NHWC's (H, W, C) order, so activations are flattened without a transpose.
# LSTM and plain-RNN layers keep two biases, b_ih and b_hh, as torch and cuDNN do: Adam moves each
# parameter by about lr per step, so one bias would train at half the speed of torch's summed
# pair and the curves would part after the first step. set_weights puts the canonical bias in
# b_ih and zero in b_hh (b + 0 == b), get_weights returns their sum, as torch_impl does.
# All of this is permutation or exact: get_weights(set_weights(w)) == w bit for bit.

def _first_dense(m: ModelSpec) -> str:
    return "fc.0.w" if m.fc_hidden else "head.w"


def _cnn_final_hw(m: ModelSpec) -> tuple[int, int]:
    h, w = m.timesteps, m.features
    for _ in m.conv_channels:
        h, w = h // 2, w // 2
    return h, w


def _split_bias(m: ModelSpec, k: str) -> bool:
    return m.family == "rnn" and m.cell != "gru" and k.startswith("rnn.") and k.endswith(".b")


def to_internal(m: ModelSpec, w: Weights) -> dict[str, np.ndarray]:
    out = {}
    for k, a in w.items():
        a = np.asarray(a, dtype=np.float32)
        if _split_bias(m, k):
            out[k + "_ih"] = np.array(a, dtype=np.float32, copy=True)
            out[k + "_hh"] = np.zeros_like(out[k + "_ih"])
            continue
        if m.family == "cnn" and k == _first_dense(m):
            hh, ww = _cnn_final_hw(m)
            c = m.conv_channels[-1]
            a = a.reshape(a.shape[0], c, hh, ww).transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
        if a.ndim == 2:
            a = a.T
        elif a.ndim == 4:  # conv OIHW -> HWIO
            a = a.transpose(2, 3, 1, 0)
        out[k] = np.array(a, dtype=np.float32, order="C", copy=True)
    return out


def _to_canonical(m: ModelSpec, p: dict[str, np.ndarray]) -> Weights:
    out = {}
    for k, a in p.items():
        if k.endswith(".b_hh") and _split_bias(m, k[:-3]):
            continue
        if k.endswith(".b_ih") and _split_bias(m, k[:-3]):
            out[k[:-3]] = (a + p[k[:-3] + "_hh"]).astype(np.float32)
            continue
        if a.ndim == 2:
            a = a.T
        elif a.ndim == 4:  # HWIO -> OIHW
            a = a.transpose(3, 2, 0, 1)
        if m.family == "cnn" and k == _first_dense(m):
            hh, ww = _cnn_final_hw(m)
            c = m.conv_channels[-1]
            a = a.reshape(a.shape[0], hh, ww, c).transpose(0, 3, 1, 2).reshape(a.shape[0], -1)
        out[k] = np.array(a, dtype=np.float32, order="C", copy=True)
    return out


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Numerics:
    precision: Any  # lax.Precision passed to every dot and conv (no reliance on global config)
    compute: Any  # dtype of the forward's matmuls and activations
    applied: str


def numerics(precision: str, on_gpu: bool) -> _Numerics:
    if precision == "bf16":
        return _Numerics(lax.Precision.DEFAULT, jnp.bfloat16, "bf16")
    if precision == "tf32" and on_gpu:
        return _Numerics(lax.Precision.HIGH, jnp.float32, "tf32")  # "tensorfloat32"
    # HIGHEST: true fp32 matmuls on GPU (JAX's default there is TF32 on Ampere+); TF32 does not
    # exist on CPU, so a tf32 request there runs (and is recorded as) fp32.
    return _Numerics(lax.Precision.HIGHEST, jnp.float32, "fp32")


def _dropout(key: jax.Array, a: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout as torch: zero with probability `rate`, scale survivors by 1/(1-rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, a.shape)
    return jnp.where(keep, a * (1.0 / (1.0 - rate)), jnp.zeros((), a.dtype)).astype(a.dtype)


def _mm(x: jax.Array, w: jax.Array, num: _Numerics) -> jax.Array:
    return jnp.matmul(x, w, precision=num.precision)


def _cell(cell: str, zx: jax.Array, zh: jax.Array, h: jax.Array, c: jax.Array):
    """The pointwise part of one step: x-side and h-side pre-activations (biases included) and
    the previous state -> the new (h, c). GRU and plain RNN carry c through unchanged."""
    # Gates by jnp.split, not four slices: the gradient of a split is one concatenate, that of
    # four slices is four zero-padded (B, 4H) buffers added up, inside the backward scan body
    # at every step. Found by diffing this step's HLO against a bare loop's; the split step is
    # 8-14% faster on lstm128 (benchmarks/xla/jax_gate_split_ab.py).
    if cell == "lstm":
        i, f, g, o = jnp.split(zx + zh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c
    if cell == "gru":  # torch's formula: the candidate's recurrent bias sits inside r * (.)
        xr, xu, xn = jnp.split(zx, 3, axis=-1)
        hr, hu, hn = jnp.split(zh, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        u = jax.nn.sigmoid(xu + hu)
        n = jnp.tanh(xn + r * hn)
        return (1.0 - u) * n + u * h, c
    return jnp.tanh(zx + zh), c


def _scan_layer(m: ModelSpec, form: _Form, num: _Numerics, p: dict[str, jax.Array], pre: str, xs: jax.Array,
                reverse: bool, lengths: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """One direction of one layer over time-major xs (T, B, in), differentiated by jax.grad
    through lax.scan. Returns (ys (T, B, H), final h). reverse=True scans t = T-1..0 with ys
    kept in input order, so the final state is the one after row 0 and ys lines up with the
    forward direction's outputs. `lengths` (B,): variable length as a masked scan, each
    sample's (h, c) frozen after its own last step, so the final h is the one at that step."""
    H, cell = m.hidden, m.cell
    w_ih, w_hh = p[pre + "w_ih"], p[pre + "w_hh"]
    # Outside a GRU's reset product the two biases only ever appear summed: add them once.
    b_in = p[pre + "b_ih"] if cell == "gru" else p[pre + "b_ih"] + p[pre + "b_hh"]
    seq = _mm(xs, w_ih, num) + b_in if form.hoist else xs

    def step(carry, inp):
        xt, t = inp if lengths is not None else (inp, None)
        h0, c0 = carry
        zx = xt if form.hoist else _mm(xt, w_ih, num) + b_in
        zh = _mm(h0, w_hh, num)
        if cell == "gru":
            zh = zh + p[pre + "b_hh"]
        h, c = _cell(cell, zx, zh, h0, c0)
        if lengths is None:
            return (h, c), h
        live = (t < lengths)[:, None]
        return (jnp.where(live, h, h0), jnp.where(live, c, c0)), jnp.where(live, h, 0.0)

    zeros = jnp.zeros((xs.shape[1], H), xs.dtype)
    inputs = seq if lengths is None else (seq, jnp.arange(xs.shape[0]))
    (h, _), ys = lax.scan(step, (zeros, zeros), inputs, reverse=reverse, unroll=form.unroll)
    return ys, h


def cudnn_weights(m: ModelSpec, p: dict[str, jax.Array], layer: int) -> jax.Array:
    """cuDNN's flat weight vector for one layer: every pseudo-layer's (direction's) W_ih, W_hh
    in torch's (4H, in) layout with gates i,f,g,o, then every pseudo-layer's b_ih, b_hh
    (jax.experimental.rnn's module docstring), the same two biases this module trains."""
    mats, biases = [], []
    for d in directions(m):
        pre = f"rnn.{layer}.{d}."
        mats += [p[pre + "w_ih"].T.reshape(-1), p[pre + "w_hh"].T.reshape(-1)]
        biases += [p[pre + "b_ih"], p[pre + "b_hh"]]
    return jnp.concatenate(mats + biases)


def _cudnn_layer(m: ModelSpec, num: _Numerics, p: dict[str, jax.Array], layer: int,
                 xb: jax.Array, lengths: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """One (bi)LSTM layer through cuDNN on batch-major xb (B, T, in): returns (y (B, T, H*dirs),
    h_n (dirs, B, H)), h_n of the reverse direction being its state after row 0. One call per
    layer, not one for the stack, so dropout between layers is this module's own, as in the
    scan variants (cuDNN's inter-layer dropout draws its own masks)."""
    from jax.experimental import rnn

    flat = cudnn_weights(m, p, layer)
    B, T, n_in = xb.shape
    h0 = jnp.zeros((m.directions, B, m.hidden), jnp.float32)
    # seq_lengths: cuDNN's own variable-length path (h_n at each sample's last valid step, as
    # jax.experimental.rnn's lstm_ref masks it); full length for the fixed-length models.
    seq_lengths = lengths if lengths is not None else jnp.full((B,), T, jnp.int32)
    y, h_n, _ = rnn.lstm(xb, h0, h0, flat, seq_lengths, input_size=n_in,
                         hidden_size=m.hidden, num_layers=1, dropout=0.0, bidirectional=m.bidirectional,
                         precision=num.precision)
    return y, h_n


def _rnn_logits(m: ModelSpec, form: _Form, num: _Numerics, params: dict[str, jax.Array], x: jax.Array,
                key: jax.Array | None, lengths: jax.Array | None = None) -> jax.Array:
    """key None = inference (no dropout); lengths (B,) for a variable-length model."""
    p = {k: v.astype(num.compute) for k, v in params.items()}
    drop = key is not None and m.dropout > 0
    keys = jax.random.split(key, m.layers) if drop else [None] * m.layers
    # cuDNN is batch-major; the scan wants time on the leading axis.
    seq = x.astype(num.compute) if form.cudnn else jnp.swapaxes(x, 0, 1).astype(num.compute)
    finals = []
    for layer in range(m.layers):
        last = layer == m.layers - 1
        if form.cudnn:
            seq, h_n = _cudnn_layer(m, num, p, layer, seq, lengths)
            finals = [h_n[i] for i in range(m.directions)]
        else:
            outs, finals = [], []
            for d in directions(m):
                ys, h = _scan_layer(m, form, num, p, f"rnn.{layer}.{d}.", seq, reverse=d == "bwd", lengths=lengths)
                outs.append(ys)
                finals.append(h)
            seq = None if last else (jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0])
        if drop and not last:  # on each layer's output sequence, between layers
            seq = _dropout(keys[layer], seq, m.dropout)
    feats = jnp.concatenate(finals, axis=-1) if len(finals) > 1 else finals[0]
    if drop:  # ... and on the last layer's readout, before the head (torch: nn.Dropout)
        feats = _dropout(keys[-1], feats, m.dropout)
    return (_mm(feats, p["head.w"], num) + p["head.b"]).astype(jnp.float32)


def _cnn_logits(m: ModelSpec, form: _Form, num: _Numerics, params: dict[str, jax.Array], x: jax.Array,
                key: jax.Array | None, lengths: None = None) -> jax.Array:
    """NHWC throughout (see to_internal for why the flatten needs no transpose)."""
    p = {k: v.astype(num.compute) for k, v in params.items()}
    a = x.astype(num.compute)[..., None]
    for i in range(len(m.conv_channels)):
        a = lax.conv_general_dilated(a, p[f"conv.{i}.w"], window_strides=(1, 1), padding="SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=num.precision)
        a = jax.nn.relu(a + p[f"conv.{i}.b"])
        if form.pool_reshape:
            B, H, W, C = a.shape
            a = a[:, :H - H % 2, :W - W % 2, :].reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))
        else:
            a = lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    a = a.reshape(a.shape[0], -1)
    if m.fc_hidden:
        a = jax.nn.relu(_mm(a, p["fc.0.w"], num) + p["fc.0.b"])
    if key is not None and m.dropout > 0:
        a = _dropout(key, a, m.dropout)
    return (_mm(a, p["head.w"], num) + p["head.b"]).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
class JaxTrainer(TrainerBase, framework=FRAMEWORK, allocator_peak_key="jax_peak_bytes_in_use"):
    def __init__(self, model: ModelSpec, train: TrainSpec, device: str, precision: str, variant: str,
                 threads: int, form: _Form | None = None) -> None:
        super().__init__(model, train, device, variant)
        self.form = form if form is not None else _FORMS[variant]
        if self.on_gpu:
            if not gpu_available():
                raise Unsupported("no GPU visible to JAX (CPU-only jaxlib or no CUDA device)")
            self.dev = jax.devices("gpu")[0]
        else:
            self.dev = jax.devices("cpu")[0]
        if self.form.cudnn:
            _check_cudnn(model, precision, self.on_gpu)
        elif model.family == "cnn" and variant not in ("default", "reduce_window"):
            raise Unsupported(f"jax variant {variant!r} is a form of the RNN scan; a CNN has none (use default)")
        elif model.family == "rnn" and not self.form.pool_reshape:
            raise Unsupported(f"jax variant {variant!r} is a form of the CNNs' layers; an RNN has none")
        # Threads were fixed when the CPU client started (PJRT_NPROC, see the module docstring).
        env = os.environ.get(THREAD_ENV_VAR, "")
        self.threads_applied = int(env) if env.isdigit() else 0
        self.num = numerics(precision, self.on_gpu)
        self.precision_applied = self.num.applied
        where = "gpu" if self.on_gpu else "cpu"
        if self.form.cudnn:
            self.kernel = "cudnn-rnn"
        else:
            self.kernel = f"xla-scan-{where}" if model.family == "rnn" else f"xla-conv-{where}"
        if model.variable_length:
            self.kernel += " (masked)" if not self.form.cudnn else " (seq_lengths)"
        self._dropout = model.dropout > 0
        self.opt = optax.adam(train.lr, b1=train.beta1, b2=train.beta2, eps=train.eps)

        if model.family == "rnn":
            logits = partial(_rnn_logits, model, self.form, self.num)
        else:
            logits = partial(_cnn_logits, model, self.form, self.num)

        def loss_fn(params, x, y, key, lengths):
            return optax.softmax_cross_entropy_with_integer_labels(logits(params, x, key, lengths), y).mean()

        def step(params, opt_state, key, x, y, lengths=None):
            sub = None
            if key is not None:  # one fresh dropout key per step, advanced on the device
                key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y, sub, lengths)
            updates, opt_state = self.opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self._predict = jax.jit(lambda params, x, lengths=None: logits(params, x, None, lengths))
        self._key = jax.device_put(jax.random.key(train.seed), self.dev) if self._dropout else None
        self._loss = None
        self._logits = None  # the last predict output: sync() must wait for it too
        # Until set_weights, start from the canonical initialisation (the harness always sets).
        self.set_weights(init_weights(model, train.seed))

    # -- protocol ------------------------------------------------------------------------------
    def stage(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, ...]:
        host = host_batch(self.model_spec, x, y)
        # device_put is asynchronous: wait, so no copy is still in flight when timing starts.
        return jax.block_until_ready(tuple(jax.device_put(a, self.dev) for a in host))

    def train_step(self, batch: tuple[jax.Array, ...]) -> jax.Array:
        self.params, self.opt_state, self._key, self._loss = self._step(self.params, self.opt_state, self._key, *batch)
        return self._loss

    def loss_value(self, loss: jax.Array) -> float:
        return float(loss)

    def sync(self) -> None:
        # Everything queued: the training state and the last inference output (predict is
        # asynchronous too; without it, inference windows would time only the dispatch).
        jax.block_until_ready((self.params, self.opt_state, self._loss, self._logits))

    def predict(self, batch: tuple[jax.Array, ...]) -> jax.Array:
        self._logits = self._predict(self.params, batch[0], *batch[2:])
        return self._logits

    def to_numpy(self, logits: jax.Array) -> np.ndarray:
        return np.array(logits, dtype=np.float32)

    def get_weights(self) -> Weights:
        # Copies: a view of a buffer that the next (donating) step reuses would change under us.
        host = {k: np.array(v, dtype=np.float32, copy=True) for k, v in self.params.items()}
        return _to_canonical(self.model_spec, host)

    def set_weights(self, w: Weights) -> None:
        check_weights(self.model_spec, w)
        internal = to_internal(self.model_spec, w)
        self.params = {k: jax.device_put(v, self.dev) for k, v in internal.items()}
        self.opt_state = self.opt.init(self.params)  # fresh Adam

    def reset_memory(self) -> None:
        # JAX cannot reset its allocator's peak (jax#8096); the harness runs one process per cell,
        # so the peak from memory() already belongs to this cell alone.
        pass

    def allocator_figures(self) -> dict[str, int]:
        stats = self.dev.memory_stats() or {}
        out = {}
        if "peak_bytes_in_use" in stats:
            out["jax_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
        if "bytes_in_use" in stats:
            out["jax_bytes_in_use"] = int(stats["bytes_in_use"])
        return out

    def tensor_memory(self, batch: tuple[jax.Array, ...]) -> dict[str, Any]:
        """Tensor-level memory of one training step on a staged batch, from XLA's buffer
        assignment of the compiled step (no step runs). XLA allocates a jitted computation's
        buffers once per call: its arguments (params, Adam state, key, batch) are live for the
        whole call, the outputs that do not reuse a donated argument are allocated beside them,
        and every intermediate (gradients, the activations the backward pass reads, backward
        temporaries) lives in one temp block sized by buffer assignment. So
        arguments + outputs - aliased + temps is what the step holds at once, and it is a
        property of the compiled program: identical for identical code, whatever the process.
        What it leaves out: the runtime's own memory (compiled code, thread pools) and any
        scratch a library kernel (e.g. oneDNN, cuDNN workspaces on GPU) takes outside buffer
        assignment."""
        # Same arguments as train_step, so the same program (and XLA's compile cache usually
        # serves it). lower() only traces: the donated buffers are not consumed.
        compiled = self._step.lower(self.params, self.opt_state, self._key, *batch).compile()
        ma = compiled.memory_analysis()
        if ma is None:  # a backend without buffer-assignment statistics
            return {"tensor_peak_bytes": None, "tensor_breakdown": {},
                    "tensor_method": "jax: compiled.memory_analysis() returned None on this backend"}
        args, outs = int(ma.argument_size_in_bytes), int(ma.output_size_in_bytes)
        alias, temps = int(ma.alias_size_in_bytes), int(ma.temp_size_in_bytes)
        leaves = jax.tree_util.tree_leaves
        breakdown = {
            "params": nbytes(leaves(self.params)),
            "optimizer_state": nbytes(leaves(self.opt_state)),  # Adam m, v (+ the step count)
            "batch": nbytes(leaves(batch)),
            "arguments": args,
            "outputs": outs,
            "aliased_donated": alias,
            # XLA does not split its temp block: gradients, saved activations and backward
            # temporaries share it (buffers with disjoint lifetimes share bytes).
            "temps_grads_activations": temps,
        }
        return {
            "tensor_peak_bytes": args + outs - alias + temps,
            "tensor_method": "jax: jit(step).lower(...).compile().memory_analysis(): argument + output "
                             "- alias (donated params/Adam state) + temp bytes of XLA's buffer assignment",
            "tensor_breakdown": breakdown,
        }


def _check_cudnn(m: ModelSpec, precision: str, on_gpu: bool) -> None:
    if m.family != "rnn":
        raise Unsupported("jax cudnn variant is for recurrent models; a CNN runs as the default variant")
    if m.cell != "lstm":
        raise Unsupported(f"jax.experimental.rnn has a cuDNN LSTM only, not {m.cell.upper()}")
    if not on_gpu:
        raise Unsupported("jax cudnn variant needs a CUDA GPU (jax.experimental.rnn lowers only to cuDNN)")
    if precision == "bf16":
        raise Unsupported("jax.experimental.rnn's cuDNN LSTM supports float32 only, not bf16")
    try:
        from jax._src.lib import gpu_rnn
    except ImportError:
        gpu_rnn = None
    if gpu_rnn is None:
        raise Unsupported("this jaxlib has no cuDNN RNN kernels (jax._src.lib.gpu_rnn missing)")


build = JaxTrainer.build
