"""bench.records.pool: a cell's process records pooled over processes (never over repeats thrown
together), on records whose pooled figures are known by hand."""
from __future__ import annotations

import math

import pytest

from bench.records import pool


def proc(round_: int, rate: float, acc: float, rss: float | None, tensor: int | None, mode: str = "full",
         status: str = "ok", device: str = "cpu") -> dict:
    r = {"key": "torch.lstm128", "round": round_, "mode": mode, "status": status, "device": device,
         "metrics": {"train_samples_per_s": {"median": rate, "values": [rate - 1, rate, rate + 1]},
                     "infer_samples_per_s": {"median": 10 * rate}, "step_ms": {"median": 1000 / rate if rate else None},
                     "test_accuracy": acc},
         "memory": {}, "analytic": {"train_floor_bytes": 4_000_000}}
    if rss is not None:
        r["memory"]["rss_delta_train_bytes"] = rss
    if tensor is not None:
        r["memory"]["tensor_peak_bytes"] = tensor
    return r


def test_rounds_pool_to_the_median_of_per_process_medians_with_known_figures():
    procs = [proc(0, 100.0, 0.90, 100e6, 8_000_000), proc(1, 130.0, 0.92, 120e6, 8_000_000),
             proc(2, 110.0, 0.94, 110e6, 8_080_000), proc(1, 0, 0, 130e6, None, mode="memory"),
             proc(3, 0, 0, None, None, status="failed")]
    p = pool.pool_cell(procs)
    assert p["round"] == 0 and p["rounds"] == {"full": 3, "memory": 1, "failed": 1}
    tr = p["metrics"]["train_samples_per_s"]
    # values in process order; quartiles by linear interpolation over 100, 110, 130
    assert (tr["median"], tr["q1"], tr["q3"], tr["iqr"], tr["values"], tr["per_process"]) == \
        (110.0, 105.0, 120.0, 15.0, [100.0, 130.0, 110.0], True)
    assert p["metrics"]["infer_samples_per_s"]["median"] == 1100.0
    assert p["metrics"]["step_ms"]["median"] == pytest.approx(1000 / 110)
    assert p["metrics"]["test_accuracy"] == pytest.approx(0.92)
    assert p["metrics"]["test_accuracy_sd"] == pytest.approx(0.02)
    assert p["metrics"]["test_accuracy_values"] == [0.90, 0.92, 0.94]
    m = p["memory"]
    # RSS over every ok process, memory-only rounds included: median of 100, 120, 110, 130 MB
    assert m["rss_delta_train_bytes"] == 115_000_000 and m["rss_delta_rounds_bytes"] == [100e6, 120e6, 110e6, 130e6]
    assert m["rss_delta_spread"] == pytest.approx(30 / 115)
    assert (m["tensor_peak_bytes"], m["tensor_peak_rounds_bytes"]) == (8_000_000, [8_000_000, 8_000_000, 8_080_000])
    assert m["tensor_spread"] == pytest.approx(0.01)
    a = p["analytic"]
    assert (a["measured_memory_bytes"], a["measured_memory_source"], a["memory_over_floor"]) == \
        (8_000_000, "tensor-level", 2.0)
    assert a["rss_over_floor"] == pytest.approx(28.75)
    assert procs[0]["metrics"]["train_samples_per_s"]["median"] == 100.0  # the inputs are left alone


def test_one_process_keeps_its_own_repeats_and_accuracy():
    p = pool.pool_cell([proc(0, 100.0, 0.9, 50e6, None)])
    assert p["metrics"]["train_samples_per_s"] == {"median": 100.0, "values": [99.0, 100.0, 101.0]}
    assert "test_accuracy_sd" not in p["metrics"] and p["rounds"] == {"full": 1, "memory": 0, "failed": 0}
    # no tensor-level figure on CPU: judged on RSS growth
    assert (p["analytic"]["measured_memory_bytes"], p["analytic"]["measured_memory_source"]) == \
        (50_000_000, "RSS growth")
    assert p["analytic"]["memory_over_floor"] == 12.5 and p["memory"]["rss_delta_spread"] == 0.0


def test_the_base_is_the_earliest_ok_full_round_and_a_cell_with_none_is_not_pooled():
    p = pool.pool_cell([proc(0, 0, 0, None, None, status="timeout"), proc(2, 90.0, 0.8, None, 1),
                        proc(1, 80.0, 0.7, None, 1)])
    assert p["round"] == 1 and p["rounds"] == {"full": 2, "memory": 0, "failed": 1}
    assert p["metrics"]["train_samples_per_s"]["median"] == 85.0
    bad = pool.pool_cell([proc(1, 0, 0, 5e6, None, status="oom"), proc(0, 0, 0, 7e6, None, status="failed")])
    assert bad["status"] == "failed" and bad["round"] == 0 and bad["rounds"] == {"full": 0, "memory": 0, "failed": 2}
    assert "measured_memory_bytes" not in bad["analytic"]


def test_measured_memory_is_the_allocator_on_gpu_and_tensor_level_before_rss_on_cpu():
    gpu = proc(0, 1, 1, 9e6, 5, device="gpu")
    gpu["memory"]["allocator_peak_bytes"] = 123
    assert pool.measured_memory(gpu) == (123, "allocator peak")
    assert pool.measured_memory(proc(0, 1, 1, 9e6, 5)) == (5, "tensor-level")
    assert pool.measured_memory(proc(0, 1, 1, 9e6, None)) == (9_000_000, "RSS growth")
    assert pool.measured_memory({"device": "cpu"}) == (None, "RSS growth")


def test_pool_records_one_per_key_in_first_seen_order_and_group_rounds_by_mode():
    a0, b0, a1, am = proc(0, 10, 0.5, None, None), proc(0, 20, 0.5, None, None), proc(1, 30, 0.5, None, None), \
        proc(1, 0, 0, 1e6, None, mode="memory")
    b0["key"] = "b"
    pooled = pool.pool_records([a0, b0, a1, am])
    assert [p["key"] for p in pooled] == ["torch.lstm128", "b"]
    assert pooled[0]["metrics"]["train_samples_per_s"]["median"] == 20.0
    assert pool.group_rounds([a0, b0, a1, am]) == {"torch.lstm128": {0: a0, 1: a1}, "b": {0: b0}}
    assert pool.group_rounds([a0, b0, a1, am], "memory") == {"torch.lstm128": {1: am}}
    assert math.isclose(pooled[0]["memory"]["rss_delta_train_bytes"], 1e6)
