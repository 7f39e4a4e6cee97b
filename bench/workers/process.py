"""One cell's worker process: its environment, starting it, watching it, killing it, and filing
the record it wrote (or one that says how it died).

A cell's worker is a fresh `python -m bench.worker JOB` ("spawn"), or with `--start fork` a child
forked from a warm parent that has imported the harness and the framework but started no pool,
backend or device (bench/workers/warm.py; "fork"): either way no framework or CUDA state crosses cells,
and the record says which ("start"). The worker runs in its own session so Ctrl-C reaches only
the runner, which then stops the worker and keeps every finished record. Thread counts and allocator switches go into the
worker's environment, because frameworks read them at import time. This module never imports the
worker: the two meet only in the job file and the record (bench/workers/job.py, bench/records/record.py).
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .. import envinfo, registry
from . import handshake, turns, warm
from ..records import record, results
from .job import PROGRESS, REFUSED, Job
from ..records.run import Run
from ..spec import Cell

Progress = Callable[[str, str], None]  # (cell key, phase text)


def _no_progress(key: str, phase: str) -> None:
    pass


@dataclass(frozen=True)
class Watch:
    """How the runner starts and watches a worker: the cell's time limit, where its progress lines
    go, the event that stops it (Ctrl-C, or the other side of a duet round stopping), and how its
    process starts ("spawn" a cold interpreter, or "fork" it from a warm parent)."""

    timeout_s: float
    on_progress: Progress = _no_progress
    stop: threading.Event = field(default_factory=threading.Event)
    start: str = "spawn"
    # a synchronised duet round (handshake.Rendezvous) or an alternate one (turns.SeatView): told of every `@ready`
    rendezvous: handshake.Rendezvous | turns.SeatView | None = None


@dataclass(frozen=True)
class CellOutcome:
    key: str
    status: str
    reason: str = ""
    suspect: str = ""  # an ok record whose self-check failed (a busy machine, say): the first reason


def worker_env(cell: Cell, code_root: Path = envinfo.REPO_ROOT) -> dict[str, str]:
    env = dict(os.environ)
    if cell.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(cell.threads)
    env.update(registry.framework_env(cell.framework, cell.threads, cell.device))
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # framework and NVML agree on which GPU is 0
    if cell.precision == "fp32":
        env["NVIDIA_TF32_OVERRIDE"] = "0"  # belt and braces beside each framework's own switch
    env["PYTHONUNBUFFERED"] = "1"
    # The worker imports bench and impls from `code_root`: this checkout, or for `check
    # --against REF` a worktree of REF, so base and head run their own code.
    root = str(code_root)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def pre_skip_reason(cell: Cell) -> str | None:
    """Why a cell cannot start here at all (decided without starting a worker). A cell of a
    package environment imports its framework there, not here: its worker says what is missing."""
    reason = None if cell.env else registry.unavailable_reason(cell.framework)
    if reason:
        return reason
    if cell.device == "gpu":
        return envinfo.gpu_absent_reason()
    return None


def run_cell(job: Job, run: Run, code_root: Path, watch: Watch, env: Any = None) -> CellOutcome:
    """Run one cell's worker here and file its record (or one that says how it died) in `run`.
    `env`: the package environment (bench.runner.envs.BuiltEnv) whose interpreter runs the worker
    (None: this interpreter); the record says which (its "environment")."""
    key = (job.cell.key, job.round, job.mode)
    run.cell_path(*key).unlink(missing_ok=True)
    # The worker writes into a staging directory of its own, and the runner files the record
    # under its round: a base worktree of older code (check --against) knows nothing of rounds
    # and would otherwise overwrite round 0 with every later round. Absolute: the worker runs in
    # code_root, not here.
    staged = replace(job, run_dir=str(run.staging(*key).resolve()))
    python = str(env.python) if env is not None else sys.executable
    wenv = worker_env(job.cell, code_root)
    if job.sync_dir and turns.is_seat(job.sync_dir):
        # Taking turns, a side's idle threads must not spin into the other side's turn: numpy's
        # OpenBLAS threads spin ~0.1 s of CPU after each product by default (2^28 cycles; measured
        # 0.13 s after a 1024^2 sgemm here, 0.00 s with 2^4), which the next side's sgemm
        # calibration read as 0.2-0.4 cores of contention. The frameworks' own kernels do not use it.
        wenv["OPENBLAS_THREAD_TIMEOUT"] = "4"
    rec = run_worker(staged, run.job_path(*key).resolve(), watch, wenv, code_root, python=python)
    if env is not None:
        rec = {**rec, "environment": env.describe()}
    return file_record(run, rec, job)


def run_worker(job: Job, job_path: Path, watch: Watch, env: dict[str, str], code_root: Path,
               preexec: Callable[[], None] | None = None, python: str = sys.executable) -> dict[str, Any]:
    """Start `python -m bench.worker JOB` (its record goes to the staging dir job.run_dir),
    follow its progress, enforce the timeout; return its record, or one that says how it died.
    Shared by the local runner and the Ray task (bench.runner.ray_executor), which runs it on a node.
    `preexec` runs in the child before the worker starts (spawn only); job.cpus pins the worker to
    those CPUs. `python`: the interpreter (a package environment's, or this one). watch.start "fork" forks the worker from a warm parent of this code root and
    environment, or starts it cold where no parent can be used (the record's "start" says which)."""
    stage = Path(job.run_dir)
    shutil.rmtree(stage, ignore_errors=True)
    results.atomic_write_json(job_path, job.to_dict())
    proc: subprocess.Popen | warm.ChildProcess | None = None
    # The process's whole life as the runner sees it (interpreter start, imports, exit), which the
    # worker's own wall_s leaves out: the run's estimate learns start-up from it (bench.runner.estimate).
    born = time.monotonic()
    if watch.start == "fork" and preexec is None:
        # A framework this process does not list (the tests' double) is imported by the child.
        info = registry.FRAMEWORKS.get(job.cell.framework)
        proc = warm.PARENTS.fork(job.cell.framework, info.module if info else None, [str(job_path)], env,
                                 code_root, job.cpus, python)  # the child pins itself to job.cpus
    started = "spawn" if proc is None else "fork"
    if proc is None:
        proc = subprocess.Popen([python, "-m", "bench.worker", str(job_path)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                # `python -m` puts the cwd first on sys.path: run in code_root so the
                                # worker imports that code, not whatever lies in the caller's cwd.
                                cwd=code_root, start_new_session=True, preexec_fn=preexec)
    err_tail: collections.deque[str] = collections.deque(maxlen=40)
    refused: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(f"{PROGRESS} "):
                _, phase, done, total = line.split()[:4]
                watch.on_progress(job.cell.key, f"{phase} {done}/{total}")
            elif line.startswith(f"{REFUSED} "):
                refused.append(line[len(REFUSED) + 1:].strip())
            elif line.startswith(f"{handshake.READY} ") and watch.rendezvous is not None:
                parts = line.split()  # "@ready N" or "@ready N all" (a barrier: bench/workers/turns.py)
                watch.rendezvous.ready(int(parts[1]), parts[2:3] == [turns.BARRIER])

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_tail.append(line.rstrip())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    t0 = time.monotonic()
    timed_out = False
    try:
        if job.cpus and started == "spawn":
            # Pinned from here, not in preexec_fn (unsafe while the duet's other thread runs): the
            # interpreter has not started a thread yet, and the ones it starts inherit the mask.
            with contextlib.suppress(ProcessLookupError):  # it died already: its record says why
                os.sched_setaffinity(proc.pid, set(job.cpus))
        for t in readers:  # inside the try: a Ctrl-C while they start must still stop the worker
            t.start()
        while proc.poll() is None:
            if watch.stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() - t0 > watch.timeout_s:
                timed_out = True
                kill(proc)
                break
            time.sleep(0.1)
    except BaseException:
        # Ctrl-C / SIGTERM arrive as KeyboardInterrupt wherever the main thread is (mostly in
        # the sleep above; in a Ray task, ray.cancel raises it there). The worker runs in its own
        # session, so nothing else stops it: an orphan would go on burning the cores the next
        # measurement needs.
        kill(proc)
        raise
    proc.wait()
    for t in readers:
        t.join(timeout=2)
    produced = sorted((stage / "cells").glob("*.json"))
    rec = results.read_json(produced[0], results.RECORD_SCHEMA) if produced and not timed_out else None
    shutil.rmtree(stage, ignore_errors=True)
    process_wall_s = round(time.monotonic() - born, 3)
    lineage = {"warm_parent": proc.lineage} if isinstance(proc, warm.ChildProcess) else {}
    if rec is not None:
        return {**rec, "start": started, **lineage, "process_wall_s": process_wall_s}
    tail = [ln for ln in err_tail if ln.strip()][-15:]
    if timed_out:
        status, reason = "timeout", f"no record after the {watch.timeout_s:.0f}s cell timeout"
    elif refused:  # a worker of another version that cannot read this job
        status, reason = "failed", refused[0]
    elif proc.returncode in (-signal.SIGKILL, 137) or any("out of memory" in ln.lower() for ln in tail):
        status, reason = "oom", f"worker killed (exit {proc.returncode}), most likely out of memory"
    else:
        status, reason = "failed", f"worker exited with code {proc.returncode} without a record"
    return {**outcome_record(job, status, reason, tail), "start": started, **lineage,
            "process_wall_s": process_wall_s}


def close_warm_parents() -> None:
    """End the warm parents this runner started (a run's end; they also end at exit)."""
    warm.PARENTS.close()


def file_record(run: Run, rec: dict[str, Any], job: Job) -> CellOutcome:
    """File a worker's record under the round and mode the runner gave it; its outcome."""
    rec = run.file(rec, job.round, job.mode, job.cpus)
    failed_checks = record.Record(rec).self_check_reasons
    return CellOutcome(rec["key"], rec["status"], rec.get("reason", ""),
                       failed_checks[0] if rec["status"] == record.Status.OK and failed_checks else "")


def kill(proc: subprocess.Popen | warm.ChildProcess) -> None:
    """SIGKILL a child started in its own session, with everything it started; then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        # A forked child between fork and its setsid has no group of its own yet; its exit is
        # not reported (so its pid is not reused) until it is reaped.
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def outcome_record(job: Job, status: str, reason: str, tail: list[str] | None = None) -> dict[str, Any]:
    """A record for a cell that has no worker record: skipped, or how its worker died."""
    rec = record.base_record(job.cell, job.run_id, job.round, job.mode)
    rec.update(status=status, reason=reason)
    if tail:
        rec["error_tail"] = tail
    return rec


def write_outcome(run: Run, job: Job, status: str, reason: str, tail: list[str] | None = None) -> None:
    run.file(outcome_record(job, status, reason, tail), job.round, job.mode)
