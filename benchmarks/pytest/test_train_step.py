"""Time one framework's training step, driven only through the Trainer protocol (impls/base.py).

One benchmark per framework x model, named
`test_train_step[<fw>-<model>-<device>-b<batch>-<steps>steps]` (plus `-t<threads>` when
--lstm-threads is set): pytest-benchmark matches a saved run by this full name, so
`--benchmark-compare-fail=min:10%` only ever compares the same framework, model, device, batch,
steps per round (and thread count) with itself. Grouped by model, so a table compares frameworks.

A round is --lstm-steps training steps on batches staged beforehand, ending with
trainer.sync(): torch on GPU, TF and JAX queue work asynchronously, and a round that did not
wait for it would time the queueing. Building the model, the first (compiling) step and a
warm-up round happen before any timed round; each round's setup syncs, so nothing queued by
the previous round spills into the next one's time.
"""
from __future__ import annotations

import math
from typing import Any

import pytest

from bench import reference, registry
from bench.runner.side import Side  # noqa: E402
from bench.envinfo import REPO_ROOT as ROOT
from bench.spec import TrainSpec, get_model

MODELS = ("lstm128", "cnn_small")
BATCH = 128
SEED = 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    opt = metafunc.config.option
    # A round's time scales with its steps, so the step count is part of the name: a baseline
    # saved with other --lstm-steps is then never compared with this run's rounds.
    tail = f"-b{BATCH}-{opt.lstm_steps}steps" + (f"-t{opt.lstm_threads}" if opt.lstm_threads else "")
    cases = [(fw, model) for model in MODELS for fw in registry.FRAMEWORKS]
    metafunc.parametrize("case", cases, ids=[f"{fw}-{m}-{opt.lstm_device}{tail}" for fw, m in cases])


def test_train_step(benchmark: Any, case: tuple[str, str], mnist: Any, request: pytest.FixtureRequest) -> None:
    framework, model_name = case
    opt = request.config.option
    why = registry.unavailable_reason(framework)
    if why:
        pytest.skip(why)
    from impls.base import Unsupported  # imports no framework

    impl = registry.load(framework)
    if opt.lstm_device == "gpu" and not impl.gpu_available():
        pytest.skip(f"{framework} sees no GPU in this process")
    model, steps = get_model(model_name), opt.lstm_steps
    try:
        trainer = impl.build(model, TrainSpec(batch_size=BATCH, seed=SEED), opt.lstm_device, "fp32", "default",
                             opt.lstm_threads)
    except Unsupported as e:
        pytest.skip(str(e))
    trainer.set_weights(reference.init_weights(model, SEED))
    # Batches staged once, outside every round (the harness's protocol: data on the device before timing).
    staged = [trainer.stage(*mnist.train_batch(SEED, s, BATCH)) for s in range(steps)]
    trainer.train_step(staged[0])  # tracing / XLA compilation / allocator warm-up: never timed
    trainer.sync()

    def setup() -> None:  # untimed, before every round
        trainer.sync()

    def round_() -> Any:
        loss = None
        for b in staged:
            loss = trainer.train_step(b)
        trainer.sync()
        return loss

    benchmark.group = model_name
    samples = steps * BATCH
    benchmark.extra_info.update({
        "framework": framework, "variant": "default", "model": model_name, "device": opt.lstm_device,
        "batch": BATCH, "steps_per_round": steps, "samples_per_round": samples, "threads": opt.lstm_threads,
        "precision": "fp32", "precision_applied": trainer.precision_applied, "kernel": trainer.kernel,
        "framework_versions": impl.versions(),
    })
    # Disabled (--benchmark-disable, the test suite's default): one untimed round, no warm-up.
    loss = benchmark.pedantic(round_, setup=setup, rounds=opt.lstm_rounds, warmup_rounds=1)
    assert math.isfinite(trainer.loss_value(loss)), "training loss is not finite"
    if benchmark.enabled and benchmark.stats is not None:
        # The best round as a throughput, the figure `bench` tables use (samples/s).
        benchmark.extra_info["train_samples_per_s_at_min"] = samples / benchmark.stats.stats.min
    if opt.lstm_counts and opt.lstm_device == "cpu":
        benchmark.extra_info.update(instruction_counts(framework, model, request))


def instruction_counts(framework: str, model: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """--lstm-counts: the case's instructions per training step, counted in a process of its own
    under valgrind (bench.counts; one thread, as counts always run), or why it was not."""
    from bench import counts
    from bench.spec import Cell

    cell = Cell(framework, model, TrainSpec(batch_size=BATCH, seed=SEED), threads=1)
    reason = counts.unavailable_reason()
    if reason:
        return {"counts_skipped": reason}
    work = request.config.cache.mkdir(f"lstm-counts-{framework}-{model.name}")
    got = counts.count(cell, Side(code_root=ROOT), work, timeout_s=4 * counts.BUDGET_S)
    if got["status"] != "ok":
        return {"counts_skipped": f"{got['status']}: {got.get('reason')}"}
    return {k: got[k] for k in ("instructions_per_step", "counted_steps", "valgrind_version", "cpu_features_seen")}
