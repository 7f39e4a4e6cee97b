"""benchmarks/gpu (issue 45): the prepared GPU script, checked on a CPU machine.

What runs here: the probe comparison and the memory/claim section on synthetic GPU records, the
report from a stored run (its run tables must be `show --format markdown`'s exactly), the
tolerance and kernel-name rules, what `run` records where tensorflow is missing (as on the GPU
image), and run.sh's step, timeout and packing logic with a stub interpreter. The real dry run is
the one slow test. What needs a GPU is listed in benchmarks/gpu/README.md.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.records import results
from bench.cli import main as bench_main

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR = ROOT / "benchmarks" / "gpu"
RUN_SH = GPU_DIR / "run.sh"
BASELINES = ROOT / "results" / "baselines"
BASELINE = "cpu-2core-quick-tensor-memory"
H100 = "NVIDIA H100 80GB HBM3"


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_DIR / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gc = _load_gpu_check()


# --- synthetic GPU records, made from a stored CPU record ------------------------------------
def _base_record() -> dict:
    path = BASELINES / BASELINE / "cells" / "torch.default.lstm128.cpu.b128.fp32.t2.23b5e300.json"
    return json.loads(path.read_text())


def _stats(median: float, iqr: float = 0.0, lo: float | None = None) -> dict:
    lo = median if lo is None else lo
    return {"median": median, "iqr": iqr, "q1": median - iqr / 2, "q3": median + iqr / 2, "min": lo,
            "max": median + iqr, "values": [median]}


def gpu_record(fw: str, model: str, batch: int, step_ms: float, variant: str = "default", family: str = "rnn",
               peak_mb: float = 100.0, nvml_mb: float | None = 600.0, precision: str = "fp32", status: str = "ok",
               gpu: str = H100, **extra) -> dict:
    rec = copy.deepcopy(_base_record())
    key = f"{fw}.{variant}.{model}.gpu.b{batch}.{precision}.t0.0000{batch:04d}"
    rec.update(key=key, framework=fw, variant=variant, model=model, device="gpu", batch_size=batch,
               precision=precision, precision_applied=precision, threads=0, status=status, suspect=False,
               kernel="cudnn-rnn" if family == "rnn" else "cudnn-conv", fast_path=True, fast_path_note="")
    rec["cell"].update(framework=fw, variant=variant, device="gpu", precision=precision, threads=0)
    rec["cell"]["model"].update(name=model, family=family)
    rec["cell"]["train"]["batch_size"] = batch
    rec["env"]["gpus"] = [gpu]
    samples = batch * 1000.0 / step_ms
    rec["metrics"]["step_ms"] = _stats(step_ms, extra.pop("iqr", 0.0), extra.pop("min_ms", None))
    rec["metrics"]["train_samples_per_s"] = _stats(samples)
    rec["memory"] = {"allocator_peak_bytes": int(peak_mb * 1e6), "torch_max_reserved_bytes": int(peak_mb * 1.5e6)}
    if nvml_mb is not None:
        rec["memory"]["nvml_process_used_bytes"] = int(nvml_mb * 1e6)
    rec["analytic"]["measured_memory_bytes"] = int(peak_mb * 1e6)
    rec["analytic"]["measured_memory_source"] = "allocator peak"
    rec.update(extra)
    return rec


def write_run(results_dir: Path, run_id: str, records: list[dict]) -> Path:
    run_dir = results_dir / run_id
    results.write_manifest(run_dir, {"run_id": run_id, "cells": [{"key": r["key"]} for r in records]})
    for r in records:
        results.write_record(run_dir, r)
    return run_dir


def test_gpu_check_imports_no_framework():
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('g', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(sorted(f for f in ('torch', 'jax', 'tensorflow', 'keras') if f in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code, str(GPU_DIR / "gpu_check.py")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


# --- the probe comparison ---------------------------------------------------------------------
def test_probe_comparison_flags_a_cell_above_1_1x_and_not_one_at_its_probe():
    recs = [
        gpu_record("torch", "lstm128", 128, 1.72),                        # 1.00x
        gpu_record("torch", "lstm128", 1024, 2.19 * 1.25, iqr=0.8),       # 1.25x, wide repeats
        gpu_record("jax", "lstm128", 128, 1.05 * 1.09),                   # 1.09x: under the line
        gpu_record("jax", "lstm128", 1024, 1.70 * 1.5, variant="cudnn"),  # against the cuDNN probe, 1.76
        gpu_record("torch", "lstm128", 8192, 99.0, precision="tf32"),     # tf32: never against fp32 probes
        gpu_record("torch", "lstm512", 128, 50.0),                        # no probe for lstm512
        gpu_record("torch", "cnn_tutorial", 128, 99.0, family="cnn", status="failed"),
    ]
    rows = {(r["framework"], r["variant"], r["batch"]): r for r in gc.probe_rows(recs)}
    assert set(rows) == {("torch", "default", 128), ("torch", "default", 1024), ("jax", "default", 128),
                         ("jax", "cudnn", 1024)}
    assert rows[("torch", "default", 128)]["ratio"] == pytest.approx(1.0)
    assert rows[("torch", "default", 128)]["flagged"] is False and rows[("torch", "default", 128)]["why"] == []
    assert rows[("jax", "default", 128)]["ratio"] == pytest.approx(1.09) and not rows[("jax", "default", 128)]["flagged"]
    hot = rows[("torch", "default", 1024)]
    assert hot["ratio"] == pytest.approx(1.25) and hot["flagged"]
    assert any("IQR 29% of the median" in w for w in hot["why"]), hot["why"]
    cudnn = rows[("jax", "cudnn", 1024)]
    assert cudnn["probe_ms"] == 1.76 and cudnn["ratio"] == pytest.approx(1.70 * 1.5 / 1.76) and cudnn["flagged"]
    assert rows[("torch", "default", 128)]["mem_ratio"] == pytest.approx(100 / 128)
    md = gc.probe_markdown(gc.probe_rows(recs))
    assert "2 of 4 cells above 1.1x their probe." in md
    assert re.search(r"\| torch lstm128 b1024 \| NVIDIA H100 80GB HBM3 \| 2\.74 \| 2\.19 \| 1\.25x \| \*\*> 1\.1x\*\* \|", md), md
    assert "| torch lstm128 b128 | NVIDIA H100 80GB HBM3 | 1.72 | 1.72 | 1.00x | ok |" in md


def test_why_a_cell_is_slow_names_what_its_record_says():
    rec = gpu_record("torch", "lstm3x256", 128, 6.83 * 2, gpu="NVIDIA H200", fast_path=False,
                     fast_path_note="cuDNN unavailable or disabled: native CUDA kernels ran", min_ms=7.0)
    why = gc.why_slower(rec, 6.83)
    assert any("NVIDIA H200" in w and "H100" in w for w in why), why
    assert any("cuDNN unavailable" in w for w in why), why
    assert any("fastest repeat 7.00 ms" in w for w in why), why
    # the quick profile's 6-step repeat of a 13.7 ms step is 82 ms: not a short window
    assert not any("launch and sync" in w for w in why), why
    short = gpu_record("torch", "lstm128", 128, 3.0)
    short["cell"]["protocol"]["steps_per_repeat"] = 6
    assert any("6 steps = 18.0 ms" in w for w in gc.why_slower(short, 1.72))
    assert gc.why_slower(gpu_record("torch", "lstm128", 128, 3.0), 1.72) == [
        "nothing in the record: rerun alone; profile the step (nsys / torch.profiler)"]


# --- equivalence rules -----------------------------------------------------------------------
def test_needed_tolerance_is_the_next_1_2_5_step_above_three_times_the_worst():
    assert gc.needed_tolerance(1.2e-6) == 5e-6
    assert gc.needed_tolerance(4e-6) == 2e-5
    assert gc.needed_tolerance(3.8e-8) == 1e-6
    assert gc.needed_tolerance(5e-4) is None and gc.needed_tolerance(None) is None


def _eq(logit: float, step: float, moved: float = 2e-3, error: bool = False) -> dict:
    eq = {"logits": [{"framework": "torch", "variant": "default", "model": "lstm128", "status": "ok",
                      "max_abs_diff": logit},
                     {"framework": "jax", "variant": "cudnn", "model": "lstm128", "status": "skipped",
                      "reason": "needs a GPU"}],
          "adam_step": [{"framework": "jax", "variant": "default", "model": "lstm128", "status": "ok",
                         "max_abs_weight_diff": step, "loss_diff": 1e-7, "moved": moved}]}
    if error:
        eq["logits"].append({"framework": "jax", "variant": "default", "model": "lstm512", "status": "error",
                             "reason": "XlaRuntimeError: boom"})
    return gc.summarize_equivalence(eq)


def test_equivalence_passes_gpu_rounding_and_fails_a_different_network():
    s = _eq(2e-6, 8e-6)
    assert s["passed"] and s["logits_within_cpu_tolerance"] and s["step_within_cpu_tolerance"]
    assert s["needed_logits_tolerance"] == 1e-5 and s["needed_step_tolerance"] == 5e-5
    s = _eq(3e-5, 8e-6)  # above the CPU's 1e-5: reported, not a failure
    assert s["passed"] and s["logits_within_cpu_tolerance"] is False and s["needed_logits_tolerance"] == 1e-4
    assert not _eq(2e-2, 8e-6)["passed"]           # a wrong gate order's size
    assert not _eq(2e-6, 8e-6, moved=1e-5)["passed"]  # the step did not move: vacuous
    s = _eq(2e-6, 8e-6, error=True)
    assert not s["passed"] and s["errors"] == ["jax:default lstm512: XlaRuntimeError: boom"]


def test_kernel_names_cudnn_counts_and_torch_fallback_does_not():
    cudnn_rnn = ["void RNN_blockPersist_fp_LSTM<float, float, float, 128, 1, 1, 0>(...)",
                 "void elemWiseRNNcell<float, float, float, (cudnnRNNMode_t)2, (cudnnRNNBiasMode_t)2>(...)",
                 "ampere_sgemm_128x64_tn"]
    native = ["void at::native::(anonymous namespace)::lstm_cell_forward<float, float, int, 1>(...)",
              "ampere_sgemm_128x64_tn"]
    assert gc.classify_kernels(cudnn_rnn, "rnn")["vendor_kernels_seen"]
    assert not gc.classify_kernels(native, "rnn")["vendor_kernels_seen"]
    conv = gc.classify_kernels(["sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nchw"], "cnn")
    assert conv["vendor_kernels_seen"] and conv["tf32_kernels"] == ["sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nchw"]
    assert gc.classify_kernels(["void at::native::im2col_kernel<float>(...)"], "cnn")["vendor_kernels_seen"] is False
    # the dry run's CPU reading: oneDNN's ops count, torch's cuDNN predicate does not
    cpu = ["aten::cudnn_is_acceptable", "aten::mkldnn_rnn_layer", "aten::lstm"]
    assert gc.classify_kernels(cpu, "rnn", "cpu")["vendor_kernel_examples"] == ["aten::mkldnn_rnn_layer"]


def test_device_slug_names_runs_and_the_published_file():
    assert gc.slug("NVIDIA H100 80GB HBM3") == "h100"
    assert gc.slug("NVIDIA H200") == "h200"
    assert gc.slug("NVIDIA A100-SXM4-40GB") == "nvidia-a100-sxm4-40gb"
    assert results.check_run_id(f"gpu-{gc.slug('Tesla V100-SXM2-16GB')}-20261208-matrix")


# --- the report ------------------------------------------------------------------------------
def test_report_from_the_stored_run_holds_show_markdown_exactly(capsys):
    assert bench_main(["--results-dir", str(BASELINES), "show", BASELINE, "--format", "markdown"]) == 0
    shown = capsys.readouterr().out
    text = gc.build_report(BASELINES, [BASELINE, "no-such-run"], summary="step  status\nmatrix  ok\n")
    assert shown in text
    rows = [ln for ln in text.splitlines() if re.match(r"\| (torch|tf|jax) \S+ cpu b128 \| ok \|", ln)]
    assert len(rows) == 18, rows
    assert "| torch lstm128 cpu b128 | ok | 91.52 @300 |" in text
    assert "## Steps" in text and "matrix  ok" in text
    assert "No ok fp32 GPU cell with a probe" in text and "not tested on GPU (12 CPU comparisons" in text


def test_report_on_gpu_records_gives_memory_nvml_and_the_claim_per_batch(tmp_path):
    recs = [
        gpu_record("torch", "lstm128", 128, 1.72, peak_mb=250, nvml_mb=700),         # more memory: fails
        gpu_record("torch", "cnn_tutorial", 128, 2.04, family="cnn", peak_mb=189, nvml_mb=800),
        gpu_record("torch", "lstm128", 1024, 40.0, peak_mb=435, nvml_mb=None),       # slower, leaner: holds
        gpu_record("torch", "cnn_tutorial", 1024, 3.15, family="cnn", peak_mb=715, nvml_mb=None),
        gpu_record("tf", "lstm128", 128, 1.0, status="skipped",
                   reason="tensorflow, keras not installed: pip install 'lstm-bench[tf]'"),
    ]
    write_run(tmp_path, "gpu-h100-20261208-matrix", recs)
    eq = {"device": "gpu", "gpu": [H100], "precision": "fp32 (TF32 off)", "batch": 16,
          "logits": [{"framework": "torch", "variant": "default", "model": "lstm128", "status": "ok",
                      "max_abs_diff": 3e-6, "kernel": "cudnn-rnn", "fast_path": True}],
          "adam_step": [{"framework": "jax", "variant": "default", "model": "lstm128", "status": "ok",
                         "max_abs_weight_diff": 2e-5, "loss_diff": 1e-6, "moved": 2e-3}],
          "kernels": {"torch": [{"status": "ok", "model": "lstm128", "kernel_label": "cudnn-rnn",
                                 "vendor_kernels_seen": True, "vendor_kernel_examples": ["RNN_blockPersist_fp_LSTM"],
                                 "tf32_kernels": [], "kernels_seen": 9, "top_kernels": ["RNN_blockPersist_fp_LSTM"]}],
                      "jax": [{"status": "ok", "variant": "cudnn", "model": "lstm128", "kernel_label": "cudnn-rnn",
                               "cudnn_call": True, "custom_calls": ["__cudnn$rnn"]}]}}
    eq["summary"] = gc.summarize_equivalence(eq)
    text = gc.build_report(tmp_path, ["gpu-h100-20261208-matrix"], eq)
    assert "GPU: NVIDIA H100 80GB HBM3;" in text
    assert "- 1 cell(s) skipped (tf:default): tensorflow, keras not installed" in text
    assert "| torch:default | lstm128 | 3.00e-06 | yes | cudnn-rnn |" in text
    assert "| jax:default | lstm128 | 2.00e-05 | 1.00e-06 | 2.0e-03 | **no** |" in text
    assert "one step 2.0e-05 (needs 1e-04)" in text
    assert "cuDNN kernels seen (RNN_blockPersist_fp_LSTM)" in text and "cuDNN custom call present" in text
    assert "| torch lstm128 gpu b128 | 250.0 | " in text and " | 700 |" in text
    assert "| torch lstm128 gpu b1024 | 435.0 | " in text and text.count(" | - |") >= 2  # no NVML figure there
    b128 = next(ln for ln in text.splitlines() if ln.startswith("- b128:"))
    b1024 = next(ln for ln in text.splitlines() if ln.startswith("- b1024:"))
    assert b128.startswith("- b128: holds in 0 of 1, fails in 1") and "fails: more memory" in b128, b128
    assert b1024.startswith("- b1024: holds in 1 of 1, fails in 0") and "memory 0.61x" in b1024, b1024
    assert "1 of 4 cells above 1.1x their probe." in text  # lstm128 b1024's 40 ms against 2.19
    assert "| torch lstm128 b1024 | NVIDIA H100 80GB HBM3 | 40.00 | 2.19 | 18.26x | **> 1.1x** | 435 | 435 | 1.00 |" in text
    assert "| torch cnn_tutorial b128 | NVIDIA H100 80GB HBM3 | 2.04 | 2.04 | 1.00x | ok | 189 | 189 | 1.00 |" in text


# --- what `run` does where tensorflow is missing (the GPU image) ------------------------------
def test_run_without_tensorflow_records_tf_cells_as_skipped_with_the_reason(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, str(GPU_DIR / "gpu_check.py"), "without-tf", "--", "run", "-f", "tf",
                        "-m", "cnn_small,lstm128", "-d", "cpu", "--profile", "smoke", "--memory-rounds", "1",
                        "--quiet", "--results-dir", str(tmp_path), "--run-id", "tf-absent"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    recs = results.read_records(tmp_path / "tf-absent")
    assert [r["status"] for r in recs] == ["skipped", "skipped"]
    assert {r["reason"] for r in recs} == {"tensorflow, keras not installed: pip install 'lstm-bench[tf]'"}


# --- run.sh ----------------------------------------------------------------------------------
def test_run_sh_is_valid_bash_and_the_device_command_is_short():
    p = subprocess.run(["bash", "-n", str(RUN_SH)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    readme = (GPU_DIR / "README.md").read_text()
    block = re.search(r"## The device call.*?```\n(.*?)\n```", readme, re.S)
    assert block, "README.md names the device command in a code block under 'The device call'"
    cmd = block.group(1).strip()
    assert len(cmd) < 2000 and cmd.endswith("bash benchmarks/gpu/run.sh") and "GPU_COMMIT=" in cmd


STUB = r"""#!/usr/bin/env bash
# a stand-in interpreter for run.sh's tests: slow where told, run directories where a run is asked for
args="$*"
case "$args" in
  *"gpu_check.py slug"*) echo h100; exit 0 ;;
  *"bench list"*) echo "devices: cpu (2 threads, x); gpu: NVIDIA H100 80GB HBM3"; exit 0 ;;
  *"$STUB_SLOW"*) exec sleep 60 ;;
  *"bench run"*)
    while [ $# -gt 0 ]; do
      case "$1" in --results-dir) rd=$2 ;; --run-id) id=$2 ;; esac; shift
    done
    mkdir -p "$rd/$id/cells" && echo '{}' > "$rd/$id/manifest.json"
    case "$args" in *"$STUB_FAIL"*) exit 1 ;; esac
    exit 0 ;;
  *) exit 0 ;;
