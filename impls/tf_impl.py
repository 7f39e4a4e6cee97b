"""TensorFlow/Keras: Keras 3 LSTM/GRU/SimpleRNN and Conv2D layers driven by a tf.function.

Environment read at import time (the runner sets it before the worker starts; setting it later
does nothing): TF_CPP_MIN_LOG_LEVEL=2 keeps TF's start-up chatter off stderr. KERAS_BACKEND must
be "tensorflow" (this module sets it when keras is not imported yet and refuses any other).
Threads are set through tf.config.threading in build(), which works only before TF's first op.

Variants: "graph" is a plain tf.function; "xla" adds jit_compile=True; "default" is the faster of
the two on CPU per model (default_cpu_jit, measured) and graph mode with cuDNN requested on
GPU, where XLA would give cuDNN up (XLA cannot compile the cuDNN RNN op, keras#18456).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

if "keras" not in __import__("sys").modules:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TF's CPU BFC allocator: the only TF CPU allocator that reports its allocations, which
# TfTrainer.tensor_memory reads. TF reads the variable when it creates its CPU device (its
# first op), so this works unless TF already ran an op in this process; the harness also puts
# it in the worker's environment (bench.registry.framework_env).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import registry  # noqa: E402
from bench.defaults import cpu_default  # noqa: E402
from bench.reference import Weights, check_weights, directions  # noqa: E402
from bench.spec import ModelSpec, TrainSpec  # noqa: E402
from impls.base import AllocationEvent, TrainerBase, Unsupported, host_batch, nbytes, peak_live_bytes  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"impls.tf_impl needs the Keras TensorFlow backend, but KERAS_BACKEND is "
                      f"{keras.backend.backend()!r}: unset it or set KERAS_BACKEND=tensorflow")

FRAMEWORK = "tf"
VARIANTS = dict(registry.get(FRAMEWORK).variants)


# What default runs on CPU per model (xla or graph) is measured: bench/defaults.py.
def default_cpu_jit(model: ModelSpec) -> bool:
    return cpu_default(FRAMEWORK, model.name, model.family) == "xla"


_RNN = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}


def versions() -> dict[str, str]:
    v = {"tensorflow": tf.__version__, "keras": keras.__version__}
    info = tf.sysconfig.get_build_info()
    if gpu_available():
        v["cuda"] = str(info.get("cuda_version", "unknown"))
        v["cudnn"] = str(info.get("cudnn_version", "unknown"))
    v["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
    return v


def gpu_available() -> bool:
    # list_physical_devices does not initialise the runtime, so threads and memory growth can
    # still be configured afterwards.
    return bool(tf.config.list_physical_devices("GPU"))


# ---------------------------------------------------------------------------------------------
class _TorchAdam(keras.optimizers.Adam):
    """Adam with torch/optax's update, which Keras' does not compute.

    Keras applies eps as "epsilon hat": var -= lr_t * m / (sqrt(v) + eps) with the bias
    correction folded into lr_t, i.e. eps is added before the sqrt(1 - beta2^t) scaling
    (tf-keras#315). torch adds it after: var -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Early steps (small v) differ visibly, so the torch formula is written out here.

    `double`: variables whose step is taken twice. torch (and cuDNN) keep two LSTM/RNN biases,
    b_ih and b_hh; both get the same gradient and the same Adam state, so their sum, the one
    canonical bias a Keras LSTM/SimpleRNN holds, moves by exactly two Adam steps per update. A
    learning rate of 2*lr on that single bias is the same update, so training curves match
    torch's rather than parting after the first step. (GRU keeps both biases: not doubled.)
    """

    def __init__(self, *args, double: tuple = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._double_vars = tuple(double)
        self._double_keys: set = set()

    def build(self, var_list) -> None:
        super().build(var_list)
        self._double_keys = {self._var_key(v) for v in self._double_vars}

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        if self._var_key(variable) in self._double_keys:
            lr = lr * 2.0
        g = tf.cast(gradient, dtype)
        t = tf.cast(self.iterations + 1, dtype)
        b1, b2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (g - m) * (1.0 - b1))
        self.assign_add(v, (tf.square(g) - v) * (1.0 - b2))
        denom = tf.sqrt(v) / tf.sqrt(1.0 - tf.pow(b2, t)) + tf.cast(self.epsilon, dtype)
        self.assign_sub(variable, (lr / (1.0 - tf.pow(b1, t))) * m / denom)

    def reset_state(self) -> None:
        """Fresh Adam without a new optimizer (which would force the step to be retraced)."""
        for var in list(self._momentums) + list(self._velocities):
            var.assign(tf.zeros_like(var))
        self.iterations.assign(0)


# ---------------------------------------------------------------------------------------------
class _RnnNet(keras.Model):
    """Stacked (bi)directional recurrent layers, one Keras layer per layer and direction.

    The backward direction is its own go_backwards layer rather than keras.layers.Bidirectional:
    use_cudnn is then certainly honoured (keras#20588) and the weights map one to one. A
    go_backwards layer returns its sequence in processing order, so it is flipped back before
    the per-step concat; its final state (the readout) is its state after seeing row 0.
    """

    def __init__(self, m: ModelSpec, use_cudnn: bool, policy: str) -> None:
        super().__init__(name="rnn_net")
        self.m = m
        kw: dict = {"dtype": policy}
        if m.cell != "rnn":  # SimpleRNN has no cuDNN path and no use_cudnn argument
            kw["use_cudnn"] = use_cudnn
        if m.cell == "gru":
            kw["reset_after"] = True  # torch's GRU formula; bias (2, 3H)
        self.rnns = []
        for layer in range(m.layers):
            seq = layer < m.layers - 1
            self.rnns.append([_RNN[m.cell](m.hidden, return_sequences=seq, go_backwards=(d == "bwd"),
                                           activation="tanh", recurrent_dropout=0.0, unroll=False,
                                           use_bias=True, name=f"rnn_{layer}_{d}", **kw)
                              for d in directions(m)])
        # Dropout on every layer's output sequence but the last, then on the readout, as torch's
        # nn.LSTM(dropout=) plus its readout dropout do.
        self.drops = [keras.layers.Dropout(m.dropout, dtype=policy) for _ in range(m.layers)] if m.dropout else []
        self.head = keras.layers.Dense(m.classes, dtype="float32", name="head")  # float32 logits

    def call(self, x, training=False, lengths=None):
        seq = x
        # Variable length the Keras way: a right-padded mask. Masked steps carry the state
        # through, so the final state is each sample's own last step (cuDNN takes this mask).
        mask = None if lengths is None else tf.sequence_mask(lengths, maxlen=self.m.timesteps)
        for layer, dirs in enumerate(self.rnns):
            outs = [rnn(seq, mask=mask, training=training) for rnn in dirs]
            if layer < self.m.layers - 1 and len(outs) == 2:
                outs[1] = tf.reverse(outs[1], axis=[1])
            seq = outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)
            if self.drops:
                seq = self.drops[layer](seq, training=training)
        return self.head(seq)


class _CnnNet(keras.Model):
    def __init__(self, m: ModelSpec, policy: str) -> None:
        super().__init__(name="cnn_net")
        k = m.conv_kernel
        self.convs = [keras.layers.Conv2D(c, k, padding="same", activation="relu", dtype=policy, name=f"conv_{i}")
                      for i, c in enumerate(m.conv_channels)]
        self.pool = keras.layers.MaxPooling2D(2, dtype=policy)
        self.flat = keras.layers.Flatten(dtype=policy)  # NHWC: (H, W, C) order, see _first_dense
        self.fc = keras.layers.Dense(m.fc_hidden, activation="relu", dtype=policy, name="fc") if m.fc_hidden else None
        self.drop = keras.layers.Dropout(m.dropout, dtype=policy) if m.dropout else None
        self.head = keras.layers.Dense(m.classes, dtype="float32", name="head")

    def call(self, x, training=False):
        a = tf.expand_dims(x, -1)  # NHWC
        for conv in self.convs:
            a = self.pool(conv(a))
        a = self.flat(a)
        if self.fc is not None:
            a = self.fc(a)
        if self.drop is not None:
            a = self.drop(a, training=training)
        return self.head(a)


# ---------------------------------------------------------------------------------------------
# Canonical <-> Keras. All maps are transposes, block permutations or reshapes, so
# get_weights(set_weights(w)) == w bit for bit.
_GRU_PERM = np.array([1, 0, 2])  # canonical r,z,n <-> Keras z,r,h (a swap: its own inverse)


def _gru_blocks(a: np.ndarray, axis: int) -> np.ndarray:
    blocks = np.split(a, 3, axis=axis)
    return np.concatenate([blocks[i] for i in _GRU_PERM], axis=axis)


def _cnn_final_chw(m: ModelSpec) -> tuple[int, int, int]:
    h, w = m.timesteps, m.features
    for _ in m.conv_channels:
        h, w = h // 2, w // 2
    return m.conv_channels[-1], h, w


def _set_precision(precision: str, on_gpu: bool) -> tuple[str, str]:
    """(precision applied, Keras dtype policy). TF enables TF32 by default on Ampere+: fp32 must
    turn it off explicitly. TF32 does not exist on CPU, so a tf32 request there runs fp32."""
    tf32 = precision == "tf32" and on_gpu
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    if precision == "bf16":
        return "bf16", "mixed_bfloat16"
    return ("tf32" if tf32 else "fp32"), "float32"


def _set_threads(threads: int) -> int:
    """intra-op = inter-op = threads. A second inter-op thread lets graph mode run independent ops
    of the recurrent loop side by side: on the 2-core machine graph mode gained ~10-25% with
    inter-op 2 over 1, XLA neither gained nor lost (measured, lstm128 b128 and lstm3x256 b100).
    Works only before TF's first op; later the setting is left as it is, with a warning, and the
    intra-op value that applies is returned (recorded as threads_applied)."""
    if threads <= 0:
        return tf.config.threading.get_intra_op_parallelism_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            warnings.warn(f"TF is already initialised: cannot set {threads} intra-op threads now", stacklevel=3)
    return tf.config.threading.get_intra_op_parallelism_threads()


def _memory_growth() -> None:
    # Without it TF takes (nearly) all GPU memory at the first op and the peak means nothing.
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: keep going, whatever was set holds
            pass


class TfTrainer(TrainerBase, framework=FRAMEWORK, allocator_peak_key="tf_peak_bytes"):
    def __init__(self, model: ModelSpec, train: TrainSpec, device: str, precision: str, variant: str,
                 threads: int) -> None:
        super().__init__(model, train, device, variant)
        _memory_growth()  # before any op, and before gpu_available()'s answer is used
        if self.on_gpu and not gpu_available():
            raise Unsupported("TensorFlow sees no GPU in this process (CPU-only build or no CUDA device)")
        self.threads_applied = _set_threads(threads)
        self.dev = "/GPU:0" if self.on_gpu else "/CPU:0"
        self.precision_applied, policy = _set_precision(precision, self.on_gpu)
        self.jit = variant == "xla" or (variant == "default" and not self.on_gpu and default_cpu_jit(model))
        is_rnn = model.family == "rnn"
        # cuDNN only where it can run: on GPU without XLA. use_cudnn=True (not "auto") makes a
        # configuration Keras cannot hand to cuDNN an error instead of a silent fallback.
        use_cudnn = self.on_gpu and not self.jit and is_rnn and model.cell != "rnn"
        self._set_kernel(is_rnn, use_cudnn)
        keras.utils.set_random_seed(train.seed)  # dropout masks; weights come from set_weights
        with tf.device(self.dev):
            self.net = _RnnNet(model, use_cudnn, policy) if is_rnn else _CnnNet(model, policy)
            self.net(tf.zeros((1, model.timesteps, model.features), tf.float32), training=False)  # build
            self.vars = list(self.net.trainable_variables)
            double = tuple(self._keras_rnn_layer(layer, d).cell.bias
                           for layer in range(model.layers) for d in directions(model)) \
                if is_rnn and model.cell != "gru" else ()
            self.opt = _TorchAdam(learning_rate=train.lr, beta_1=train.beta1, beta_2=train.beta2,
                                  epsilon=train.eps, double=double, name="torch_adam")
            # Built before tracing: a jit_compile function cannot create variables.
            self.opt.build(self.vars)
        self._train_fn = tf.function(self._step, jit_compile=self.jit)
        self._predict_fn = tf.function(self._infer, jit_compile=self.jit)
        self._measure_fn = None  # the step traced again for tensor_memory, made on first use
        self._last = None

    def _set_kernel(self, is_rnn: bool, use_cudnn: bool) -> None:
        self._set_kernel_kind(is_rnn, use_cudnn)
        if self.model_spec.variable_length:
            self.kernel += " (masked)"

    def _set_kernel_kind(self, is_rnn: bool, use_cudnn: bool) -> None:
        m = self.model_spec
        if not self.on_gpu:
            self.kernel = "xla-cpu" if self.jit else "tf-graph-cpu"
        elif self.jit:
            self.kernel = "xla-gpu (no cuDNN)" if is_rnn else "xla-gpu"
        elif not is_rnn:
            self.kernel = "cudnn-conv"
        elif use_cudnn:
            self.kernel = "cudnn-rnn"
        else:  # SimpleRNN on GPU in graph mode
            self.kernel = "tf-graph-gpu"
            self.fast_path = False
            self.fast_path_note = f"Keras {m.cell.upper()} has no cuDNN path: generic while-loop kernels ran"

    def _keras_rnn_layer(self, layer: int, d: str):
        return self.net.rnns[layer][directions(self.model_spec).index(d)]

    # -- compiled bodies -----------------------------------------------------------------------
    def _step(self, x, y, lengths=None):
        with tf.GradientTape() as tape:
            logits = self._net(x, True, lengths)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, self.vars)
        self.opt.apply(grads, self.vars)
        return loss

    def _infer(self, x, lengths=None):
        return self._net(x, False, lengths)

    def _net(self, x, training, lengths):
        # only the recurrent net takes lengths (the variable-length models' mask)
        return self.net(x, training=training) if lengths is None else self.net(x, training=training, lengths=lengths)

    # -- protocol ------------------------------------------------------------------------------
    def stage(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, ...]:
        with tf.device(self.dev):
            return tuple(tf.identity(tf.convert_to_tensor(a)) for a in host_batch(self.model_spec, x, y))

    def train_step(self, batch: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        with tf.device(self.dev):
            self._last = self._train_fn(*batch)
        return self._last

    def loss_value(self, loss: tf.Tensor) -> float:
        return float(loss.numpy())

    def sync(self) -> None:
        # Reading the last output (a scalar loss or a small logits block) waits for the function
        # call that produced it; tf.function orders its outputs after its variable updates
        # (automatic control dependencies), so the whole step is done. On GPU, sync_devices
        # also drains the streams (e.g. staging copies), as torch.cuda.synchronize does.
        if self._last is not None:
            self._last.numpy()
        if self.on_gpu:
            tf.test.experimental.sync_devices()

    def predict(self, batch: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        with tf.device(self.dev):
            self._last = self._predict_fn(batch[0], *batch[2:])
        return self._last

    def to_numpy(self, logits: tf.Tensor) -> np.ndarray:
        return np.asarray(logits.numpy(), dtype=np.float32)

    def _mapping(self) -> list[tuple[str, object, str]]:
        """(canonical name, Keras variable, how) triples."""
        m, out = self.model_spec, []
        if m.family == "rnn":
            for layer in range(m.layers):
                for d in directions(m):
                    cell = self._keras_rnn_layer(layer, d).cell
                    p = f"rnn.{layer}.{d}."
                    gru = m.cell == "gru"
                    out += [(p + "w_ih", cell.kernel, "gru_t" if gru else "t"),
                            (p + "w_hh", cell.recurrent_kernel, "gru_t" if gru else "t")]
                    if gru:
                        out.append((p + "b_ih+" + p + "b_hh", cell.bias, "gru_b"))
                    else:
                        out.append((p + "b", cell.bias, "copy"))
        else:
            for i, conv in enumerate(self.net.convs):
                out += [(f"conv.{i}.w", conv.kernel, "conv"), (f"conv.{i}.b", conv.bias, "copy")]
            first = "head" if self.net.fc is None else "fc.0"
            if self.net.fc is not None:
                out += [("fc.0.w", self.net.fc.kernel, "flat"), ("fc.0.b", self.net.fc.bias, "copy")]
            out += [("head.w", self.net.head.kernel, "flat" if first == "head" else "t"),
                    ("head.b", self.net.head.bias, "copy")]
            return out
        out += [("head.w", self.net.head.kernel, "t"), ("head.b", self.net.head.bias, "copy")]
        return out

    def get_weights(self) -> Weights:
        w: Weights = {}
        c, h, wd = _cnn_final_chw(self.model_spec) if self.model_spec.family == "cnn" else (0, 0, 0)
        for name, var, how in self._mapping():
            a = np.asarray(var.numpy(), dtype=np.float32)
            if how == "t":
                w[name] = a.T.copy()
            elif how == "gru_t":
                w[name] = _gru_blocks(a, axis=1).T.copy()
            elif how == "gru_b":
                n_ih, n_hh = name.split("+")
                w[n_ih], w[n_hh] = _gru_blocks(a[0], 0).copy(), _gru_blocks(a[1], 0).copy()
            elif how == "conv":  # HWIO -> OIHW
                w[name] = a.transpose(3, 2, 0, 1).copy()
            elif how == "flat":  # rows (H, W, C) -> canonical columns (C, H, W)
                f = a.shape[1]
                w[name] = a.reshape(h, wd, c, f).transpose(3, 2, 0, 1).reshape(f, c * h * wd).copy()
            else:
                w[name] = a.copy()
        return w

    def set_weights(self, w: Weights) -> None:
        check_weights(self.model_spec, w)
        c, h, wd = _cnn_final_chw(self.model_spec) if self.model_spec.family == "cnn" else (0, 0, 0)
        for name, var, how in self._mapping():
            if how == "gru_b":
                n_ih, n_hh = name.split("+")
                a = np.stack([_gru_blocks(np.asarray(w[n_ih], np.float32), 0),
                              _gru_blocks(np.asarray(w[n_hh], np.float32), 0)])
            else:
                a = np.asarray(w[name], dtype=np.float32)
                if how == "t":
                    a = a.T
                elif how == "gru_t":
                    a = _gru_blocks(a.T, axis=1)
                elif how == "conv":  # OIHW -> HWIO
                    a = a.transpose(2, 3, 1, 0)
                elif how == "flat":
                    f = a.shape[0]
                    a = a.reshape(f, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, f)
            var.assign(np.ascontiguousarray(a))
        self.opt.reset_state()

    def reset_memory(self) -> None:
        if self.on_gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def allocator_figures(self) -> dict[str, int]:
        info = tf.config.experimental.get_memory_info("GPU:0")
        return {"tf_peak_bytes": int(info["peak"]), "tf_current_bytes": int(info["current"])}

    def _resident_bytes(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, int]:
        trainable = {id(v) for v in self.vars}
        return {
            "params": nbytes(self.vars, _size),
            "optimizer_state": nbytes(self.opt.variables, _size),  # Adam m, v, iterations, learning rate
            # Keras' dropout seed state and any other non-trainable model variable
            "other_variables": nbytes((v for v in self.net.variables if id(v) not in trainable), _size),
            "batch": nbytes(batch, _size),
        }

    def tensor_memory(self, batch: tuple[tf.Tensor, tf.Tensor]) -> dict[str, Any]:
        """Tensor-level memory of one training step on a staged batch (runs one extra step,
        plus, the first time, a trace of the step for the executor below and one warm-up call).

        CPU: the resident state (variables and the batch) plus the peak of the step's own
        allocations. TF's default CPU allocator keeps no statistics; its BFC allocator
        (TF_CPU_ALLOCATOR_USE_BFC=true before TF's first op: bench.registry.framework_env and
        this module's import set it) reports every allocation and free, with the requested
        size, to the TF profiler. The peak is taken over those requested sizes in time order
        (frees matched by address), not over BFC's bytes_in_use, which counts whole chunks
        (a chunk under twice the request is not split) and so depends on the allocator's
        history. The step runs under TF's SINGLE_THREADED_EXECUTOR: the default executor runs
        independent ops side by side on the inter-op threads, so which temporaries overlap,
        and the peak, changed by up to ~15% from step to step; one op at a time in a fixed
        order gives the same figure every time. That executor runs functional While loops
        as such (the default lowers them to dataflow), which moved lstm128's figure by a few
        percent. What it misses: memory outside TF's allocator (oneDNN/Eigen internal scratch,
        XLA's compiled code and runtime), and the default executor's op overlap.

        GPU: the GPU BFC allocator's peak (get_memory_info) over one step after a reset:
        everything TF holds on the GPU, resident state included."""
        breakdown = self._resident_bytes(batch)
        if self.on_gpu:
            return self.gpu_tensor_memory(breakdown, batch, "tf: GPU BFC allocator peak (get_memory_info) over one "
                                          "step after reset_memory_stats (everything TF holds on the GPU)")
        if not _cpu_bfc_active():
            return {"tensor_peak_bytes": None, "tensor_breakdown": breakdown,
                    "tensor_method": "tf: unavailable: TF's CPU allocator is not BFC, which alone reports "
                                     f"allocations ({_CPU_BFC_ENV}=true must be set before TF's first op)"}
        from tensorflow.python.eager import context

        def step() -> None:
            with tf.device(self.dev):
                self._last = self._measure_fn(*batch)
            self.sync()

        # TF's runtime fixes a step's op order when it instantiates the function, and that
        # order differs from one instantiation to the next (not from one call to the next):
        # cnn_tutorial b128 read 90.0 MB in about half of 40 instantiations and up to 113.7
        # in others (the fc gradient's 12.8 MB overlapping the optimizer's or not), with the
        # traced graph identical and grappler off or on. One figure per process then moved
        # run to run. So graph mode is instantiated _ORDERS times and the least peak kept:
        # the memory TF needs for the step in the best order it picks. Every order's figure
        # is recorded. An XLA step is one compiled cluster with its own fixed schedule (and a
        # recompile per instantiation), so it is measured once.
        orders = 1 if self.jit else _ORDERS
        peaks: list[tuple[int, dict[str, int]]] = []
        with context.function_executor_type(_SINGLE_THREADED):
            for _ in range(orders):
                if self._measure_fn is None or orders > 1:
                    # A second trace of the same step. A function first run by the default
                    # executor has its While loops lowered to dataflow, which the
                    # single-threaded executor refuses; a fresh one first run under it keeps
                    # them functional. Its first call instantiates kernels and constants:
                    # one-off allocations kept out of the measured step.
                    self._measure_fn = None
                    self._measure_fn = tf.function(self._step, jit_compile=self.jit)
                    step()
                peaks.append(_allocation_peak(_profile_allocations(step), self.opt.name))
        peak, at_peak = min(peaks, key=lambda p: p[0])
        breakdown["step_peak_transient"] = peak
        breakdown.update(at_peak)
        order_note = (f"; graph mode: least of {orders} instantiations, each with the op order TF's "
                      "runtime picked for it (all in tensor_step_transient_per_order_bytes)" if orders > 1 else "")
        return {
            "tensor_peak_bytes": sum(v for k, v in breakdown.items() if not k.startswith("at_peak_")),
            "tensor_method": "tf: variables + batch, plus the peak of the running sum of requested bytes "
                             "allocated - freed in one step (CPU BFC allocator events in a TF profiler "
                             "trace; SINGLE_THREADED_EXECUTOR, one op at a time)" + order_note,
            "tensor_breakdown": breakdown,
            "tensor_step_transient_per_order_bytes": [p for p, _ in peaks],
        }


def _size(a: Any) -> int:
    # Keras variables carry their dtype as a name ("float32"), tensors as a tf.DType: as_dtype takes both
    return math.prod(a.shape) * tf.as_dtype(a.dtype).size


_CPU_BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
_SINGLE_THREADED = "SINGLE_THREADED_EXECUTOR"
# Instantiations of a graph-mode step for its tensor-level peak (see tensor_memory). About half
# of cnn_tutorial's read the least figure on an idle machine, so the least of 8 misses it about
# once in 250; with a core busy about a quarter do (1 in 10). A cell pools its processes by
# their least (bench/records/pool.py), so its figure misses the least about once in 10,000.
_ORDERS = 8


def _cpu_bfc_active() -> bool:
    # The default CPU allocator has no statistics and says so; the BFC one answers.
    try:
        tf.config.experimental.get_memory_info("CPU:0")
        return True
    except ValueError:
        return False


def _profile_allocations(fn: Any) -> list[tuple[int, str, int, int, str]]:
    """Run fn under the TF profiler (host trace) and return the allocator events it saw:
    (time ps, kind, address, requested bytes, tf_op), time-ordered. The profiler writes its
    trace to disk only; it is read back from a temporary directory."""
    import glob
    import tempfile

    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:  # older layouts
        from tsl.profiler.protobuf import xplane_pb2  # type: ignore[no-redef]

    with tempfile.TemporaryDirectory(prefix="tf_tensor_memory_") as logdir:
        opts = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                        device_tracer_level=0)
        tf.profiler.experimental.start(logdir, options=opts)
        try:
            fn()
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True):
            with open(path, "rb") as f:
                space.MergeFromString(f.read())
    events = []
    for plane in space.planes:
        kinds = {k: m.name for k, m in plane.event_metadata.items()}
        stat_names = {k: m.name for k, m in plane.stat_metadata.items()}
        for line in plane.lines:
            for ev in line.events:
                kind = kinds.get(ev.metadata_id)
                if kind not in ("MemoryAllocation", "MemoryDeallocation"):
                    continue
                st: dict[str, Any] = {}
                for s in ev.stats:
                    which = s.WhichOneof("value")
                    val = getattr(s, which) if which else None
                    if which == "ref_value":
                        val = stat_names.get(val, "")
                    st[stat_names.get(s.metadata_id, "")] = val
                if str(st.get("allocator_name", "")).startswith("GPU"):
                    continue  # a CPU cell on a GPU machine: only host memory counts here
                events.append((line.timestamp_ns * 1000 + ev.offset_ps, kind, int(st.get("addr", 0)),
                               int(st.get("requested_bytes", 0)), str(st.get("tf_op", ""))))
    events.sort(key=lambda e: e[0])
    return events


def _allocation_peak(events: list[tuple[int, str, int, int, str]], opt_name: str) -> tuple[int, dict[str, int]]:
    """base.peak_live_bytes over the requested bytes of a trace's allocator events, and what
    was live at that peak by the op that allocated it: forward (mostly the activations kept
    for backward), backward (gradient_tape/...), optimizer, or an XLA cluster (one temp block
    per compiled call)."""
    found = peak_live_bytes(AllocationEvent(addr, size if kind == "MemoryAllocation" else None, op)
                            for _, kind, addr, size, op in events)
    parts = {"at_peak_forward": 0, "at_peak_backward": 0, "at_peak_optimizer": 0, "at_peak_xla_cluster": 0}
    for size, op in found.live_at_peak:
        if op.startswith("gradient_tape/"):
            parts["at_peak_backward"] += size
        elif op.startswith(opt_name + "/"):
            parts["at_peak_optimizer"] += size
        elif op.startswith("__inference_"):
            parts["at_peak_xla_cluster"] += size
        else:
            parts["at_peak_forward"] += size
    return found.peak_bytes, parts


build = TfTrainer.build
