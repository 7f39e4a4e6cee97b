"""Plans cells and runs each in its own process, keeping whatever finished.

A cell's worker is a fresh `python -m bench.worker` (spawned, not forked: no framework or CUDA
state crosses cells), in its own session so Ctrl-C reaches only the runner, which then stops
the worker and keeps every finished record. Thread counts and allocator switches go into the
worker's environment, because frameworks read them at import time.
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
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from . import envinfo, measure, registry, results
from .spec import (DEFAULT_MODELS, Cell, ModelSpec, Profile, Protocol, SpecError, TrainSpec, get_model,
                   get_profile)

DEFAULT_TIMEOUT_S = {"smoke": 300, "ci": 600, "claim": 900, "quick": 900, "full": 7200}


@dataclass(frozen=True)
class Selection:
    frameworks: tuple[str, ...]
    models: tuple[str, ...]
    devices: tuple[str, ...]
    profile: str = "quick"
    variants: tuple[str, ...] = ("default",)
    batch_sizes: tuple[int, ...] = ()  # empty = the profile's batch size per model
    steps: int | None = None  # overrides the profile (also scales nothing else)
    threads: int = 0  # 0 = every core this process may use
    precision: str = "fp32"
    seed: int = 0
    strict: bool = False
    # Timing-protocol overrides (None = the profile's): warm-up steps, repeats, steps per repeat.
    warmup_steps: int | None = None
    repeats: int | None = None
    steps_per_repeat: int | None = None
    seeds: tuple[int, ...] = ()  # several seeds: every cell once per seed (empty = (seed,))
    # Time to accuracy: evaluate every K steps (0 = off; with a target and no K, ~20 evaluations).
    eval_every_steps: int = 0
    target_accuracy: float = 0.0


Decide = Callable[[Cell, int], bool]  # (cell, rounds done) -> stop adding rounds for this cell


@dataclass(frozen=True)
class Rounds:
    """How many fresh processes each cell gets.

    `full`: full measurements per cell and side (a plain run: round-robin over the cells, so
    slow drift of the machine spreads over all of them). `memory`: memory-only processes that
    bring the cell's RSS samples up to this many (RSS is judged in rounds, never on one
    process). With `decide`, rounds are adaptive per cell (check --against): at least
    `full`, then more while `decide` says the answer is not clear, up to `max_full` rounds or
    `budget_s` seconds for the cell, whichever comes first."""

    full: int = 1
    memory: int = 0
    max_full: int = 0
    budget_s: float = 0.0
    decide: Decide | None = None
    # Duet (check --against, --calibrate): the two sides' processes of a round run at the same
    # time, each pinned to its own CPUs, swapping CPUs from round to round. Both then see the
    # same burst of the shared machine, which cancels in head/base (Bulej et al., "Duet
    # benchmarking", ICPE 2020), and a round takes one process's time instead of two. CPU
    # cells only; empty = one side after the other.
    duet_cpus: tuple[tuple[int, ...], ...] = ()


def _protocol(sel: Selection, base: Protocol, steps: int) -> Protocol:
    over = {k: v for k, v in (("warmup_steps", sel.warmup_steps), ("repeats", sel.repeats),
                              ("steps_per_repeat", sel.steps_per_repeat)) if v is not None}
    every = sel.eval_every_steps or (max(1, -(-steps // 20)) if sel.target_accuracy else 0)
    if every:
        over.update(eval_every_steps=every, target_accuracy=sel.target_accuracy)
    return replace(base, **over) if over else base


def plan(sel: Selection, models: Mapping[str, ModelSpec] | None = None, profile: Profile | None = None) -> list[Cell]:
    """The cells of a selection. `models` resolves names the zoo does not know (a config's own
    models: the worker builds whatever spec the cell carries, so nothing downstream looks a
    name up again); `profile` replaces the named one (a config's protocol overrides)."""
    prof = profile or get_profile(sel.profile)
    threads = sel.threads or measure.cpu_threads_default()
    cells: list[Cell] = []
    for fw in sel.frameworks:
        registry.get(fw)
        variants = registry.variants(fw) if sel.variants == ("all",) else sel.variants
        for variant in variants:
            registry.check_variant(fw, variant)
            for name in sel.models:
                model = models[name] if models and name in models else get_model(name)
                entry = prof.entry(name)
                for device in sel.devices:
                    for bs in sel.batch_sizes or prof.batch_sizes or (entry.batch_size,):
                        steps = sel.steps if sel.steps is not None else entry.steps
                        protocol = _protocol(sel, entry.protocol, steps)
                        if steps < protocol.measured_steps:
                            raise SpecError(f"{steps} training steps is fewer than the timing protocol needs for "
                                            f"{name} ({protocol.measured_steps}: warm-up + repeats x steps)")
                        for seed in sel.seeds or (sel.seed,):
                            train = TrainSpec(batch_size=bs, steps=steps, seed=seed)
                            cells.append(Cell(framework=fw, variant=variant, model=model, train=train,
                                              device=device, precision=sel.precision,
                                              threads=threads if device == "cpu" else 0, protocol=protocol,
                                              profile=sel.profile, strict=sel.strict))
    keys = [c.key for c in cells]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise SpecError(f"the selection names the same cell twice: {sorted(dup)[0]}")
    return cells


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


def new_run_id(profile: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{profile}-{uuid.uuid4().hex[:4]}"


def pre_skip_reason(cell: Cell) -> str | None:
    """Why a cell cannot start here at all (decided without starting a worker)."""
    reason = registry.unavailable_reason(cell.framework)
    if reason:
        return reason
    if cell.device == "gpu":
        return envinfo.gpu_absent_reason()
    return None


@dataclass
class CellOutcome:
    key: str
    status: str
    reason: str = ""


Progress = Callable[[str, str], None]  # (cell key, phase text)


def run_cell(cell: Cell, run_dir: Path, job: dict[str, Any], timeout_s: float, on_progress: Progress,
             stop: threading.Event, code_root: Path = envinfo.REPO_ROOT, cpus: tuple[int, ...] = ()) -> CellOutcome:
    """Run one cell's worker here and file its record (or one that says how it died)."""
    run_dir = run_dir.resolve()  # the worker runs in code_root, not here
    job = {"round": 0, "mode": "full", **job, "run_dir": str(run_dir)}
    out_path = results.cell_path(run_dir, cell.key, job["round"], job["mode"])
    out_path.unlink(missing_ok=True)
    # The worker writes into a staging directory of its own, and the runner files the record
    # under its round: a base worktree of older code (check --against) knows nothing of rounds
    # and would otherwise overwrite round 0 with every later round.
    job["run_dir"] = str(run_dir / "staging" / out_path.stem)
    if cpus:
        job["cpus"] = list(cpus)
    rec = run_worker(cell, job, run_dir / "jobs" / out_path.name, timeout_s, on_progress, stop,
                     worker_env(cell, code_root), code_root, cpus=cpus)
    return file_record(run_dir, rec, job)


def run_worker(cell: Cell, job: dict[str, Any], job_path: Path, timeout_s: float, on_progress: Progress,
               stop: threading.Event, env: dict[str, str], code_root: Path,
               preexec: Callable[[], None] | None = None, cpus: tuple[int, ...] = ()) -> dict[str, Any]:
    """Start `python -m bench.worker JOB` (its record goes to the staging dir job["run_dir"]),
    follow its progress, enforce the timeout; return its record, or one that says how it died.
    Shared by the local runner and the Ray task (bench.ray_executor), which runs it on a node.
    `preexec` runs in the child before the worker starts; `cpus` pins the worker to those CPUs."""
    stage = Path(job["run_dir"])
    shutil.rmtree(stage, ignore_errors=True)
    results.atomic_write_json(job_path, job)
    proc = subprocess.Popen([sys.executable, "-m", "bench.worker", str(job_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            # `python -m` puts the cwd first on sys.path: run in code_root so the
                            # worker imports that code, not whatever lies in the caller's cwd.
                            cwd=code_root, start_new_session=True, preexec_fn=preexec)
    err_tail: collections.deque[str] = collections.deque(maxlen=40)

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@progress "):
                _, phase, done, total = line.split()[:4]
                on_progress(cell.key, f"{phase} {done}/{total}")

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_tail.append(line.rstrip())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    t0 = time.monotonic()
    timed_out = False
    try:
        if cpus:
            # Pinned from here, not in preexec_fn (unsafe while the duet's other thread runs): the
            # interpreter has not started a thread yet, and the ones it starts inherit the mask.
            with contextlib.suppress(ProcessLookupError):  # it died already: its record says why
                os.sched_setaffinity(proc.pid, set(cpus))
        for t in readers:  # inside the try: a Ctrl-C while they start must still stop the worker
            t.start()
        while proc.poll() is None:
            if stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() - t0 > timeout_s:
                timed_out = True
                _kill(proc)
                break
            time.sleep(0.1)
    except BaseException:
        # Ctrl-C / SIGTERM arrive as KeyboardInterrupt wherever the main thread is (mostly in
        # the sleep above; in a Ray task, ray.cancel raises it there). The worker runs in its own
        # session, so nothing else stops it: an orphan would go on burning the cores the next
        # measurement needs.
        _kill(proc)
        raise
    proc.wait()
    for t in readers:
        t.join(timeout=2)
    produced = sorted((stage / "cells").glob("*.json"))
    rec = results.read_json(produced[0], results.RECORD_SCHEMA) if produced and not timed_out else None
    shutil.rmtree(stage, ignore_errors=True)
    if rec is not None:
        return rec
    tail = [ln for ln in err_tail if ln.strip()][-15:]
    if timed_out:
        status, reason = "timeout", f"no record after the {timeout_s:.0f}s cell timeout"
    elif proc.returncode in (-signal.SIGKILL, 137) or any("out of memory" in ln.lower() for ln in tail):
        status, reason = "oom", f"worker killed (exit {proc.returncode}), most likely out of memory"
    else:
        status, reason = "failed", f"worker exited with code {proc.returncode} without a record"
    return outcome_record(cell, job, status, reason, tail)


def file_record(run_dir: Path, rec: dict[str, Any], job: dict[str, Any]) -> CellOutcome:
    """File a worker's record under the round and mode the runner gave it (atomic)."""
    rec = {**rec, "round": job["round"], "mode": job["mode"]}
    if job.get("cpus"):
        rec["cpus"] = job["cpus"]  # a duet round: where this process ran
    results.write_record(run_dir, rec)
    return CellOutcome(rec["key"], rec["status"], rec.get("reason", ""))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def outcome_record(cell: Cell, job: dict[str, Any], status: str, reason: str,
                   tail: list[str] | None = None) -> dict[str, Any]:
    """A record for a cell that has no worker record: skipped, or how its worker died."""
    from .worker import base_record  # worker imports no framework at module level

    rec = base_record(cell, job)
    rec.update(status=status, reason=reason)
    if tail:
        rec["error_tail"] = tail
    return rec


def write_outcome(run_dir: Path, cell: Cell, job: dict[str, Any], status: str, reason: str,
                  tail: list[str] | None = None) -> None:
    results.write_record(run_dir, outcome_record(cell, job, status, reason, tail))


def start_manifest(run_dir: Path, run_id: str, cells: list[Cell], sel: Selection | None, argv: list[str],
                   data_path: str | None, rounds: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = {
        "run_id": run_id, "created_utc": envinfo.utc_now(), "argv": argv, "status": "running",
        "profile": sel.profile if sel else None, "data": data_path, "rounds": rounds or {"full": 1, "memory": 0},
        **(extra or {}),
        "cells": [{"key": c.key, "cell": c.to_dict()} for c in cells],
        "env": envinfo.environment(cells[0].threads if cells else 0),
    }
    results.write_manifest(run_dir, manifest)
    return manifest


@dataclass(frozen=True)
class Side:
    """One side of a same-job A/B comparison: its run directory and the code it runs."""

    name: str
    run_dir: Path
    manifest: dict[str, Any]
    code_root: Path


def execute(run_dir: Path, manifest: dict[str, Any], cells: list[Cell], data_path: str | None, timeout_s: float,
            ui: Any, rounds: Rounds = Rounds()) -> int:
    """Run `cells` (already planned into the manifest). Returns 0, or 130 when interrupted."""
    return execute_sides((Side("run", run_dir, manifest, envinfo.REPO_ROOT),), cells, data_path, timeout_s, ui,
                         rounds)


def cells_from_manifest(manifest: dict[str, Any]) -> list[Cell]:
    return [Cell.from_dict(c["cell"]) for c in manifest["cells"]]


def remaining(run_dir: Path, cells: list[Cell], retry_failed: bool, rounds: Rounds = Rounds()) -> list[Cell]:
    """Cells of a run still missing a process record (any round); with `retry_failed`, also
    those whose first measurement failed (their failed record is removed so it reruns). A
    record marked `lost` (a Ray task lost with its node or worker: it says nothing about the
    cell) counts as missing even without `retry_failed`."""
    recs = results.read_rounds(run_dir)
    drop = [r for r in recs if r.get("lost") or (retry_failed and r["status"] not in ("ok", "skipped"))]
    for r in drop:
        results.cell_path(run_dir, r["key"], int(r.get("round", 0)), r.get("mode", "full")).unlink(missing_ok=True)
    recs = [r for r in recs if r not in drop]
    first = {r["key"]: r["status"] for r in recs if r.get("mode", "full") == "full" and not r.get("round")}
    have = {(r["key"], int(r.get("round", 0)), r.get("mode", "full")) for r in recs}
    wanted = [(r, "full" if r < rounds.full else "memory") for r in range(max(rounds.full, rounds.memory))]

    def missing(c: Cell) -> bool:
        if c.key in first and first[c.key] != "ok":
            return False  # a failed or skipped cell gets no further rounds
        return any((c.key, r, mode) not in have for r, mode in wanted)

    return [c for c in cells if missing(c)]


def default_selection(profile: str) -> Selection:
    devices = ("cpu",) if envinfo.gpu_absent_reason() else ("cpu", "gpu")
    return Selection(frameworks=tuple(registry.FRAMEWORKS), models=DEFAULT_MODELS, devices=devices, profile=profile)


def _one(side: Side, cell: Cell, round_: int, mode: str, data_path: str | None, timeout_s: float, ui: Any,
         stop: threading.Event, tag: bool, cpus: tuple[int, ...] = ()) -> CellOutcome:
    job = {"cell": cell.to_dict(), "run_dir": str(side.run_dir), "run_id": side.manifest["run_id"],
           "data": data_path, "round": round_, "mode": mode}
    ui.cell_started(cell)
    reason = pre_skip_reason(cell)
    if reason:
        write_outcome(side.run_dir, cell, job, "skipped", reason)
        outcome = CellOutcome(cell.key, "skipped", reason)
    else:
        outcome = run_cell(cell, side.run_dir, job, timeout_s, ui.cell_progress, stop, side.code_root, cpus)
    outcome = labelled(outcome, round_, mode, side.name if tag else None)
    ui.cell_finished(cell, outcome)
    return outcome


def labelled(outcome: CellOutcome, round_: int, mode: str, side: str | None = None) -> CellOutcome:
    """The outcome as the progress log shows it: which side, round and kind of process."""
    label = ([side] if side else []) + ([f"round {round_ + 1}"] if round_ or side else []) + \
        (["memory only"] if mode == "memory" else [])
    if not label:
        return outcome
    return CellOutcome(outcome.key, outcome.status, f"[{', '.join(label)}] {outcome.reason}".rstrip())


def execute_sides(sides: tuple[Side, ...], cells: list[Cell], data_path: str | None, timeout_s: float,
                  ui: Any, rounds: Rounds = Rounds()) -> int:
    """Run every cell on every side in fresh processes (one side for a plain run; base and
    head for `check --against`: side by side with `rounds.duet_cpus` on CPU cells, else
    alternating A B / B A from round to round so slow drift of a shared machine hits both
    alike). Every outcome gets a record; Ctrl-C keeps what finished.
    Returns 0 or 130."""
    stop = threading.Event()
    tag = len(sides) > 1
    extra_mem = max(0, rounds.memory - rounds.full)
    ui.start(len(sides) * len(cells) * (rounds.full + extra_mem))
    status = "complete"

    def order(r: int) -> tuple[Side, ...]:
        return sides if r % 2 == 0 else sides[::-1]

    try:
        if rounds.decide is None:
            failed: set[str] = set()  # skipped or failed in round 0: more processes will not help
            for r in range(rounds.full + extra_mem):  # round-robin: every cell once, then again
                mode = "full" if r < rounds.full else "memory"
                for i, cell in enumerate(cells):
                    for side in order(r + i):
                        if cell.key in failed or results.cell_path(side.run_dir, cell.key, r, mode).exists():
                            ui.advance(1)  # done before (--resume) or not worth repeating
                            continue
                        out = _one(side, cell, r, mode, data_path, timeout_s, ui, stop, tag)
                        if r == 0 and out.status != "ok":
                            failed.add(cell.key)
        else:
            for cell in cells:
                t0 = time.monotonic()
                r = 0
                while True:
                    if rounds.duet_cpus and cell.device == "cpu":
                        outs = _duet(order(r), rounds.duet_cpus, cell, r, data_path, timeout_s, ui, stop, tag)
                    else:
                        outs = [_one(side, cell, r, "full", data_path, timeout_s, ui, stop, tag) for side in order(r)]
                    r += 1
                    if any(o.status != "ok" for o in outs):
                        ui.advance(len(sides) * max(0, rounds.full - r))
                        break  # a side that cannot measure this cell: more rounds will not help
                    if r < rounds.full:
                        continue
                    spent = time.monotonic() - t0
                    per_round = spent / r
                    if rounds.decide(cell, r) or r >= rounds.max_full or spent + per_round > rounds.budget_s:
                        break
                    ui.add_total(len(sides))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        finish(sides, ui, status)
    return 130 if status == "interrupted" else 0


def duet_cpus(threads: int, available: list[int] | None = None) -> tuple[tuple[int, ...], ...]:
    """Two disjoint CPU sets of `threads` each from the CPUs this process may use, or () when
    there are not enough for both sides at once."""
    cpus = sorted(os.sched_getaffinity(0)) if available is None else sorted(available)
    if threads < 1 or 2 * threads > len(cpus):
        return ()
    return tuple(cpus[:threads]), tuple(cpus[threads:2 * threads])


def _duet(sides: tuple[Side, ...], cpu_sets: tuple[tuple[int, ...], ...], cell: Cell, round_: int,
          data_path: str | None, timeout_s: float, ui: Any, stop: threading.Event, tag: bool) -> list[CellOutcome]:
    """One round with both sides' processes at once, sides[i] pinned to cpu_sets[i]. The caller
    swaps the sides' order every round, so each side runs on each CPU set equally often."""
    outs: list[CellOutcome | None] = [None] * len(sides)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        try:
            outs[i] = _one(sides[i], cell, round_, "full", data_path, timeout_s, ui, stop, tag, cpu_sets[i])
        except BaseException as e:  # a KeyboardInterrupt from `stop`, or a bug: re-raised below
            errors.append(e)
            stop.set()  # the other side's worker must not run on alone

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(len(sides))]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)  # short joins: Ctrl-C reaches this (main) thread between them
    except BaseException:
        stop.set()  # each thread kills its worker when it sees this
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    return [o for o in outs if o is not None]


def finish(sides: tuple[Side, ...], ui: Any, status: str) -> None:
    """End of a run, however it ended: the manifest says complete or interrupted."""
    ui.stop()
    for side in sides:
        side.manifest.update(status=status, finished_utc=envinfo.utc_now())
        results.write_manifest(side.run_dir, side.manifest)
        # Workers' staging directories are emptied as records are filed; an empty parent
        # left behind is clutter. A non-empty one (a worker killed mid-write) stays.
        with contextlib.suppress(OSError):
            (side.run_dir / "staging").rmdir()


class GitError(RuntimeError):
    pass


def add_worktree(ref: str) -> Path:
    """A detached worktree of `ref` in a temporary directory (removed by remove_worktree)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="lstm-bench-base-"))
    out = subprocess.run(["git", "-C", str(envinfo.REPO_ROOT), "worktree", "add", "--detach", str(path), ref],
                         capture_output=True, text=True)
    if out.returncode != 0:
        path.rmdir()
        msg = (out.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise GitError(f"cannot check out {ref!r}: {msg}")
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(envinfo.REPO_ROOT), "worktree", "remove", "--force", str(path)],
                   capture_output=True, text=True)