esac
"""


def _run_sh(tmp_path: Path, *args: str, slow: str = "never-matches", fail: str = "never-matches",
            budget: int = 540, reserve: int = 40) -> tuple[subprocess.CompletedProcess, Path]:
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    bindir = tmp_path / "bin"  # an nvidia-smi that names an H100
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$*\" in *compute-apps*) exit 0 ;; esac\necho 'NVIDIA H100 80GB HBM3'\n")
    smi.chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=str(stub), GPU_WORK=str(tmp_path / "work"), STUB_SLOW=slow,
               STUB_FAIL=fail, GPU_BUDGET_S=str(budget), GPU_RESERVE_S=str(reserve), GPU_MIN_STEP_S="2",
               GPU_COMMIT="abc123",
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    p = subprocess.run(["bash", str(RUN_SH), *args], capture_output=True, text=True, env=env, timeout=120)
    return p, out


def _steps(out: Path) -> dict[str, str]:
    lines = (out / "summary.txt").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("step "))
    steps = {}
    for ln in lines[start + 1:]:
        m = re.match(r"(\S+)\s+(.+?)\s+(\d+)\s+(-?\d+)$", ln)
        if m:
            steps[m.group(1)] = m.group(2)
    return steps


def test_device_path_runs_every_step_in_order_and_returns_at_most_8_files(tmp_path):
    p, out = _run_sh(tmp_path, fail="jax-cudnn")
    assert p.returncode == 0, p.stderr
    steps = _steps(out)
    assert list(steps) == ["env", "list", "equivalence", "matrix", "jax-cudnn", "report", "b8192", "tf32",
                           "final-report"]
    assert steps["jax-cudnn"] == "failed (exit 1)" and steps["b8192"] == "ok" and steps["final-report"] == "ok"
    files = sorted(f.name for f in out.iterdir())
    assert files == ["run.log", "runs-b8192.tar.gz", "runs-jax-cudnn.tar.gz", "runs-matrix.tar.gz",
                     "runs-tf32.tar.gz", "summary.txt"]  # + checks.json and report.md from real steps: 8
    with tarfile.open(out / "runs-matrix.tar.gz") as t:
        assert "gpu-h100-" in t.getnames()[0] and t.getnames()[0].endswith("-matrix")
    log = (out / "run.log").read_text()
    assert "--strict" in log and "-d gpu -b 128,1024 --precision fp32" in log and "--memory-rounds 1" in log
    assert "results/published/gpu-h100-" in (out / "summary.txt").read_text()


def test_a_step_past_its_limit_is_timed_out_and_the_report_still_runs(tmp_path):
    # budget 12 s, reserve 4: the equivalence gets 8 s and times out, nothing else fits, but the
    # final report (which may use the reserve) still runs.
    p, out = _run_sh(tmp_path, "--dry-run", slow="equivalence", budget=12, reserve=4)
    assert p.returncode == 0, p.stderr
    steps = _steps(out)
    assert steps["equivalence"] == "timed out"
    assert steps["skips"] == "skipped: no time left"
    assert steps["final-report"] == "ok"
    assert [s for s in steps if s.startswith("plan-")] == ["plan-matrix", "plan-jax-cudnn", "plan-b8192", "plan-tf32"]


def test_only_runs_the_steps_named(tmp_path):
    p, out = _run_sh(tmp_path, "--only", "matrix,final-report")
    assert p.returncode == 0, p.stderr
    steps = _steps(out)
    assert steps["matrix"] == "ok" and steps["final-report"] == "ok"
    assert steps["equivalence"] == "not selected (--only)" and steps["b8192"] == "not selected (--only)"
    assert sorted(f.name for f in out.glob("runs-*")) == ["runs-matrix.tar.gz"]


def test_without_out_the_device_path_refuses(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    p = subprocess.run(["bash", str(RUN_SH)], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 2 and "OUT is not set" in p.stderr


# --- the real dry run ------------------------------------------------------------------------
@pytest.mark.slow
def test_dry_run_plans_checks_equivalence_on_cpu_and_reports_a_stored_run(tmp_path):
    """The whole dry run with the real interpreter: ~1.5 min on the 2-core machine."""
    from conftest import load_impl

    load_impl("torch"), load_impl("jax")
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, GPU_WORK=str(tmp_path / "work"))
    p = subprocess.run(["bash", str(RUN_SH), "--dry-run"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    steps = _steps(out)
    assert steps == {s: "ok" for s in ("env", "list", "plan-matrix", "plan-jax-cudnn", "plan-b8192", "plan-tf32",
                                       "equivalence", "skips", "final-report")}, steps
    log = (out / "run.log").read_text()
    assert log.count("torch.default.lstm128.gpu.b128.fp32") == 1 and "jax.cudnn.lstm3x256.gpu.b1024.fp32" in log
    assert "torch.default.cnn_tutorial.gpu.b8192.fp32" in log and "jax.default.lstm512.gpu.b1024.tf32" in log
    checks = json.loads((out / "checks.json").read_text())
    ok = [r for r in checks["logits"] if r["status"] == "ok"]
    assert len(ok) == 8 and max(r["max_abs_diff"] for r in ok) <= 1e-5
    assert {r["reason"] for r in checks["logits"] if r["status"] == "skipped"} == {
        "jax cudnn variant needs a CUDA GPU (jax.experimental.rnn lowers only to cuDNN)"}
    steps_ok = [r for r in checks["adam_step"] if r["status"] == "ok"]
    assert len(steps_ok) == 4 and max(r["max_abs_weight_diff"] for r in steps_ok) <= 1e-5
    assert checks["summary"]["passed"]
    torch_k = checks["kernels"]["torch"]
    assert [r["status"] for r in torch_k] == ["ok"] * 4 and all(r["kernels_seen"] > 10 for r in torch_k), torch_k
    jax_k = {(r.get("variant"), r.get("model")): r["status"] for r in checks["kernels"]["jax"]}
    assert [jax_k[("default", m)] for m in ("lstm128", "lstm512", "lstm3x256", "cnn_tutorial")] == ["ok"] * 4
    assert jax_k[("cudnn", "lstm128")] == "skipped"
    with tarfile.open(out / "runs-skips.tar.gz") as t:
        t.extractall(tmp_path / "skips", filter="data")
    run = next((tmp_path / "skips").iterdir())
    reasons = {r["framework"]: r["reason"] for r in results.read_records(run)}
    assert reasons == {"torch": "no GPU on this machine (nvidia-smi not found)",
                       "tf": "tensorflow, keras not installed: pip install 'lstm-bench[tf]'"}
    report = (out / "report.md").read_text()
    assert "| torch lstm128 cpu b128 | ok | 91.52 @300 |" in report and "## Run 20261124-183240-quick-b790" in report
    assert "| jax:default | cnn_tutorial |" in report
