"""PyTorch: nn.LSTM / nn.GRU / nn.RNN (cuDNN on CUDA), nn.Conv2d CNNs, torch.optim.Adam."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import registry
from bench.defaults import cpu_default
from bench.reference import Weights, check_weights, directions
from bench.spec import ModelSpec, TrainSpec
from impls.base import AllocationEvent, TrainerBase, Unsupported, host_batch, nbytes, peak_live_bytes

FRAMEWORK = "torch"
VARIANTS = dict(registry.get(FRAMEWORK).variants)
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
            # The variant "gather": the same function without packing. On CPU oneDNN takes no
            # packed input (a packed LSTM runs ATen's per-step cells), so this runs the padded
            # batch through the fused LSTM and gathers each sample's output at its own last
            # step: no compute saved on the padding, the fast kernel kept.
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


def _concrete_variant(variant: str, model: ModelSpec, on_gpu: bool) -> str:
    """The variant that runs. What default runs on CPU is measured per model
    (bench.defaults.CPU_DEFAULT); on GPU it is eager, whose RNNs and convolutions are cuDNN's."""
    if variant != "default":
        return variant
    return "eager" if on_gpu else cpu_default(FRAMEWORK, model.name, model.family)


def _check_supported(variant: str, model: ModelSpec) -> None:
    if variant == "gather" and not (model.variable_length and model.layers == 1):
        raise Unsupported("torch variant 'gather' is for one-layer variable-length models (e.g. lstm128_varlen)")
    if variant == "channels_last" and model.family != "cnn":
        raise Unsupported("torch variant 'channels_last' is a memory format for convolutions (CNN models)")


def _set_global_state(precision: str, on_gpu: bool, threads: int, seed: int) -> str:
    """torch's process-wide settings for this cell; returns the precision applied."""
    if threads > 0:
        torch.set_num_threads(threads)
    applied = _set_precision(precision, on_gpu)
    torch.manual_seed(seed)  # dropout masks; weights come from set_weights
    return applied


def _build_net(model: ModelSpec, variant: str, dev: torch.device) -> tuple[nn.Module, Any]:
    """The network, and what runs it: the module itself or its compiled form (same parameters)."""
    net = (RnnNet(model, variant == "gather") if model.family == "rnn" else CnnNet(model)).to(dev)
    if variant == "channels_last":  # NHWC activations and weights, which oneDNN's convolutions prefer
        net = net.to(memory_format=torch.channels_last)
    if variant != "compiled":
        return net, net
    # torch.compile (inductor): the network (forward and, through AOTAutograd, backward) and
    # Adam's step (_make_optimizer), each compiled once per mode (train/eval). The first step,
    # which compiles, is compile_s. Not mode="reduce-overhead" (CUDA graphs) on GPU: its
    # outputs are overwritten by the next replay, and the harness reads losses and logits
    # after later steps; untested here without a GPU, so not offered.
    return net, torch.compile(net)


def kernel_label(model: ModelSpec, variant: str, on_gpu: bool, vendor_library: bool) -> str:
    """What ran, for the record: the library (`vendor_library`: cuDNN on GPU, oneDNN on CPU,
    when torch has it), then how the network is run (compiled, channels_last), then how a
    variable-length batch goes through (`variant` is the concrete one, never "default")."""
    uses_rnn = model.family == "rnn"
    packed = model.variable_length and variant != "gather"
    if on_gpu:
        label = ("cudnn-rnn" if uses_rnn else "cudnn-conv") if vendor_library else "cuda-native"
    else:  # oneDNN takes no packed input: a packed sequence runs ATen's per-step cells
        label = ("aten-cpu-rnn" if uses_rnn else "aten-cpu-conv") + ("+onednn" if vendor_library and not packed else "")
    label += {"compiled": "+inductor", "channels_last": " (channels_last)"}.get(variant, "")
    if not model.variable_length:
        return label
    if not packed:
        return label + " (padded, gathered)"
    return label + (" (packed)" if on_gpu else " (packed: per-step ATen cells, oneDNN takes no packed input)")


class TorchTrainer(TrainerBase, framework=FRAMEWORK, allocator_peak_key="torch_max_allocated_bytes"):
    def __init__(self, model: ModelSpec, train: TrainSpec, device: str, precision: str, variant: str,
                 threads: int) -> None:
        super().__init__(model, train, device, variant)
        self.variant = _concrete_variant(variant, model, self.on_gpu)
        _check_supported(self.variant, model)
        self.dev = torch.device("cuda" if self.on_gpu else "cpu")
        self.precision_applied = _set_global_state(precision, self.on_gpu, threads, train.seed)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.net, self.call = _build_net(model, self.variant, self.dev)
        self._set_kernel()
        if not self.on_gpu and self.autocast_dtype is not None:
            self._probe_cpu_bf16()
        self._make_optimizer()

    def _set_kernel(self) -> None:
        if self.on_gpu:
            vendor = torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
            if not vendor:
                self.fast_path, self.fast_path_note = False, "cuDNN unavailable or disabled: native CUDA kernels ran"
        else:
            vendor = torch.backends.mkldnn.is_available()
        self.kernel = kernel_label(self.model_spec, self.variant, self.on_gpu, vendor)

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

    def allocator_figures(self) -> dict[str, int]:
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
        params = list(self.net.parameters())
        if not self.opt.state:  # Adam creates its moments at the first step: have them resident
            self.train_step(batch)
        self.opt.zero_grad(set_to_none=True)
        opt_tensors = [v for s in self.opt.state.values() for v in s.values()]
        breakdown = {"params": nbytes(params), "optimizer_state": nbytes(opt_tensors), "batch": nbytes(batch)}
        resident = sum(breakdown.values())

        if self.on_gpu:
            out = self.gpu_tensor_memory(breakdown, batch, "torch: torch.cuda.max_memory_allocated over one step "
                                         "after reset_peak_memory_stats (every live CUDA tensor, resident state included)")
            breakdown["grads"] = nbytes(p.grad for p in params)
            return out

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
    """base.peak_live_bytes over a profiled region's CPU allocations and frees (c10 records a
    free as a negative size)."""
    events: list[tuple[int, int, int]] = []  # (time ns, pointer, signed bytes)

    def walk(nodes: Any) -> None:
        for n in nodes:
            f = n.extra_fields
            if type(f).__name__ == "_ExtraFields_Allocation" and f.device.type == "cpu" and f.alloc_size:
                events.append((n.start_time_ns, f.ptr, f.alloc_size))
            walk(n.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    events.sort(key=lambda e: e[0])  # stable: same-time events keep the order they were recorded
    return peak_live_bytes(AllocationEvent(ptr, size if size > 0 else None) for _, ptr, size in events).peak_bytes


build = TorchTrainer.build

