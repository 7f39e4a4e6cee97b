"""Issue 45's GPU check, the Python half (benchmarks/gpu/run.sh is the entry point).

Subcommands, each run as `PYTHONPATH=. python benchmarks/gpu/gpu_check.py CMD ...`:
  equivalence --device gpu|cpu --out checks.json
      torch and JAX logits against the float64 numpy reference, and one Adam step of torch
      against JAX, through the project's own implementations (bench.registry, as
      tests/test_equivalence.py does); on a GPU also what ran, read from the run itself: the
      CUDA kernels of one torch training step (torch.profiler) and the custom calls in JAX's
      compiled step (cuDNN's RNN shows as one). Prints a table; writes every figure as JSON.
  report --results-dir DIR --run RUN ... [--checks checks.json] [--summary summary.txt] --out report.md
      The markdown report: the steps' summary, the equivalence tolerances, the step-ms
      comparison against the H100 probes (flagging > 1.1x, with what the records say about
      why), GPU memory per cell (allocator peak, NVML's per-process figure, x the analytic
      floor) with the RNN-vs-CNN verdict per batch size, then each run's table exactly as
      `python -m bench show RUN --format markdown` prints it. The same code runs on the device
      and in `run.sh --dry-run` (there on a stored CPU run).
  slug "NVIDIA H100 80GB HBM3"      -> h100 (the device part of run ids and file names)
  without-tf -- ARGS...             `python -m bench ARGS...` with tensorflow and keras made
      unimportable in this process (find_spec answers None), as on the GPU image: the dry run
      shows what `run` records for TF cells there.

Framework imports happen only inside functions: this module imports with numpy alone.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the project's bench/ and impls/
    sys.path.insert(0, str(ROOT))

# --- equivalence ---------------------------------------------------------------------------
# The CPU tolerances of tests/test_equivalence.py (LOGIT_TOL, STEP_TOL; Adam eps 1e-4 for the
# one-step comparison, for the reason given there). On a GPU the reduction order differs
# (cuDNN's and XLA's kernels sum in their own order), so the figure a GPU needs is measured here
# and reported, not assumed.
CPU_TOL = 1e-5
# Beyond this the network itself differs (a wrong gate order, bias or flatten order gives 1e-2
# and more): the equivalence step fails.
WRONG_NETWORK = 1e-3
# A tolerance to propose: the smallest value of this ladder at least MARGIN x the measured worst.
LADDER = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)
MARGIN = 3.0
EQ_MODELS = ("lstm128", "lstm512", "lstm3x256", "cnn_tutorial")
EQ_BATCH = 16
ADAM_EPS = 1e-4
# (framework, variant); the JAX cuDNN variant exists for LSTMs on a GPU only (it is reported as
# skipped, with its reason, elsewhere).
EQ_CASES = (("torch", "default"), ("jax", "default"), ("jax", "cudnn"))
BASE_CASE = ("torch", "default")


def needed_tolerance(worst: float | None, margin: float = MARGIN) -> float | None:
    """The smallest LADDER value >= margin x worst (None: worst is beyond the ladder or unknown)."""
    if worst is None:
        return None
    for t in LADDER:
        if t >= margin * worst:
            return t
    return None


def _err_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:300]


def _threads(device: str) -> int:
    if device == "gpu":
        return 0
    from bench import measure

    return measure.cpu_threads_default()


def equivalence(device: str, models: Iterable[str] = EQ_MODELS, batch: int = EQ_BATCH,
                kernels: bool | None = None) -> dict[str, Any]:
    """Every figure of the equivalence step as one JSON-able dict (see the module docstring)."""
    import dataclasses

    import numpy as np

    from bench import data, reference, registry
    from bench.spec import ZOO, TrainSpec

    models = list(models)
    ds = data.load()
    x, y = ds.train_batch(0, 0, batch)
    threads = _threads(device)
    logits: list[dict[str, Any]] = []
    steps: dict[tuple[str, str, str], dict[str, Any]] = {}
    step_rows: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    for fw, variant in EQ_CASES:
        why = registry.unavailable_reason(fw)
        impl = None if why else registry.load(fw)
        if impl is not None:
            try:
                versions[fw] = impl.versions()
            except Exception as e:  # versions are for the report only
                versions[fw] = {"error": _err_line(e)}
        from impls.base import Unsupported  # imports no framework

        for name in models:
            m = ZOO[name]
            if variant == "cudnn" and m.family != "rnn":
                continue  # a CNN has no cuDNN-RNN form: not a case at all
            row: dict[str, Any] = {"framework": fw, "variant": variant, "model": name}
            if impl is None:
                logits.append({**row, "status": "skipped", "reason": why})
                continue
            try:
                w0 = reference.init_weights(m, 0)
                tr = impl.build(m, TrainSpec(), device, "fp32", variant, threads)
                tr.set_weights(w0)
                got = tr.to_numpy(tr.predict(tr.stage(x, y)))
                want = reference.forward(m, w0, x)
                diff = float(np.abs(got - want).max())
                logits.append({**row, "status": "ok", "max_abs_diff": diff, "kernel": tr.kernel,
                               "fast_path": bool(tr.fast_path), "precision_applied": tr.precision_applied})
            except Unsupported as e:
                logits.append({**row, "status": "skipped", "reason": str(e)})
                continue
            except Exception as e:
                logits.append({**row, "status": "error", "reason": _err_line(e),
                               "traceback": traceback.format_exc()[-2000:]})
                continue
            # one Adam step, no dropout (the frameworks draw different masks), eps 1e-4
            try:
                mnd = dataclasses.replace(m, dropout=0.0)
                tr = impl.build(mnd, TrainSpec(eps=ADAM_EPS), device, "fp32", variant, threads)
                tr.set_weights(w0)
                loss = tr.loss_value(tr.train_step(tr.stage(x, y)))
                steps[(fw, variant, name)] = {"loss": float(loss), "weights": tr.get_weights(), "w0": w0}
            except Exception as e:
                step_rows.append({**row, "status": "error", "reason": _err_line(e)})
    for (fw, variant, name), got in steps.items():
        if (fw, variant) == BASE_CASE:
            continue
        base = steps.get((*BASE_CASE, name))
        row = {"framework": fw, "variant": variant, "model": name, "against": ":".join(BASE_CASE)}
        if base is None:
            step_rows.append({**row, "status": "skipped", "reason": f"no {':'.join(BASE_CASE)} step to compare with"})
            continue
        wa, wb = base["weights"], got["weights"]
        worst = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
        moved = max(float(np.abs(wb[k] - got["w0"][k]).max()) for k in wb)
        step_rows.append({**row, "status": "ok", "max_abs_weight_diff": worst,
                          "loss_diff": abs(base["loss"] - got["loss"]), "moved": moved})
    out: dict[str, Any] = {
        "device": device, "gpu": _gpu_names(), "batch": batch, "precision": "fp32 (TF32 off)",
        "adam_eps": ADAM_EPS, "cpu_tolerance": CPU_TOL, "wrong_network_above": WRONG_NETWORK,
        "utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions, "logits": logits, "adam_step": step_rows,
    }
    out["summary"] = summarize_equivalence(out)
    if kernels if kernels is not None else device == "gpu":
        out["kernels"] = kernels_from_the_run(device, models)
    return out


def summarize_equivalence(eq: dict[str, Any]) -> dict[str, Any]:
    """Worst differences, the tolerance they need, and whether the step passed."""
    lg = [r["max_abs_diff"] for r in eq["logits"] if r["status"] == "ok"]
    st = [r["max_abs_weight_diff"] for r in eq["adam_step"] if r["status"] == "ok"]
    losses = [r["loss_diff"] for r in eq["adam_step"] if r["status"] == "ok"]
    errors = [f"{r['framework']}:{r['variant']} {r['model']}: {r['reason']}"
              for r in eq["logits"] + eq["adam_step"] if r["status"] == "error"]
    unmoved = [f"{r['framework']}:{r['variant']} {r['model']}" for r in eq["adam_step"]
               if r["status"] == "ok" and r["moved"] <= 5e-4]
    worst_logits, worst_step = (max(lg) if lg else None), (max(st) if st else None)
    worst_loss = max(losses) if losses else None
    beyond = [v for v in (worst_logits, worst_step, worst_loss) if v is not None and v > WRONG_NETWORK]
    return {
        "logits_compared": len(lg), "steps_compared": len(st),
        "worst_logits": worst_logits, "worst_step": worst_step, "worst_loss": worst_loss,
        "logits_within_cpu_tolerance": None if worst_logits is None else worst_logits <= CPU_TOL,
        "step_within_cpu_tolerance": None if worst_step is None else worst_step <= CPU_TOL,
        "needed_logits_tolerance": needed_tolerance(worst_logits),
        "needed_step_tolerance": needed_tolerance(worst_step),
        "errors": errors, "unmoved": unmoved,
        "passed": bool(lg) and not errors and not beyond and not unmoved,
    }


# What ran, from the run: kernel names (torch) and compiled custom calls (JAX). The names are
# cuDNN's own (RNN_blockPersist_fp_LSTM, elemWiseRNNcell, LSTM_elementWise_fp, cudnn::...; for
# convolutions its xmma / implicit-gemm engines); torch's own fallback kernels live in at::native
# (lstm_cell_forward, im2col) and do not count. A heuristic: the report shows the names it read.
_RNN_KERNEL = re.compile(r"cudnn|RNN_|elemWiseRNN|LSTM_elementWise|blockPersist", re.I)
_CONV_KERNEL = re.compile(r"cudnn|xmma|implicit_?gemm|implicit_convolve|fprop|dgrad|wgrad|winograd", re.I)
# On a CPU (the dry run) the profiler gives ATen ops; oneDNN's are named mkldnn.
_CPU_VENDOR_OP = re.compile(r"mkldnn|onednn", re.I)
VENDOR = {"gpu": "cuDNN kernels", "cpu": "oneDNN ops"}


def classify_kernels(names: Iterable[str], family: str, device: str = "gpu") -> dict[str, Any]:
    """From a step's CUDA kernel names: did a cuDNN RNN (or convolution) kernel run, and did any
    kernel name say tf32 (none may, in an fp32 run with TF32 off). On a CPU: oneDNN's ATen ops."""
    names = list(names)
    pat = _CPU_VENDOR_OP if device == "cpu" else _RNN_KERNEL if family == "rnn" else _CONV_KERNEL
    hits = [n for n in names if pat.search(n) and "at::native" not in n]
    return {"vendor_kernels_seen": bool(hits), "vendor_kernel_examples": hits[:4],
            "tf32_kernels": [n for n in names if "tf32" in n.lower()][:4]}


