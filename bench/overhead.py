"""Harness overhead: the harness's timed window and a bare hand-written loop of the same
model, side by side in one process, interleaved A B B A ... so drift and noise hit both alike.

`python -m bench overhead` starts several processes per framework (`python -m bench.overhead JOB`)
and prints harness samples/s, bare samples/s and their ratio (target >= 0.97) with a confidence
interval over processes. The process is the unit: two compiled programs in one process keep the
buffer and thread layout that process happened to get, so the same comparison read 0.91x to
1.08x in 8 processes of the same code (JAX lstm128, 2026-12-02). One process cannot tell a
harness tax from that lottery; several processes, each a paired sample, can bound it.
The bare loops are fixed code (torch eager, TF tf.function(jit_compile=True), JAX jit): pass the
harness variant that runs the same computation (`--variant xla` for TF) to time the harness
itself rather than a choice between variants.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from . import data, envinfo, measure, reference, registry
from .records import results
from .decide import stats
from .workers.job import EXIT_REFUSED, REFUSED, JobRefused, read_child_job, read_result, write_child_job, write_result
from .workers.process import worker_env
from .spec import Cell, Protocol, TrainSpec, get_model


@dataclass(frozen=True)
class Setup:
    """What every overhead process measures, whatever its framework (its job file adds the
    framework's name)."""

    model: str
    batch_size: int
    threads: int
    rounds: int  # interleaved rounds per process
    steps: int  # steps per timed window
    variant: str = "default"


@dataclass(frozen=True)
class OverheadResult:
    framework: str
    model: str
    batch_size: int
    threads: int
    harness_samples_per_s: tuple[float, ...]
    bare_samples_per_s: tuple[float, ...]
    # The harness's own Trainer.train_step called in a plain loop with one sync at the end:
    # harness / this isolates the measurement machinery; this / bare is the implementation.
    step_loop_samples_per_s: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        h = measure.summarize(self.harness_samples_per_s).median
        b = measure.summarize(self.bare_samples_per_s).median
        return h / b

    @property
    def machinery_ratio(self) -> float:
        h = measure.summarize(self.harness_samples_per_s).median
        return h / measure.summarize(self.step_loop_samples_per_s).median

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "model": self.model, "batch_size": self.batch_size,
                "threads": self.threads, "harness_samples_per_s": list(self.harness_samples_per_s),
                "bare_samples_per_s": list(self.bare_samples_per_s),
                "step_loop_samples_per_s": list(self.step_loop_samples_per_s), "ratio": self.ratio,
                "machinery_ratio": self.machinery_ratio}


