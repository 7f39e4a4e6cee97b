"""The run-time estimate: from this machine's own earlier records where it has them."""
from __future__ import annotations

import pytest

from bench import estimate, results
from bench.plan import Selection, plan


def record(model="lstm128", batch=128, step_ms=20.0, infer=10_000.0, steps=300, test=10_000, wall=30.0,
           machine="m1", mode="full", status="ok", run_id="r1"):
    return {"framework": "torch", "variant": "default", "model": model, "device": "cpu", "threads": 2,
            "precision": "fp32", "batch_size": batch, "status": status, "mode": mode, "run_id": run_id,
            "wall_s": wall, "env": {"machine_id": machine},
            "cell": {"protocol": {"warmup_steps": 5, "memory_steps": 3}},
            "metrics": {"step_ms": {"median": step_ms}, "infer_samples_per_s": {"median": infer},
                        "trained_steps": steps, "test_samples": test} if mode == "full" else {}}


def cells(steps=None, batch=(128,), model="lstm128"):
    sel = Selection(frameworks=("torch",), models=(model,), devices=("cpu",), threads=2, steps=steps,
                    batch_sizes=batch)
    return plan(sel)


def test_a_measured_cell_is_estimated_from_its_record():
    # 300 steps x 20 ms + 10,000 images at 10,000/s = 7 s of work in a 30 s process: 23 s overhead
    pri = estimate.priors([record()], "m1")
    est = estimate.estimate(cells(steps=800), 100.0, pri)
    assert est.from_records == 1 and est.from_flops == 0
    assert est.seconds == pytest.approx(23.0 + 800 * 0.020 + 1.0)


def test_batch_scaling_uses_the_nearest_measured_batch():
    pri = estimate.priors([record(batch=128, step_ms=20.0), record(batch=1024, step_ms=100.0, run_id="r0")], "m1")
    near = estimate.nearest(pri[estimate.cell_ident(cells()[0])], 900)
    assert near.batch_size == 1024


def test_other_machines_failed_records_and_memory_processes():
    pri = estimate.priors([record(machine="m2"), record(status="failed")], "m1")
    est = estimate.estimate(cells(), 100.0, pri)
    assert est.from_records == 0 and est.from_flops == 1
    pri = estimate.priors([record(), record(mode="memory", wall=10.0)], "m1")
    one = estimate.estimate(cells(), 100.0, pri)
    two = estimate.estimate(cells(), 100.0, pri, memory_processes=2)
    assert two.seconds - one.seconds == pytest.approx(2 * 10.0)  # same warm-up + memory steps as recorded
    # run two at once (schedule.Rounds.memory_jobs): a CPU cell's memory processes share the time
    paired = estimate.estimate(cells(), 100.0, pri, memory_processes=2, memory_jobs=2)
    assert paired.seconds - one.seconds == pytest.approx(10.0)


def test_newest_record_wins_and_evaluations_are_counted():
    pri = estimate.priors([record(step_ms=50.0, run_id="r1"), record(step_ms=20.0, run_id="r2")], "m1")
    assert pri[estimate.cell_ident(cells()[0])][0].step_s == pytest.approx(0.020)
    sel = Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=2,
                    target_accuracy=0.9)
    (c,) = plan(sel)
    base = estimate.estimate(cells(), 100.0, pri).seconds
    assert estimate.estimate([c], 100.0, pri).seconds == pytest.approx(base + estimate.evaluations(c) * 1.0)
    assert estimate.evaluations(c) == 19  # every 15 of 300 steps, the last one being the final evaluation


def test_a_corrupt_run_does_not_stop_the_estimate(tmp_path):
    run = tmp_path / "bad"
    (run / "cells").mkdir(parents=True)
    (run / "manifest.json").write_text("{not json")
    assert estimate.load_priors(tmp_path, "m1") == {}
    assert results.list_runs(tmp_path) == [run]


def test_a_record_from_a_faster_host_is_scaled_by_the_sgemm_rates():
    rec = record()
    rec["analytic"] = {"calibration_gflops": 200.0}
    pri = estimate.priors([rec], "m1")
    same = estimate.estimate(cells(steps=800), 200.0, pri).seconds
    slower = estimate.estimate(cells(steps=800), 100.0, pri).seconds  # half the sgemm rate now
    faster = estimate.estimate(cells(steps=800), 400.0, pri).seconds
    assert same == pytest.approx(23.0 + 800 * 0.020 + 1.0)
    assert slower - same == pytest.approx(800 * 0.020 + 1.0)  # the work doubles, the overhead stays
    assert faster == pytest.approx(same)  # never scaled down


def test_committed_baselines_of_this_machine_are_read(tmp_path):
    run = tmp_path / "baselines" / "b1"
    results.write_manifest(run, {"run_id": "b1"})
    results.write_record(run, {**record(), "key": "k1"})
    assert estimate.load_priors(tmp_path, "m1")
    assert not estimate.load_priors(tmp_path, "m2")


def test_the_runners_process_wall_time_is_preferred_to_the_workers():
    # The worker's wall_s leaves out interpreter start and imports; process_wall_s (the runner's
    # view) has them, so a record with both is estimated from the larger, whole-process figure.
    r = {**record(wall=30.0), "process_wall_s": 34.0}
    m = {**record(mode="memory", wall=10.0), "process_wall_s": 12.5}
    pri = estimate.priors([r, m], "m1")
    one = estimate.estimate(cells(steps=800), 100.0, pri)
    assert one.seconds == pytest.approx(27.0 + 800 * 0.020 + 1.0)
    two = estimate.estimate(cells(steps=800), 100.0, pri, memory_processes=1)
    assert two.seconds - one.seconds == pytest.approx(12.5)


def test_a_cell_never_measured_here_costs_its_flops_plus_fixed_costs_per_step_and_process():
    from bench import analytic

    (c,) = cells(steps=800)
    cost, fb = analytic.cost(c.model), estimate.FALLBACK_COST["torch"]
    rate = 100.0 * estimate.FLOP_FRACTION * 1e9
    step_s = c.train.batch_size * cost.train_flops_per_sample / rate + fb.step_overhead_s
    full = fb.startup_s + 800 * step_s + c.protocol.test_samples * cost.forward_flops_per_sample / rate
    est = estimate.estimate([c], 100.0, {})
    assert est.from_flops == 1 and est.seconds == pytest.approx(full)
    mem_steps = c.protocol.warmup_steps + c.protocol.memory_steps
    two = estimate.estimate([c], 100.0, {}, memory_processes=2, memory_jobs=2)
    assert two.seconds - est.seconds == pytest.approx(fb.memory_startup_s + mem_steps * step_s)
    # twice the sgemm rate halves the arithmetic only, not the fixed costs
    fast = estimate.estimate([c], 200.0, {}).seconds
    assert fast == pytest.approx(full - 800 * (step_s - fb.step_overhead_s) / 2
                                 - c.protocol.test_samples * cost.forward_flops_per_sample / rate / 2)
