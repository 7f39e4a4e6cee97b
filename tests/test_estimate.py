"""The run-time estimate: from this machine's own earlier records where it has them."""
from __future__ import annotations

import pytest

from bench.runner import estimate
from bench.records import results
from bench.runner.plan import Selection, plan


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
    # the work grows by the sgemm gap beyond one host's own spread; the overhead stays
    assert slower - same == pytest.approx((2.0 / estimate.SGEMM_SAME_HOST - 1.0) * (800 * 0.020 + 1.0))
    assert faster == pytest.approx(same)  # never scaled down
    assert estimate.estimate(cells(steps=800), 190.0, pri).seconds == pytest.approx(same)  # within one host's spread


def test_the_newest_record_is_the_newest_by_its_clock_not_by_its_run_id():
    # A committed baseline's run id ("quick-all-2") sorts after every dated one; it must not
    # hide the run this machine made since.
    old = {**record(step_ms=50.0, run_id="quick-all-2"), "env": {"machine_id": "m1", "utc": "2026-11-24T07:14:20Z"}}
    new = {**record(step_ms=20.0, run_id="20261203-130836-full-0662"),
           "env": {"machine_id": "m1", "utc": "2026-12-03T13:09:00Z"}}
    for recs in ([old, new], [new, old]):
        pri = estimate.priors(recs, "m1")
        assert pri[estimate.cell_ident(cells()[0])][0].step_s == pytest.approx(0.020)


def test_this_machines_own_runs_are_read_and_the_committed_baselines_are_not(tmp_path):
    for run in (tmp_path / "r1", tmp_path / "baselines" / "b1"):
        results.write_manifest(run, {"run_id": run.name})
    results.write_record(tmp_path / "r1", {**record(step_ms=20.0), "key": "k1"})
    results.write_record(tmp_path / "baselines" / "b1", {**record(step_ms=50.0, run_id="b1"), "key": "k1"})
    pri = estimate.load_priors(tmp_path, "m1")
    assert pri[estimate.cell_ident(cells()[0])][0].step_s == pytest.approx(0.020)
    assert not estimate.load_priors(tmp_path, "m2")


def test_the_asked_for_profile_and_more_timed_steps_come_before_the_newest():
    def rec(profile, repeats, steps_per_repeat, step_ms, utc):
        r = {**record(step_ms=step_ms), "profile": profile, "env": {"machine_id": "m1", "utc": utc}}
        r["cell"] = {"protocol": {"warmup_steps": 5, "memory_steps": 3, "repeats": repeats,
                                  "steps_per_repeat": steps_per_repeat}}
        return r
    claim = rec("claim", 3, 2, 50.0, "2026-12-03T10:00:00Z")  # newest, but 6 cold timed steps
    quick = rec("quick", 5, 40, 20.0, "2026-12-01T10:00:00Z")
    full = rec("full", 10, 50, 30.0, "2026-11-30T10:00:00Z")
    ident = estimate.cell_ident(cells()[0])
    assert estimate.priors([claim, quick, full], "m1", "full")[ident][0].step_s == pytest.approx(0.030)
    assert estimate.priors([claim, quick, full], "m1", "ci")[ident][0].step_s == pytest.approx(0.030)  # most timed steps
    assert estimate.priors([claim, quick], "m1", "ci")[ident][0].step_s == pytest.approx(0.020)


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


def test_a_records_evaluations_during_training_are_not_counted_as_its_overhead():
    # 300 steps x 20 ms, and 1 + 19 evaluations of 10,000 images at 10,000/s (every 15 steps)
    r = record(wall=30.0)
    r["cell"] = {"protocol": {"warmup_steps": 5, "memory_steps": 3, "eval_every_steps": 15}}
    (p,) = estimate.priors([r], "m1")[estimate.cell_ident(cells()[0])]
    assert p.overhead_s == pytest.approx(30.0 - 6.0 - 20.0)


def test_a_busy_sgemm_reading_scales_no_record_and_the_line_says_so():
    rec = record()
    rec["analytic"] = {"calibration_gflops": 200.0}
    pri = estimate.priors([rec], "m1")
    same = estimate.estimate(cells(steps=800), 200.0, pri)
    low = estimate.estimate(cells(steps=800), 100.0, pri)
    busy = estimate.estimate(cells(steps=800), 100.0, pri, sgemm_busy="machine busy: ...")
    assert (same.scaled, low.scaled, busy.scaled) == (0, 1, 0)
    assert busy.seconds == pytest.approx(same.seconds) and same.seconds < low.seconds
    assert "1 of them scaled up to the 100 GFLOP/s" in low.describe(100.0)
    assert "records not scaled: machine busy" in busy.describe(100.0)