def measure_overhead(framework: str, setup: Setup) -> OverheadResult:
    from impls.bare import LOOPS

    from .worker import timed_window

    model_name, batch_size, threads, rounds, steps = (setup.model, setup.batch_size, setup.threads, setup.rounds,
                                                      setup.steps)
    model = get_model(model_name)
    train = TrainSpec(batch_size=batch_size, steps=10_000)
    ds = data.load()
    batches = [ds.train_batch(train.seed, s, batch_size) for s in range(steps)]
    impl = registry.load(framework)
    trainer = impl.build(model, train, "cpu", "fp32", setup.variant, threads)
    trainer.set_weights(reference.init_weights(model, train.seed))
    staged = [trainer.stage(x, y) for x, y in batches]
    bare = LOOPS[framework](model, train, threads, batches)
    # Warm both up (compilation, allocator) before anything is timed.
    timed_window(trainer, staged, 1, min(5, steps), trainer.train_step)
    bare(min(5, steps))
    def step_loop(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            trainer.train_step(staged[i])
        trainer.sync()
        return time.perf_counter() - t0

    harness, plain, loop = [], [], []
    for r in range(rounds):
        order = ("h", "b", "s") if r % 2 == 0 else ("s", "b", "h")
        for who in order:
            if who == "h":
                rep_s, _, _ = timed_window(trainer, staged, 1, steps, trainer.train_step)
                harness.append(steps * batch_size / rep_s[0])
            elif who == "b":
                plain.append(steps * batch_size / bare(steps))
            else:
                loop.append(steps * batch_size / step_loop(steps))
    return OverheadResult(framework, model_name, batch_size, threads, tuple(harness), tuple(plain), tuple(loop))


TARGET_RATIO = 0.97  # issue 13: the harness step >= 0.97x the fastest hand-written loop


def process_ratio_ci(per_process: list[dict[str, Any]], head_key: str = "harness_samples_per_s",
                     base_key: str = "bare_samples_per_s") -> stats.RatioEstimate:
    """head/base over processes: each process's median of its interleaved rounds is one paired
    sample (both loops ran in that process, under its layout and its noise)."""
    base = [measure.summarize(p[base_key]).median for p in per_process]
    head = [measure.summarize(p[head_key]).median for p in per_process]
    return stats.ratio_ci(base, head, paired=True)


def goal_verdict(est: stats.RatioEstimate, target: float = TARGET_RATIO) -> str:
    """'meets' when the whole interval is at or above the target, 'misses' when it is all below,
    'cannot tell' otherwise (the spread is too large for this many processes)."""
    if est.lo >= target:
        return "meets"
    if est.hi < target:
        return "misses"
    return "cannot tell"


def summarize_framework(framework: str, model: str, per_process: list[dict[str, Any]]) -> dict[str, Any]:
    """One framework's entry: the raw per-process results and the two ratios with their intervals."""
    ratio = process_ratio_ci(per_process)
    machinery = process_ratio_ci(per_process, base_key="step_loop_samples_per_s")
    return {"framework": framework, "model": model, "processes": per_process,
            "harness_over_bare": ratio.to_dict(), "verdict": goal_verdict(ratio),
            "harness_over_own_step": machinery.to_dict(), "target": TARGET_RATIO}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        job = read_child_job(Path(argv[0]), "overhead")
    except JobRefused as e:
        print(f"{REFUSED} {e}", file=sys.stderr)
        return EXIT_REFUSED
    fields = {k: v for k, v in job.items() if k not in ("job_version", "kind", "out")}
    res = measure_overhead(fields.pop("framework"), Setup(**fields))
    write_result(job, res.to_dict())
    return 0


def run_all(frameworks: tuple[str, ...], setup: Setup, out_dir: Path, processes: int = 5,
            progress: Callable[[str, int, int], None] | None = None) -> list[dict[str, Any]]:
    """`processes` subprocesses per framework, one after the other (thread settings must precede
    the framework's import); a framework whose process fails is reported, not retried."""
    model, threads, variant = setup.model, setup.threads, setup.variant
    out = []
    for fw in frameworks:
        why = registry.unavailable_reason(fw)
        if why:
            out.append({"framework": fw, "model": model, "skipped": why})
            continue
        cell = Cell(fw, get_model(model), TrainSpec(batch_size=setup.batch_size, steps=10_000), threads=threads,
                    protocol=Protocol(), variant=variant)
        per_process: list[dict[str, Any]] = []
        failed = ""
        with tempfile.TemporaryDirectory(prefix="lstm-bench-overhead-") as tmp:
            job_path, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
            write_child_job(job_path, "overhead", {"framework": fw, **asdict(setup)}, out)  # the same for each process
            for i in range(processes):
                if progress is not None:
                    progress(fw, i, processes)
                out.unlink(missing_ok=True)
                p = subprocess.run([sys.executable, "-m", "bench.overhead", str(job_path)], env=worker_env(cell),
                                   capture_output=True, text=True)
                res = read_result(out)
                if p.returncode != 0 or res is None:
                    tail = [ln for ln in p.stderr.splitlines() if ln.strip()][-3:]
                    failed = " | ".join(tail) or f"exit {p.returncode}"
                    break
                per_process.append(res)
        if failed:
            out.append({"framework": fw, "model": model, "failed": failed})
        else:
            out.append({**summarize_framework(fw, model, per_process), "variant": variant})
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    results.atomic_write_json(out_dir / f"overhead-{stamp}.json",
                              {"schema": "lstm-bench/overhead", "schema_version": results.SCHEMA_VERSION,
                               "env": envinfo.environment(threads), "processes": processes, "results": out})
    return out


if __name__ == "__main__":
    sys.exit(main())