def _torch_kernels(device: str, models: list[str]) -> list[dict[str, Any]]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench import data, reference, registry
    from bench.spec import ZOO, TrainSpec

    impl = registry.load("torch")
    x, y = data.load().train_batch(0, 0, 128)
    rows = []
    for name in models:
        m = ZOO[name]
        try:
            tr = impl.build(m, TrainSpec(), device, "fp32", "default", 0)
            tr.set_weights(reference.init_weights(m, 0))
            b = tr.stage(x, y)
            tr.train_step(b)  # warm: cuDNN plans and the allocator, outside the profile
            tr.sync()
            # On a GPU the CUDA kernels; on a CPU (the dry run) the ATen ops, by CPU time.
            on_gpu = device == "gpu"
            with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
                tr.train_step(b)
                tr.sync()
            times: dict[str, float] = {}
            for e in prof.events():
                if on_gpu and "cuda" not in str(getattr(e, "device_type", "")).lower():
                    continue
                t = (getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0) or 0) if on_gpu \
                    else getattr(e, "cpu_time_total", 0) or 0
                times[e.name] = times.get(e.name, 0.0) + float(t)
            top = sorted(times, key=lambda n: -times[n])
            rows.append({"framework": "torch", "variant": "default", "model": name, "status": "ok",
                         "device": device, "kernel_label": tr.kernel, "cudnn_version": torch.backends.cudnn.version(),
                         "allow_tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                        "cudnn": torch.backends.cudnn.allow_tf32},
                         "kernels_seen": len(times), "top_kernels": top[:8],
                         **classify_kernels(times, m.family, device)})
        except Exception as e:
            rows.append({"framework": "torch", "variant": "default", "model": name, "status": "error",
                         "reason": _err_line(e)})
    return rows


