"""The per-cell self-checks flag fabricated bad measurements and pass good ones."""
from bench import worker
from bench.spec import ZOO, Cell, Protocol, TrainSpec

CELL = Cell("torch", ZOO["lstm128"], TrainSpec(steps=20), protocol=Protocol(warmup_steps=2, repeats=3,
                                                                            steps_per_repeat=4))


def timing(losses, rep_s=(0.1, 0.1, 0.1), total_s=0.3005):
    return {"losses": [2.3, 2.3] + losses, "timed_losses": losses, "rep_s": list(rep_s), "total_s": total_s}


GOOD_MEM = {"rss_delta_train_bytes": 10_000_000, "tensor_peak_bytes": 4_000_000}
FALLING = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2]


def test_a_good_cell_passes():
    assert worker.self_check(CELL, timing(FALLING), GOOD_MEM) == []


def test_rising_loss_is_flagged():
    reasons = worker.self_check(CELL, timing(FALLING[::-1]), GOOD_MEM)
    assert len(reasons) == 1 and "did not decrease" in reasons[0]


def test_non_finite_loss_is_flagged():
    reasons = worker.self_check(CELL, timing(FALLING[:-1] + [float("nan")]), GOOD_MEM)
    assert any("not finite" in r for r in reasons)


def test_timed_total_that_disagrees_with_its_repeats_is_flagged():
    reasons = worker.self_check(CELL, timing(FALLING, total_s=0.40), GOOD_MEM)
    assert any("differs from the sum of its repeats" in r for r in reasons)
    assert worker.self_check(CELL, timing(FALLING, total_s=0.302), GOOD_MEM) == []  # within 1%


def test_missing_memory_figure_is_flagged():
    assert any("memory figure" in r for r in worker.self_check(CELL, timing(FALLING), {}))
    gpu = Cell("torch", ZOO["lstm128"], TrainSpec(steps=20), device="gpu", protocol=CELL.protocol)
    assert any("allocator_peak_bytes" in r for r in worker.self_check(gpu, timing(FALLING), GOOD_MEM))


def test_oom_errors_of_each_framework_are_classified():
    class OutOfMemoryError(RuntimeError):
        pass

    assert worker.classify(OutOfMemoryError("CUDA out of memory. Tried to allocate")) == "oom"
    assert worker.classify(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")) == "oom"
    assert worker.classify(MemoryError()) == "oom"
    assert worker.classify(ValueError("shapes do not match")) == "failed"
