"""PyTorch: nn.LSTM / nn.GRU / nn.RNN (cuDNN on CUDA), nn.Conv2d CNNs, torch.optim.Adam."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.defaults import cpu_default
from bench.reference import Weights, check_weights, directions, param_count
from bench.spec import ModelSpec, TrainSpec
from impls.base import Unsupported, host_batch

FRAMEWORK = "torch"
VARIANTS = {
    # What default runs on CPU is measured per model (bench.defaults.CPU_DEFAULT); on GPU it is
    # eager, whose RNNs and convolutions are cuDNN's.
    "default": "CPU: the fastest of eager/compiled/channels_last measured per model; GPU: eager (cuDNN)",
    "eager": "eager nn.LSTM/GRU/RNN (cuDNN on GPU), torch.optim.Adam (fused on GPU); variable length: packed",
    # Variable-length models only: the same function without packing. On CPU oneDNN takes no
    # packed input (a packed LSTM runs ATen's per-step cells), so this runs the padded batch
    # through the fused LSTM and gathers each sample's output at its own last step: no compute
    # saved on the padding, the fast kernel kept.
    "gather": "variable-length models: padded fused LSTM, output gathered at each sample's last step",
    # torch.compile (inductor): the network (forward and, through AOTAutograd, backward) and
    # Adam's step, each compiled once per mode (train/eval). The first step, which compiles, is
    # compile_s. Not mode="reduce-overhead" (CUDA graphs) on GPU: its outputs are overwritten by
    # the next replay, and the harness reads losses and logits after later steps; untested here
    # without a GPU, so not offered.
    "compiled": "torch.compile (inductor, default mode) of the network (forward and backward) and of Adam's step",
    # CNNs only: NHWC activations and weights, which oneDNN's convolutions prefer.
    "channels_last": "CNNs: eager with torch.channels_last (NHWC) weights and activations",
}
_RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def versions() -> dict[str, str]:
    v = {"torch": torch.__version__}
    if torch.cuda.is_available():
        v["cuda"] = str(torch.version.cuda)
        v["cudnn"] = str(torch.backends.cudnn.version())
    cfg = torch.__config__.show()
    v["blas"] = "mkl" if torch.backends.mkl.is_available() else ("openblas" if "openblas" in cfg.lower() else "unknown")
    v["mkldnn"] = str(torch.backends.mkldnn.is_available())
    return v


def gpu_available() -> bool:
    return torch.cuda.is_available()


class RnnNet(nn.Module):
    def __init__(self, m: ModelSpec, gather: bool = False) -> None:
        super().__init__()
        self.m, self.gather = m, gather
        # nn.LSTM's own dropout acts between layers; the readout dropout below covers the last
        # layer's output, so every layer's output sequence is dropped as the spec says.
        self.rnn = _RNN[m.cell](m.features, m.hidden, num_layers=m.layers, batch_first=True,
                                bidirectional=m.bidirectional, dropout=m.dropout if m.layers > 1 else 0.0)
        self.drop = nn.Dropout(m.dropout)
        self.head = nn.Linear(m.hidden * m.directions, m.classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None and self.gather:
            out, _ = self.rnn(x)  # (B, T, H): one layer, one direction (ModelSpec checks)
            feats = out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1]
            return self.head(self.drop(feats))
        if lengths is not None:
            # Variable length the torch way: a packed sequence runs each sample for its own
            # steps (cuDNN takes packed input too), and h_n is then each sample's own last state.
            x = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
        feats = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.m.bidirectional else h_n[-1]
        return self.head(self.drop(feats))


class CnnNet(nn.Module):
    def __init__(self, m: ModelSpec) -> None:
        super().__init__()
        self.m = m
        convs, cin = [], 1
        for c in m.conv_channels:
            convs.append(nn.Conv2d(cin, c, m.conv_kernel, padding=m.conv_kernel // 2))
            cin = c
        self.convs = nn.ModuleList(convs)
        side = m.timesteps >> len(m.conv_channels), m.features >> len(m.conv_channels)
        flat = cin * side[0] * side[1]
        self.fc = nn.Linear(flat, m.fc_hidden) if m.fc_hidden else None
        self.drop = nn.Dropout(m.dropout)
        self.head = nn.Linear(m.fc_hidden or flat, m.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.unsqueeze(1)  # NCHW: flatten below is channel-major, the canonical order
        for conv in self.convs:
            a = F.max_pool2d(F.relu(conv(a)), 2)
        a = a.flatten(1)
        if self.fc is not None:
            a = F.relu(self.fc(a))
        return self.head(self.drop(a))


def _set_precision(precision: str, on_gpu: bool) -> str:
    # TF32 needs both switches: the matmul flag and cuDNN's, which also covers cuDNN RNNs
    # (default on). TF32 does not exist on CPU, so a tf32 request there runs fp32.
    tf32 = precision == "tf32" and on_gpu
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    if precision == "bf16":
        return "bf16"
    return "tf32" if tf32 else "fp32"


class TorchTrainer:
    def __init__(self, model: ModelSpec, train: TrainSpec, device: str, precision: str, variant: str,
                 threads: int) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown torch variant {variant!r} (choose from {', '.join(VARIANTS)})")
        if variant == "default":
            variant = "eager" if device == "gpu" else cpu_default(FRAMEWORK, model.name, model.family)
        if threads > 0:
            torch.set_num_threads(threads)
        self.model_spec, self.train_spec = model, train
        self.dev = torch.device("cuda" if device == "gpu" else "cpu")
        self.on_gpu = device == "gpu"
        self.precision_applied = _set_precision(precision, self.on_gpu)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        torch.manual_seed(train.seed)  # dropout masks; weights come from set_weights
        if variant == "gather" and not (model.variable_length and model.layers == 1):
            raise Unsupported("torch variant 'gather' is for one-layer variable-length models (e.g. lstm128_varlen)")
        if variant == "channels_last" and model.family != "cnn":
            raise Unsupported("torch variant 'channels_last' is a memory format for convolutions (CNN models)")
        gather = variant == "gather"
        self.variant = variant
        self.net = (RnnNet(model, gather) if model.family == "rnn" else CnnNet(model)).to(self.dev)
        if variant == "channels_last":
            self.net = self.net.to(memory_format=torch.channels_last)
        # What runs the network: the module itself, or its compiled form (same parameters).
        self.call = self.net
        if variant == "compiled":
            self.call = torch.compile(self.net)
        self.param_count = param_count(model)
        uses_rnn = model.family == "rnn"
        if self.on_gpu:
            cudnn = torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
            self.kernel = ("cudnn-rnn" if uses_rnn else "cudnn-conv") if cudnn else "cuda-native"
            self.fast_path = cudnn
            self.fast_path_note = "" if cudnn else "cuDNN unavailable or disabled: native CUDA kernels ran"
        else:
            mkldnn = torch.backends.mkldnn.is_available()
            self.kernel = ("aten-cpu-rnn" if uses_rnn else "aten-cpu-conv") + ("+onednn" if mkldnn else "")
            self.fast_path, self.fast_path_note = True, ""
            if self.autocast_dtype is not None:
                self._probe_cpu_bf16()
        if variant == "compiled":
            self.kernel += "+inductor"
        elif variant == "channels_last":
            self.kernel += " (channels_last)"
        if model.variable_length and gather:
            self.kernel += " (padded, gathered)"
        elif model.variable_length and not self.on_gpu:
            self.kernel = "aten-cpu-rnn (packed: per-step ATen cells, oneDNN takes no packed input)"
        elif model.variable_length:
            self.kernel += " (packed)"
        self._make_optimizer()

    def _probe_cpu_bf16(self) -> None:
        # oneDNN builds its bf16 RNN/conv primitives only on CPUs whose ISA it supports for them
        # (it works on this AMD EPYC, it raised "could not create a primitive descriptor" on a CI
        # runner). Find out at build time, so the cell is skipped with the reason instead of
        # failing mid-run. Eval + no_grad: no dropout, so the probe draws nothing from the RNG.
        self.net.eval()
        try:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                self.net(torch.zeros(2, 28, 28, device=self.dev))
        except RuntimeError as e:
            first = str(e).splitlines()[0][:160]
            raise Unsupported(f"bf16 on this CPU: oneDNN has no bf16 primitive for this model here ({first})") from e
        finally:
            self.net.train()

    def _make_optimizer(self) -> None:
        t = self.train_spec
        self.opt = torch.optim.Adam(self.net.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
                                    fused=True if self.on_gpu else None)
        self.opt_step = self.opt.step
        if self.variant == "compiled":
            # torch's recipe for a compiled optimizer: compile a function that calls step()
            # (inductor fuses Adam's per-parameter updates into a few kernels).
            self.opt_step = torch.compile(self.opt.step, fullgraph=False)

    # -- protocol ------------------------------------------------------------------------------
    def stage(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, ...]:
        x_h, y_h, *lengths = host_batch(self.model_spec, x, y, np.int64)
        # pack_padded_sequence wants the lengths as a CPU int64 tensor, on any device
        return (torch.from_numpy(x_h).to(self.dev), torch.from_numpy(y_h).to(self.dev),
                *(torch.from_numpy(n) for n in lengths))

    def _logits(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, lengths = batch[0], (batch[2] if len(batch) > 2 else None)
        args = (x,) if lengths is None else (x, lengths)
        if self.autocast_dtype is None:
            return self.call(*args)
        with torch.autocast(self.dev.type, dtype=self.autocast_dtype):
            return self.call(*args).float()

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        y = batch[1]
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self._logits(batch), y)
        loss.backward()
        self.opt_step()
        return loss.detach()

    def loss_value(self, loss: torch.Tensor) -> float:
        return float(loss.item())

    def sync(self) -> None:
        if self.on_gpu:
            torch.cuda.synchronize(self.dev)

    def predict(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        self.net.eval()
        with torch.inference_mode():
            return self._logits(batch)

    def to_numpy(self, logits: torch.Tensor) -> np.ndarray:
        return logits.float().cpu().numpy()

    def _named(self) -> dict[str, nn.Parameter]:
        return dict(self.net.named_parameters())

    def _mapping(self) -> list[tuple[str, str, str]]:
        """(canonical name, torch parameter, role) triples; role 'sum' marks a bias torch
        splits in two (bias_ih + bias_hh) that the canonical layout keeps as one."""
        m, out = self.model_spec, []
        if m.family == "rnn":
            for layer in range(m.layers):
                for d in directions(m):
                    sfx = f"l{layer}" + ("_reverse" if d == "bwd" else "")
                    p = f"rnn.{layer}.{d}."
                    out += [(p + "w_ih", f"rnn.weight_ih_{sfx}", "copy"), (p + "w_hh", f"rnn.weight_hh_{sfx}", "copy")]
                    if m.cell == "gru":
                        out += [(p + "b_ih", f"rnn.bias_ih_{sfx}", "copy"), (p + "b_hh", f"rnn.bias_hh_{sfx}", "copy")]
                    else:
                        out.append((p + "b", f"rnn.bias_ih_{sfx}+rnn.bias_hh_{sfx}", "sum"))
        else:
            for i in range(len(m.conv_channels)):
                out += [(f"conv.{i}.w", f"convs.{i}.weight", "copy"), (f"conv.{i}.b", f"convs.{i}.bias", "copy")]
            if m.fc_hidden:
                out += [("fc.0.w", "fc.weight", "copy"), ("fc.0.b", "fc.bias", "copy")]
        out += [("head.w", "head.weight", "copy"), ("head.b", "head.bias", "copy")]
        return out

    def get_weights(self) -> Weights:
        p, w = self._named(), {}
        for canon, tname, role in self._mapping():
            if role == "sum":
                a, b = tname.split("+")
                w[canon] = (p[a].detach() + p[b].detach()).cpu().numpy().astype(np.float32)
            else:
                w[canon] = p[tname].detach().cpu().numpy().astype(np.float32).copy()
        return w

    @torch.no_grad()
    def set_weights(self, w: Weights) -> None:
        check_weights(self.model_spec, w)
        p = self._named()
        for canon, tname, role in self._mapping():
            src = torch.from_numpy(np.asarray(w[canon], dtype=np.float32))
            if role == "sum":  # all of it in bias_ih, zero in bias_hh: b + 0 round-trips exactly
                a, b = tname.split("+")
                p[a].copy_(src)
                p[b].zero_()
            else:
                p[tname].copy_(src)
        self._make_optimizer()

    def reset_memory(self) -> None:
        if self.on_gpu:
            torch.cuda.reset_peak_memory_stats(self.dev)

    def memory(self) -> dict[str, int]:
        if not self.on_gpu:
            return {}
        return {
            "torch_max_allocated_bytes": int(torch.cuda.max_memory_allocated(self.dev)),
            "torch_max_reserved_bytes": int(torch.cuda.max_memory_reserved(self.dev)),
            "torch_allocated_bytes": int(torch.cuda.memory_allocated(self.dev)),
        }

    def tensor_memory(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        """Tensor-level memory of one training step on a staged batch (runs one extra step,
        two if Adam's state does not exist yet).

        CPU: torch keeps no CPU allocator statistics, but with profile_memory=True every
        allocation and free through c10's CPU allocator is recorded with its pointer and size.
        The step runs under the profiler with its grads already released (as every step
        releases them first, in zero_grad), so every byte the step allocates is in the
        trace: the running sum of allocations minus frees (matched by pointer) peaks at the
        step's transient peak (grads, saved activations, autograd and optimizer
        temporaries). The resident state (params, Adam's moments, the batch) is added from
        the tensors themselves. The allocations are a function of the code and the shapes,
        so the figure repeats exactly. What it misses: memory a library takes outside c10's
        allocator (oneDNN/MKL/OpenMP internal scratch and caches), autograd's graph nodes,
        the allocator's own slack. A saved_tensors_hook, which leaves the tensors as they
        are, sizes what autograd saved for backward (distinct storages, params and batch
        excluded) for the breakdown.

        GPU: the caching allocator's max_memory_allocated over one step after a reset:
        everything live on the device, resident state included."""
        def nbytes(tensors: Any) -> int:
            return int(sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t)))

        params = list(self.net.parameters())
        if not self.opt.state:  # Adam creates its moments at the first step: have them resident
            self.train_step(batch)
        self.opt.zero_grad(set_to_none=True)
        opt_tensors = [v for s in self.opt.state.values() for v in s.values()]
        breakdown = {"params": nbytes(params), "optimizer_state": nbytes(opt_tensors), "batch": nbytes(batch)}
        resident = sum(breakdown.values())

        if self.on_gpu:
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)
            self.train_step(batch)
            torch.cuda.synchronize(self.dev)
            breakdown["grads"] = nbytes(p.grad for p in params)
            return {"tensor_peak_bytes": int(torch.cuda.max_memory_allocated(self.dev)),
                    "tensor_method": "torch: torch.cuda.max_memory_allocated over one step after "
                                     "reset_peak_memory_stats (every live CUDA tensor, resident state included)",
                    "tensor_breakdown": breakdown}

        excluded = {t.untyped_storage().data_ptr() for t in [*params, *batch]}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            if st.data_ptr() not in excluded:
                saved[st.data_ptr()] = st.nbytes()
            return t  # the tensor itself: memory and numerics exactly as without the hook

        from torch.profiler import ProfilerActivity, profile
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self.train_step(batch)
        step_peak = _cpu_allocation_peak(prof)
        breakdown["grads"] = nbytes(p.grad for p in params)  # allocated in the step: inside step_peak
        breakdown["saved_for_backward"] = int(sum(saved.values()))  # inside step_peak as well
        breakdown["step_peak_transient"] = step_peak
        return {"tensor_peak_bytes": resident + step_peak,
                "tensor_method": "torch: params + Adam state + batch, plus the peak of the running sum "
                                 "of c10 CPU allocations - frees in one step (torch.profiler, profile_memory=True)",
                "tensor_breakdown": breakdown}


def _cpu_allocation_peak(prof: Any) -> int:
    """Peak of (bytes allocated - bytes freed) over a profiled region, in time order, for CPU
    allocations made inside it. Frees are matched to allocations by pointer, so a block
    allocated before the region (and freed in it) is left out on both sides: the figure is
    what the region itself added at its worst."""
    events: list[tuple[int, int, int]] = []  # (time ns, pointer, signed bytes)

    def walk(nodes: Any) -> None:
        for n in nodes:
            f = n.extra_fields
            if type(f).__name__ == "_ExtraFields_Allocation" and f.device.type == "cpu" and f.alloc_size:
                events.append((n.start_time_ns, f.ptr, f.alloc_size))
            walk(n.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    events.sort(key=lambda e: e[0])  # stable: same-time events keep the order they were recorded
    live: dict[int, int] = {}
    cur = peak = 0
    for _, ptr, size in events:
        if size > 0:
            live[ptr] = size
            cur += size
            peak = max(peak, cur)
        elif ptr in live:
            cur -= live.pop(ptr)
    return peak


def build(model: ModelSpec, train: TrainSpec, device: str, precision: str = "fp32", variant: str = "default",
          threads: int = 0) -> TorchTrainer:
    return TorchTrainer(model, train, device, precision, variant, threads)