def _jax_custom_calls(device: str, models: list[str]) -> list[dict[str, Any]]:
    from bench import data, reference, registry
    from bench.spec import ZOO, TrainSpec

    impl = registry.load("jax")
    x, y = data.load().train_batch(0, 0, 128)
    rows = []
    for variant in ("default", "cudnn"):
        for name in models:
            m = ZOO[name]
            if variant == "cudnn" and m.family != "rnn":
                continue
            row = {"framework": "jax", "variant": variant, "model": name}
            try:
                tr = impl.build(m, TrainSpec(), device, "fp32", variant, 0)
                tr.set_weights(reference.init_weights(m, 0))
                b = tr.stage(x, y)
                # the trainer's jitted step (private: this is a benchmark script, not the harness)
                text = tr._step.lower(tr.params, tr.opt_state, tr._key, *b).compile().as_text()
                targets = sorted(set(re.findall(r'custom_call_target="([^"]+)"', text)))
                rows.append({**row, "status": "ok", "kernel_label": tr.kernel, "custom_calls": targets,
                             "cudnn_call": any("cudnn" in t.lower() for t in targets)})
            except Exception as e:
                rows.append({**row, "status": "skipped" if type(e).__name__ == "Unsupported" else "error",
                             "reason": _err_line(e)})
    return rows


