"""Harness overhead: the harness's timed window and a bare hand-written loop of the same
model, side by side in one process, interleaved A B B A ... so drift and noise hit both alike.

`python -m bench overhead` starts one process per framework (`python -m bench.overhead JOB`)
and prints harness samples/s, bare samples/s and their ratio (target >= 0.97).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import data, measure, reference, registry
from .spec import Cell, Protocol, TrainSpec, get_model


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


def measure_overhead(framework: str, model_name: str, batch_size: int, threads: int, rounds: int,
                     steps: int) -> OverheadResult:
    from impls.bare import LOOPS

    from .worker import timed_window

    model = get_model(model_name)
    train = TrainSpec(batch_size=batch_size, steps=10_000)
    ds = data.load()
    batches = [ds.train_batch(train.seed, s, batch_size) for s in range(steps)]
    impl = registry.load(framework)
    trainer = impl.build(model, train, "cpu", "fp32", "default", threads)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    res = measure_overhead(job["framework"], job["model"], job["batch_size"], job["threads"], job["rounds"],
                           job["steps"])
    print("@result " + json.dumps(res.to_dict()), flush=True)
    return 0


def run_all(frameworks: tuple[str, ...], model: str, batch_size: int, threads: int, rounds: int, steps: int,
            out_dir: Path) -> list[dict[str, Any]]:
    """One subprocess per framework (thread settings must precede the framework's import)."""
    import subprocess
    import tempfile

    from .runner import worker_env

    out = []
    for fw in frameworks:
        why = registry.unavailable_reason(fw)
        if why:
            out.append({"framework": fw, "model": model, "skipped": why})
            continue
        cell = Cell(fw, get_model(model), TrainSpec(batch_size=batch_size, steps=10_000), threads=threads,
                    protocol=Protocol())
        job = {"framework": fw, "model": model, "batch_size": batch_size, "threads": threads, "rounds": rounds,
               "steps": steps}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(job, f)
        p = subprocess.run([sys.executable, "-m", "bench.overhead", f.name], env=worker_env(cell),
                           capture_output=True, text=True)
        Path(f.name).unlink(missing_ok=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("@result ")), None)
        if p.returncode != 0 or line is None:
            tail = [ln for ln in p.stderr.splitlines() if ln.strip()][-3:]
            out.append({"framework": fw, "model": model, "failed": " | ".join(tail) or f"exit {p.returncode}"})
            continue
        out.append(json.loads(line[len("@result "):]))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    from . import envinfo, results

    results.atomic_write_json(out_dir / f"overhead-{stamp}.json",
                              {"schema": "lstm-bench/overhead", "schema_version": results.SCHEMA_VERSION,
                               "env": envinfo.environment(threads), "results": out})
    return out


if __name__ == "__main__":
    sys.exit(main())
