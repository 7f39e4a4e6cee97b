"""The process valgrind runs for a counts measurement: `python bench/counts/child.py JOB.json`.

It builds one cell with the code under test (the code root first on PYTHONPATH: this checkout, or
a worktree of REF for `check --counts --against REF`), runs the warm-up steps uninstrumented, then
switches callgrind's instrumentation on around K training steps only (client requests through
the shim, bench/counts/shim.c) and dumps the counters. It writes what it saw as JSON; the parent
(bench/counts) reads the instruction count from callgrind's dump.

Started by path, so it imports nothing of the checkout that started it: only the code root's
public names that every version of the harness has (bench.spec.Cell, registry.load, data.load,
reference.init_weights, faults.inject).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import time
import traceback
from pathlib import Path

# Started by path, python put this directory first on sys.path: drop it, so a module named like
# a sibling here never shadows a library's.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

DUMP_LABEL = "lstm-bench-steps"


def measure(job: dict) -> dict:
    t0 = time.perf_counter()
    from bench import data, faults, reference, registry
    from bench.spec import Cell

    shim = ctypes.CDLL(job["shim"])
    shim.lb_count_dump.argtypes = [ctypes.c_char_p]
    shim.lb_cpu_features.restype = ctypes.c_uint
    cell = Cell.from_dict(job["cell"])
    impl = registry.load(cell.framework)
    ds = data.load(job.get("data"))
    trainer = impl.build(cell.model, cell.train, cell.device, cell.precision, cell.variant, cell.threads)
    trainer.set_weights(reference.init_weights(cell.model, cell.train.seed))
    faults.inject(cell, trainer)  # nothing, unless the power benchmark switched extra work on
    B, seed = cell.train.batch_size, cell.train.seed
    warmup, counted = int(job["warmup_steps"]), int(job["counted_steps"])
    batches = [trainer.stage(*ds.train_batch(seed, i, B)) for i in range(warmup + counted)]
    trainer.sync()
    t1 = time.perf_counter()
    for b in batches[:warmup]:
        trainer.train_step(b)
    trainer.sync()
    t2 = time.perf_counter()
    step_s = []
    shim.lb_count_start()
    for i, b in enumerate(batches[warmup:]):  # one dump per step: how much steps differ is on record
        t = time.perf_counter()
        trainer.train_step(b)
        trainer.sync()
        shim.lb_count_dump(f"{DUMP_LABEL} {i}".encode())
        step_s.append(time.perf_counter() - t)
    shim.lb_count_stop()
    t3 = time.perf_counter()
    return {"status": "ok", "kernel": trainer.kernel, "framework_versions": impl.versions(),
            "on_valgrind": int(shim.lb_on_valgrind()), "cpu_features_mask": int(shim.lb_cpu_features()),
            "warmup_steps": warmup, "counted_steps": counted,
            "import_build_s": t1 - t0, "warmup_s": t2 - t1, "counted_s": t3 - t2, "counted_step_s": step_s}


# The child protocol (bench/workers/job.py), read here with its own lines: started by path in a code
# root that may be an older commit's, this file imports nothing of the checkout that started it.
KNOWN_VERSIONS = (1,)


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    try:
        if job.get("job_version", 1) not in KNOWN_VERSIONS or job.get("kind", "counts") != "counts":
            raise ValueError(f"job version {job.get('job_version')!r} kind {job.get('kind')!r} is not a counts "
                             f"job this child reads")
        out = measure(job)
    except Exception as e:  # the parent's record must say what broke, whatever broke
        lines = traceback.format_exc().strip().splitlines()
        out = {"status": "failed", "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
               "error_tail": lines[-15:]}
    tmp = Path(job["out"] + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, job["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