def kernels_from_the_run(device: str, models: Iterable[str]) -> dict[str, Any]:
    from bench import registry

    models = list(models)
    out: dict[str, Any] = {}
    for fw, fn in (("torch", _torch_kernels), ("jax", _jax_custom_calls)):
        why = registry.unavailable_reason(fw)
        try:
            out[fw] = [{"status": "skipped", "reason": why}] if why else fn(device, models)
        except Exception as e:
            out[fw] = [{"status": "error", "reason": _err_line(e)}]
    return out


def _fmt(v: float | None, spec: str = ".1e") -> str:
    return "-" if v is None else f"{v:{spec}}"


def equivalence_markdown(eq: dict[str, Any]) -> str:
    s = eq["summary"]
    lines = [f"Device: {eq['device']}" + (f" ({', '.join(eq['gpu'])})" if eq.get("gpu") else "")
             + f", {eq['precision']}, batch {eq['batch']}, canonical weights (seed 0). CPU tolerance "
             f"(tests/test_equivalence.py): {CPU_TOL:.0e}; a needed tolerance is the smallest of "
             f"1-2-5 steps >= {MARGIN:g}x the worst measured.", "",
             "| case | model | max abs(logit - numpy float64 reference) | within 1e-05 | kernel |", "|---|---|---|---|---|"]
    for r in eq["logits"]:
        case = f"{r['framework']}:{r['variant']}"
        if r["status"] == "ok":
            ok = "yes" if r["max_abs_diff"] <= CPU_TOL else "**no**"
            kern = r["kernel"] + ("" if r["fast_path"] else " (!)")
            lines.append(f"| {case} | {r['model']} | {r['max_abs_diff']:.2e} | {ok} | {kern} |")
        else:
            lines.append(f"| {case} | {r['model']} | {r['status']}: {r['reason']} | | |")
    lines += ["", f"One Adam step (eps {ADAM_EPS:g}, no dropout) against {':'.join(BASE_CASE)}:", "",
              "| case | model | max abs(weight diff) | abs(loss diff) | largest weight move | within 1e-05 |",
              "|---|---|---|---|---|---|"]
    for r in eq["adam_step"]:
        case = f"{r['framework']}:{r['variant']}"
        if r["status"] == "ok":
            ok = "yes" if r["max_abs_weight_diff"] <= CPU_TOL else "**no**"
            lines.append(f"| {case} | {r['model']} | {r['max_abs_weight_diff']:.2e} | {r['loss_diff']:.2e} | "
                         f"{r['moved']:.1e} | {ok} |")
        else:
            lines.append(f"| {case} | {r['model']} | {r['status']}: {r['reason']} | | | |")
    lines += ["", f"Worst: logits {_fmt(s['worst_logits'])} (needs {_fmt(s['needed_logits_tolerance'], '.0e')}), "
                  f"one step {_fmt(s['worst_step'])} (needs {_fmt(s['needed_step_tolerance'], '.0e')}); "
                  f"step {'passed' if s['passed'] else '**failed**'} (fails on an error, a weight that did not move, "
                  f"or a difference above {WRONG_NETWORK:.0e}, where the network itself differs)."]
    for e in s["errors"]:
        lines.append(f"- error: {e}")
    k = eq.get("kernels")
    if k:
        lines += ["", "What ran, read from the run (one training step at batch 128):", ""]
        for r in k.get("torch", []):
            if r.get("status") != "ok":
                lines.append(f"- torch {r.get('model', '')}: {r.get('status')}: {r.get('reason')}")
                continue
            lines.append(f"- torch {r['model']}: label {r['kernel_label']}; {VENDOR[r.get('device', 'gpu')]} "
                         f"{'seen' if r['vendor_kernels_seen'] else '**not seen**'} ({', '.join(r['vendor_kernel_examples'][:2]) or 'none'}); "
                         f"tf32 kernels: {', '.join(r['tf32_kernels']) or 'none'}; "
                         f"{r['kernels_seen']} distinct kernels, top: {', '.join(r['top_kernels'][:3])}")
        for r in k.get("jax", []):
            if r.get("status") != "ok":
                lines.append(f"- jax:{r.get('variant', '')} {r.get('model', '')}: {r.get('status')}: {r.get('reason')}")
                continue
            lines.append(f"- jax:{r['variant']} {r['model']}: label {r['kernel_label']}; cuDNN custom call "
                         f"{'present' if r['cudnn_call'] else 'absent'}; "
                         f"custom calls: {', '.join(r['custom_calls']) or 'none'}")
    return "\n".join(lines) + "\n"


