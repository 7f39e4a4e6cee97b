"""The worker's GPU and --strict paths, exercised on a CPU machine through a numpy test double
(tests/fake_impl.py): allocator figures become the measured memory, no CPU calibration runs,
a missing fast path fails a strict cell, a framework that sees no GPU skips the cell."""
import pytest

from bench.records import pool
from bench import registry, worker
from bench.records.record import BUSY_PREFIX
from bench.workers.job import Job
from bench.spec import ZOO, Cell, Protocol, TrainSpec

import fake_impl


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    info = registry.FrameworkInfo("fake", "fake_impl", ("numpy",), "fake", "Fake", (("default", "double"),))
    monkeypatch.setitem(registry.FRAMEWORKS, "fake", info)
    monkeypatch.setattr(fake_impl, "STATE", {"gpu": True, "fast_path": True})


def job(device="gpu", strict=False):
    cell = Cell("fake", ZOO["cnn_small"], TrainSpec(batch_size=16, steps=12), device=device, strict=strict,
                protocol=Protocol(warmup_steps=2, repeats=3, steps_per_repeat=3, test_samples=64, memory_steps=2))
    return Job(cell, run_dir="unused", run_id="t", data=None)


def test_gpu_cell_uses_allocator_peak_and_no_cpu_calibration():
    rec = worker.run_job(job())
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["memory"]["allocator_peak_bytes"] == 1_000_000 + 16_000
    assert rec["analytic"]["calibration_gflops"] is None and rec["analytic"]["pct_of_achievable"] is None
    # Derived when read, not stored by the worker: the figure judged and its ratio to the floor.
    assert "measured_memory_bytes" not in rec["analytic"] and "memory_over_floor" not in rec["analytic"]
    read = pool.pool_cell([rec])["analytic"]
    assert read["measured_memory_bytes"] == 1_016_000 and read["measured_memory_source"] == "allocator peak"
    assert read["memory_over_floor"] == pytest.approx(1_016_000 / rec["analytic"]["train_floor_bytes"])
    # every self-check passes but the busy-machine one, which depends on what else runs here
    assert not [r for r in rec["self_check"]["reasons"] if not r.startswith(BUSY_PREFIX)] and rec["threads"] == 0
    assert len(rec["losses"]) == 12 and rec["metrics"]["test_samples"] == 64


def test_strict_fails_a_cell_whose_fast_path_did_not_run():
    fake_impl.STATE["fast_path"] = False
    rec = worker.run_job(job(strict=True))
    assert rec["status"] == "failed" and "fast path did not run: fake: no fast path" in rec["reason"]
    rec = worker.run_job(job(strict=False))
    assert rec["status"] == "ok" and rec["fast_path"] is False and rec["fast_path_note"]


def test_framework_that_sees_no_gpu_skips_the_cell():
    fake_impl.STATE["gpu"] = False
    rec = worker.run_job(job())
    assert rec["status"] == "skipped" and rec["reason"] == "fake sees no GPU in this process"
