"""One worker process, started and watched for real on the numpy test double (tests/fake_impl.py):
its record filed under the round, mode and CPUs the runner gave it; a crash, a timeout and a job
of an unknown version each filed as a record that says what happened."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench import envinfo, registry
from bench.workers import process
from bench.records import results
from bench.records.run import Run
from bench.workers.job import EXIT_REFUSED, JOB_VERSION, REFUSED, Job, JobRefused
from bench.spec import ZOO, Cell, Protocol, TrainSpec

ROOT = Path(__file__).resolve().parent.parent
CELL = Cell("fake", ZOO["cnn_small"], TrainSpec(batch_size=16, steps=12), threads=1,
            protocol=Protocol(warmup_steps=2, repeats=3, steps_per_repeat=3, test_samples=64, memory_steps=2))


@pytest.fixture(autouse=True)
def fake_in_children(monkeypatch):
    """The workers started here list the test double (worker_env copies this environment)."""
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    monkeypatch.delenv("LSTM_BENCH_FAULT", raising=False)


def job(run_dir: Path, **kw) -> Job:
    return Job(CELL, run_dir=str(run_dir), run_id="p", **kw)


def test_job_json_round_trips_and_keeps_the_keys_every_worker_reads(tmp_path):
    j = job(tmp_path, round=2, mode="memory", cpus=(0,))
    d = j.to_dict()
    assert {"cell", "run_dir", "run_id", "data", "round", "mode"} <= d.keys()  # what older workers read
    assert d["job_version"] == JOB_VERSION and d["cpus"] == [0]
    assert Job.from_dict(json.loads(json.dumps(d))) == j
    assert "cpus" not in job(tmp_path).to_dict()
    with pytest.raises(JobRefused, match="job version 99 is unknown"):
        Job.from_dict({**d, "job_version": 99})


@pytest.mark.slow
def test_an_ok_worker_is_filed_under_its_round_mode_and_cpus(tmp_path):
    cpu = sorted(os.sched_getaffinity(0))[:1]
    seen: list[str] = []
    out = process.run_cell(job(tmp_path, round=1, mode="memory", cpus=tuple(cpu)), Run.bare(tmp_path), ROOT,
                           process.Watch(120, lambda key, phase: seen.append(phase)))
    assert (out.key, out.status, out.reason) == (CELL.key, "ok", "")
    rec = results.read_json(results.cell_path(tmp_path, CELL.key, 1, "memory"), results.RECORD_SCHEMA)
    assert (rec["round"], rec["mode"], rec["cpus"], rec["kernel"]) == (1, "memory", cpu, "fake-kernel")
    assert "metrics" not in rec and rec["memory"]["rss_before_model_bytes"] > 0  # a memory-only process
    assert seen == ["memory 2/2"]  # its progress line reached the watcher
    assert not (tmp_path / "staging" / results.cell_path(tmp_path, CELL.key, 1, "memory").stem).exists()


@pytest.mark.slow
def test_a_worker_that_crashes_is_a_failed_record_with_its_stderr_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_BENCH_FAULT", "crash:cnn_small")
    out = process.run_cell(job(tmp_path), Run.bare(tmp_path), ROOT, process.Watch(120))
    assert out.status == "failed" and out.reason == "worker exited with code -6 without a record"
    rec = results.read_json(results.cell_path(tmp_path, CELL.key), results.RECORD_SCHEMA)
    assert rec["status"] == "failed" and rec["error_tail"][-1] == "injected crash (LSTM_BENCH_FAULT)"
    assert rec["key"] == CELL.key and rec["run_id"] == "p" and rec["cell"] == CELL.to_dict()


@pytest.mark.slow
def test_a_worker_past_its_timeout_is_killed_and_recorded_as_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_BENCH_FAULT", "slow:cnn_small:5")  # 12 steps of 5 s: far past 1 s
    rec = process.run_worker(job(tmp_path / "stage"), tmp_path / "job.json", process.Watch(1.0),
                             process.worker_env(CELL), ROOT)
    assert rec["status"] == "timeout" and rec["reason"] == "no record after the 1s cell timeout"


@pytest.mark.slow
def test_a_job_of_an_unknown_version_is_refused_in_one_line_and_filed_as_failed(tmp_path):
    future = replace(job(tmp_path / "stage"), version=99)
    rec = process.run_worker(future, tmp_path / "job.json", process.Watch(120), process.worker_env(CELL), ROOT)
    assert rec["status"] == "failed" and rec["reason"] == "job version 99 is unknown to this worker (it reads 1)"
    # The worker itself: one line on its protocol channel, nothing measured, exit 2.
    p = subprocess.run([sys.executable, "-m", "bench.worker", str(tmp_path / "job.json")], capture_output=True,
                       text=True, cwd=ROOT, env=process.worker_env(CELL), timeout=120)
    assert p.returncode == EXIT_REFUSED and p.stdout == f"{REFUSED} {rec['reason']}\n" and p.stderr == ""
    assert not (tmp_path / "stage").exists()


def test_a_cell_that_cannot_start_here_says_why(monkeypatch):
    monkeypatch.setitem(registry.FRAMEWORKS, "ghost", registry.FrameworkInfo(
        "ghost", "impls.ghost_impl", ("no_such_package_xyz",), "ghost", "Ghost", (("default", "never"),)))
    ghost = replace(CELL, framework="ghost")
    assert process.pre_skip_reason(ghost) == "no_such_package_xyz not installed: pip install 'lstm-bench[ghost]'"
    monkeypatch.setitem(registry.FRAMEWORKS, "fake", registry.FrameworkInfo(
        "fake", "tests.fake_impl", ("numpy",), "fake", "Fake", (("default", "double"),)))
    assert process.pre_skip_reason(CELL) is None
    assert process.pre_skip_reason(replace(CELL, device="gpu", threads=0)) == envinfo.gpu_absent_reason()


def test_worker_env_sets_threads_and_puts_the_code_root_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = process.worker_env(replace(CELL, framework="jax", threads=3), tmp_path)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["PJRT_NPROC"] == "3"
    assert env["PYTHONPATH"] == f"{tmp_path}{os.pathsep}/elsewhere"
    assert env["NVIDIA_TF32_OVERRIDE"] == "0" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