# --- probes --------------------------------------------------------------------------------
# ../shared/ENVIRONMENT.md, "GPU machine": seen on an H100 80 GB, fp32 with TF32 off. Train ms per
# step and the allocator's peak MB (None where the probe gave none). Keys: framework, variant,
# model, batch. "torch classic CNN (3.27 M params)" is cnn_tutorial (3,274,634 params).
PROBE_GPU = "H100 80 GB"
PROBES: dict[tuple[str, str, str, int], tuple[float, float | None]] = {
    ("torch", "default", "lstm128", 128): (1.72, 128), ("torch", "default", "lstm128", 1024): (2.19, 435),
    ("torch", "default", "lstm128", 8192): (12.3, 3411),
    ("torch", "default", "lstm3x256", 128): (6.83, 151), ("torch", "default", "lstm3x256", 1024): (6.94, 835),
    ("torch", "default", "lstm3x256", 8192): (20.1, 6365),
    ("torch", "default", "cnn_tutorial", 128): (2.04, 189), ("torch", "default", "cnn_tutorial", 1024): (3.15, 715),
    ("torch", "default", "cnn_tutorial", 8192): (20.9, 5307),
    ("jax", "default", "lstm128", 128): (1.05, None), ("jax", "default", "lstm128", 1024): (1.70, None),
    ("jax", "default", "lstm128", 8192): (6.90, None),
    ("jax", "cudnn", "lstm128", 128): (1.51, None), ("jax", "cudnn", "lstm128", 1024): (1.76, None),
    ("jax", "cudnn", "lstm128", 8192): (22.4, None),
}
FLAG_OVER = 1.1  # issue 45: a default cell more than 1.1x its probe is looked into
SPREAD_NOTE = 0.10  # step ms IQR / median above this is named as a reason
SHORT_WINDOW_MS = 20.0  # a timed repeat shorter than this is dominated by launch and sync costs


def _gpu_of(rec: dict[str, Any]) -> str:
    g = (rec.get("env") or {}).get("gpus") or []
    return g[0] if g else "?"


def why_slower(rec: dict[str, Any], probe_ms: float) -> list[str]:
    """What a record says that could explain a step slower than its probe."""
    from bench.records.record import Record

    r, out = Record(rec), []
    gpu = _gpu_of(rec)
    if "h100" not in gpu.lower():
        out.append(f"measured on {gpu}, the probe on an {PROBE_GPU}")
    if not rec.get("fast_path", True):
        out.append(f"fast path did not run: {rec.get('fast_path_note')}")
    if rec.get("precision_applied") not in (None, "fp32"):
        out.append(f"precision applied {rec.get('precision_applied')}")
    sm = r.summary("step_ms") or {}
    med = sm.get("median")
    if med and sm.get("iqr") is not None and sm["iqr"] / med > SPREAD_NOTE:
        out.append(f"repeats spread: step ms IQR {sm['iqr'] / med:.0%} of the median")
    if sm.get("min") is not None and sm["min"] <= FLAG_OVER * probe_ms:
        out.append(f"fastest repeat {sm['min']:.2f} ms is within {FLAG_OVER}x of the probe")
    n = ((rec.get("cell") or {}).get("protocol") or {}).get("steps_per_repeat")
    if n and med and n * med < SHORT_WINDOW_MS:
        out.append(f"each timed repeat is {n} steps = {n * med:.1f} ms: launch and sync costs weigh")
    if rec.get("suspect"):
        out.append("suspect: " + "; ".join(r.self_check_reasons))
    out += [f"warning: {w}" for w in r.warnings]
    if not out:
        out.append("nothing in the record: rerun alone; profile the step (nsys / torch.profiler)")
    return out


def probe_rows(records: Iterable[dict[str, Any]], over: float = FLAG_OVER) -> list[dict[str, Any]]:
    """Each ok fp32 GPU record that has a probe: step ms, probe ms, ratio, flag, reasons."""
    from bench.records.record import MB, Record

    rows = []
    for rec in records:
        if rec.get("device") != "gpu" or rec.get("status") != "ok" or rec.get("precision") != "fp32":
            continue
        key = (rec["framework"], rec.get("variant", "default"), rec["model"], int(rec["batch_size"]))
        if key not in PROBES:
            continue
        probe_ms, probe_mb = PROBES[key]
        r = Record(rec)
        ms = r.median("step_ms")
        if ms is None:
            continue
        peak = (rec.get("memory") or {}).get("allocator_peak_bytes")
        ratio = ms / probe_ms
        flagged = ratio > over
        rows.append({"framework": key[0], "variant": key[1], "model": key[2], "batch": key[3], "gpu": _gpu_of(rec),
                     "step_ms": ms, "probe_ms": probe_ms, "ratio": ratio, "flagged": flagged,
                     "peak_mb": None if peak is None else peak / MB, "probe_mb": probe_mb,
                     "mem_ratio": None if (peak is None or not probe_mb) else peak / MB / probe_mb,
                     "why": why_slower(rec, probe_ms) if flagged else []})
    return sorted(rows, key=lambda r: (r["framework"], r["variant"], r["model"], r["batch"]))


def probe_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return (f"No ok fp32 GPU cell with a probe in these runs (probes: {len(PROBES)} cells from "
                f"ENVIRONMENT.md, {PROBE_GPU}).\n")
    lines = [f"Probes: ENVIRONMENT.md, {PROBE_GPU}, fp32, TF32 off. Flagged: step ms > {FLAG_OVER}x the probe.", "",
             "| cell | GPU | step ms | probe ms | ratio | flag | allocator MB | probe MB | MB ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cell = f"{r['framework']}" + ("" if r["variant"] == "default" else f":{r['variant']}") + \
            f" {r['model']} b{r['batch']}"
        lines.append(f"| {cell} | {r['gpu']} | {r['step_ms']:.2f} | {r['probe_ms']:.2f} | {r['ratio']:.2f}x | "
                     f"{'**> ' + str(FLAG_OVER) + 'x**' if r['flagged'] else 'ok'} | {_fmt(r['peak_mb'], ',.0f')} | "
                     f"{_fmt(r['probe_mb'], ',.0f')} | {_fmt(r['mem_ratio'], '.2f')} |")
    flagged = [r for r in rows if r["flagged"]]
    lines += ["", f"{len(flagged)} of {len(rows)} cells above {FLAG_OVER}x their probe."]
    for r in flagged:
        lines.append(f"- {r['framework']}:{r['variant']} {r['model']} b{r['batch']} ({r['ratio']:.2f}x): "
                     + "; ".join(r["why"]))
    return "\n".join(lines) + "\n"


# --- memory --------------------------------------------------------------------------------
def memory_markdown(records: list[dict[str, Any]]) -> str:
    from bench.decide.claim import claim_rows
    from bench.records.record import MB, Record, cell_label

    gpu = [r for r in records if r.get("device") == "gpu" and r.get("status") == "ok"]
    lines = []
    if not gpu:
        lines.append("No ok GPU cell in these runs: no GPU memory figures.")
    else:
        lines += ["| cell | allocator peak MB | x analytic floor | framework's other figure MB | NVML process MB |",
                  "|---|---|---|---|---|"]
        nvml_seen = 0
        for rec in gpu:
            mem, r = rec.get("memory") or {}, Record(rec)
            peak, nv = mem.get("allocator_peak_bytes"), mem.get("nvml_process_used_bytes")
            nvml_seen += nv is not None
            other = mem.get("torch_max_reserved_bytes", mem.get("jax_bytes_in_use"))
            other_name = "reserved" if "torch_max_reserved_bytes" in mem else ("in use after" if other is not None else "")
            lines.append(f"| {cell_label(rec)} | {_fmt(None if peak is None else peak / MB, ',.1f')} | "
                         f"{_fmt(r.memory_over_floor, '.2f')} | "
                         f"{_fmt(None if other is None else other / MB, ',.1f')} {other_name} | "
                         f"{_fmt(None if nv is None else nv / MB, ',.0f')} |")
        if not nvml_seen:
            lines += ["", "NVML gave no per-process figure for any cell (nvidia-ml-py missing, or NVML does not "
                          "list the worker's pid, as in a container with its own PID namespace)."]
    rows = claim_rows(records)
    gpu_rows = [x for x in rows if " gpu" in x.group]
    lines += ["", "RNN vs CNN (the tutorials' claim: slower but less memory), per batch size:"]
    if not gpu_rows:
        lines.append(f"- not tested on GPU ({len(rows)} CPU comparisons in these runs; see their tables)")
    for b in sorted({x.batch_size for x in gpu_rows}):
        xs = [x for x in gpu_rows if x.batch_size == b]
        holds = sum(1 for x in xs if x.holds)
        fails = sum(1 for x in xs if x.holds is False)
        lines.append(f"- b{b}: holds in {holds} of {len(xs)}, fails in {fails}, undecided in {len(xs) - holds - fails}: "
                     + "; ".join(f"{x.rnn} [{x.group.split(' ')[0]}] {x.state} (speed {x.speed_ratio:.2f}x, memory "
                                 f"{_fmt(x.memory_ratio, '.2f')}x)" for x in xs))
    return "\n".join(lines) + "\n"


# --- the report ----------------------------------------------------------------------------
def read_runs(results_dir: Path, runs: Iterable[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(run id, pooled records) of each run that exists; a missing one is left out (a step
    that failed before its run started)."""
    from bench.records import results
    from bench.show import tidy

    out = []
    for ref in runs:
        try:
            out += tidy.read_runs([ref], Path(results_dir))
        except results.ResultsError as e:
            print(f"note: {e}", file=sys.stderr)
    return out


def skipped_lines(records: list[dict[str, Any]]) -> list[str]:
    """One line per distinct reason the runs' skipped cells give, with how many cells."""
    by: dict[str, list[str]] = {}
    for r in records:
        if r.get("status") == "skipped":
            by.setdefault(r.get("reason") or "?", []).append(f"{r['framework']}:{r.get('variant', 'default')}")
    return [f"- {len(v)} cell(s) skipped ({', '.join(sorted(set(v)))}): {k}" for k, v in by.items()]


def build_report(results_dir: Path, runs: list[str], checks: dict[str, Any] | None = None,
                 summary: str | None = None, title: str | None = None) -> str:
    from bench.show import report

    loaded = read_runs(results_dir, runs)
    records = [r for _, recs in loaded for r in recs]
    gpus = sorted({_gpu_of(r) for r in records if r.get("device") == "gpu"} - {"?"})
    dates = sorted({(r.get("env") or {}).get("utc", "")[:10] for r in records} - {""})
    commits = sorted({str(((r.get("env") or {}).get("git") or {}).get("commit")) for r in records} - {"None"})
    versions: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("framework_versions"):
            versions.setdefault(r["framework"], r["framework_versions"])
    parts = [f"# {title or 'lstm-bench on GPU'}", "",
             f"GPU: {', '.join(gpus) or 'none in these records'}; dates: {', '.join(dates) or '-'}; "
             f"runs: {', '.join(run_id for run_id, _ in loaded) or 'none'}; commit: {', '.join(commits) or 'not recorded'}.",
             "Versions: " + ("; ".join(f"{fw}: " + ", ".join(f"{k} {v}" for k, v in sorted(vs.items()))
                                       for fw, vs in sorted(versions.items())) or "-"),
             "TensorFlow is not on the GPU image: its GPU paths are tested on CPU only, and its GPU cells are "
             "recorded as skipped with the reason below.", ""]
    skipped = skipped_lines(records)
    if skipped:
        parts += skipped + [""]
    if summary:
        parts += ["## Steps", "", "```", summary.rstrip(), "```", ""]
    parts += ["## Equivalence", ""]
    parts += [equivalence_markdown(checks) if checks else "Not run (no checks file).\n"]
    parts += ["## Step time against the probes", "", probe_markdown(probe_rows(records))]
    parts += ["## Memory", "", memory_markdown(records)]
    for run_id, recs in loaded:  # exactly `python -m bench show RUN --format markdown`
        parts += [f"## Run {run_id}", "", f"`python -m bench show {run_id} --format markdown`:", "",
                  report.to_markdown(recs)]
    return "\n".join(parts).rstrip() + "\n"


# --- small helpers ---------------------------------------------------------------------------
def slug(gpu_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'NVIDIA H200' -> 'h200'; else the name, lower-cased and
    reduced to letters, digits and '-'."""
    for tok in gpu_name.lower().replace("nvidia", " ").split():
        if re.fullmatch(r"[a-z]{1,3}\d{2,4}[a-z]?", tok):
            return tok
    s = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return s or "gpu"


def _gpu_names() -> list[str]:
    from bench import envinfo

    return list(envinfo.gpus())


def without_tf(argv: list[str]) -> int:
    """`python -m bench ARGV` with tensorflow and keras unimportable, as on the GPU image."""
    for name in ("tensorflow", "keras"):
        sys.modules[name] = None  # type: ignore[assignment]  # find_spec and import both answer: not there
    from bench.cli import main

    return main(argv, prog="python -m bench")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("equivalence")
    e.add_argument("--device", choices=("gpu", "cpu"), required=True)
    e.add_argument("--models", default=",".join(EQ_MODELS))
    e.add_argument("--out", required=True)
    e.add_argument("--kernels", action=argparse.BooleanOptionalAction, default=None,
                   help="also read what ran (default: on a GPU)")
    r = sub.add_parser("report")
    r.add_argument("--results-dir", required=True)
    r.add_argument("--run", action="append", default=[])
    r.add_argument("--checks")
    r.add_argument("--summary")
    r.add_argument("--title")
    r.add_argument("--out", required=True)
    s = sub.add_parser("slug")
    s.add_argument("name")
    w = sub.add_parser("without-tf")
    w.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if a.cmd == "slug":
        print(slug(a.name))
        return 0
    if a.cmd == "without-tf":
        return without_tf(a.args[1:] if a.args[:1] == ["--"] else a.args)
    if a.cmd == "equivalence":
        eq = equivalence(a.device, [m for m in a.models.split(",") if m], kernels=a.kernels)
        Path(a.out).write_text(json.dumps(eq, indent=1, sort_keys=True, default=str) + "\n")
        print(equivalence_markdown(eq))
        return 0 if eq["summary"]["passed"] else 1
    checks = json.loads(Path(a.checks).read_text()) if a.checks and Path(a.checks).is_file() else None
    summary = Path(a.summary).read_text() if a.summary and Path(a.summary).is_file() else None
    text = build_report(Path(a.results_dir), a.run, checks, summary, a.title)
    Path(a.out).write_text(text)
    # The figures someone watching the log wants first: the probe table and the memory section.
    loaded = read_runs(Path(a.results_dir), a.run)
    records = [x for _, recs in loaded for x in recs]
    print(probe_markdown(probe_rows(records)))
    print(memory_markdown(records))
    print(f"report: {a.out} ({len(text.splitlines())} lines, {len(loaded)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
