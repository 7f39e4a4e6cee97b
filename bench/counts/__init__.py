"""Counts: instructions per training step under valgrind's callgrind, a figure that hardly moves
between processes of the same code (issue 27), for changes the wall clock on a shared runner
cannot see.

One process per cell and side runs `valgrind --tool=callgrind --instr-atstart=no python
bench/counts/child.py JOB`: the child builds the cell with the code under test, runs the warm-up
steps uninstrumented and counts only K training steps, switched on and off by callgrind's client
requests (a small C shim, compiled with gcc on first use into a cache directory). The figure is
the dump's instruction count (Ir) over K. Valgrind shows the program a CPU without AVX-512, so
the count describes the AVX2 path (the record keeps the CPU features valgrind exposed and the
kernel that ran). docs/counts.md says what counts catch and what they miss.

Nothing is faked: without valgrind, gcc or valgrind's header, or for a cell whose estimated cost
passes the budget, the cell is skipped with one line that says why and what to install.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import analytic
from ..workers import process
from ..records import record
from ..runner.side import Side
from ..workers.job import read_result, write_child_job
from ..spec import Cell

INSTALL_HINT = "apt-get install valgrind"
SHIM_SOURCE = Path(__file__).with_name("shim.c")
CHILD = Path(__file__).with_name("child.py")
DUMP_LABEL = "lstm-bench-steps"  # the child's dumps (child.py DUMP_LABEL: the child imports nothing from here)
CACHE_VARIABLE = "LSTM_BENCH_CACHE"
# The order of the bits lb_cpu_features sets (shim.c).
CPU_FEATURES = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni")
WARMUP_STEPS = 2  # the first step compiles, the second settles allocator and caches; neither is counted
# Two counted steps: the counts' self-check. The check matches step i of base with step i of head;
# in a deterministic count the matched head/base ratios agree (to 0.007% where measured), so ratios
# apart by more than the counts tolerance (bench.decide.compare.COUNTS_TOLERANCE) mean the count is
# not the figure the direct comparison assumes, and the check says so with one process a side. The
# second step costs a step's time (~50-100 s for torch lstm128 b128).
COUNTED_STEPS = 2
BUDGET_S = 300.0  # a counts process (both sides run at once) estimated past this is skipped
# Processes of identical code gave the same count to the instruction (the counts rule's floor in
# bench.decide.compare is 0.5%; results/published/counts-cpu-2core-2026-12-02.md).
FLOOR = 0.005


class CountsUnavailable(RuntimeError):
    """Counts cannot be measured on this machine: one line, what is missing and how to get it."""


def unavailable_reason() -> str | None:
    """Why counts cannot run here (None: valgrind and gcc are on PATH); the header is checked
    when the shim is compiled."""
    if shutil.which("valgrind") is None:
        return f"valgrind not found on PATH: counts need it ({INSTALL_HINT})"
    if shutil.which("gcc") is None:
        return "gcc not found on PATH: counts compile a 30-line client-request shim with it (apt-get install gcc)"
    return None


def valgrind_version() -> str:
    out = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


def cache_dir() -> Path:
    root = os.environ.get(CACHE_VARIABLE) or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                          os.path.expanduser("~/.cache"), "lstm-bench")
    return Path(root)


def shim_path() -> Path:
    """The compiled shim, built on first use (named by its source's hash, so an edit rebuilds it)."""
    reason = unavailable_reason()
    if reason:
        raise CountsUnavailable(reason)
    source = SHIM_SOURCE.read_bytes()
    out = cache_dir() / f"callgrind-shim-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shim-", suffix=".so", dir=out.parent)
    os.close(fd)
    done = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", tmp, str(SHIM_SOURCE)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(tmp)
        first = (done.stderr.strip().splitlines() or ["gcc failed"])[0]
        if "callgrind.h" in done.stderr:
            raise CountsUnavailable(f"valgrind's header valgrind/callgrind.h not found: counts need it "
                                    f"({INSTALL_HINT}; on some systems valgrind-devel)")
        raise CountsUnavailable(f"cannot compile the callgrind shim: {first}")
    os.replace(tmp, out)
    return out


def features(mask: int) -> list[str]:
    return [name for i, name in enumerate(CPU_FEATURES) if mask >> i & 1]


def native_features() -> list[str]:
    """The CPU features this machine reports outside valgrind (through the same shim)."""
    import ctypes

    return features(int(ctypes.CDLL(str(shim_path())).lb_cpu_features()))


# ---------------------------------------------------------------------------------------------
# Reading callgrind's dump.
_EVENTS = re.compile(r"^events:\s*(.+)$", re.M)
_TOTALS = re.compile(r"^(?:totals|summary):\s*([\d\s]+)$", re.M)


class DumpError(ValueError):
    pass


def parse_instructions(text: str) -> int:
    """Instructions executed (Ir) in one callgrind dump: its `totals:` (or `summary:`) line,
    at the position of Ir in its `events:` line."""
    events = _EVENTS.search(text)
    totals = _TOTALS.findall(text)
    if not events or not totals:
        raise DumpError("no events/totals line: not a callgrind dump")
    names = events.group(1).split()
    if "Ir" not in names:
        raise DumpError(f"the dump counts {', '.join(names)}, not Ir")
    values = totals[-1].split()
    return int(values[names.index("Ir")])


def counted_dumps(out_dir: Path) -> list[Path]:
    """The dumps the child's client requests wrote, one per counted step, in order (callgrind
    names them OUT.<pid>.<n>)."""
    found = []
    for p in out_dir.glob("callgrind.out.*"):
        with open(p, errors="replace") as f:
            head = f.read(4096)
        if f"Client Request: {DUMP_LABEL}" in head:
            found.append(p)
    if not found:
        raise DumpError("callgrind wrote no dump of the counted steps")
    return sorted(found, key=lambda p: int(p.name.rsplit(".", 1)[1]))


# ---------------------------------------------------------------------------------------------
# Cost: what one counts process takes on this machine, from the measurements published in
# results/published/counts-cpu-2core-2026-12-02.md (valgrind 3.19, 2 shared vCPUs).
@dataclass(frozen=True)
class Cost:
    startup_s: float  # interpreter + framework import + build under valgrind
    s_per_gflop: float  # a training step under valgrind, per GFLOP of its arithmetic


# A step under valgrind costs about the same instrumented or not: most of its time is valgrind
# translating code (oneDNN's JIT kernels among it), not running it.
# torch: lstm128 b128 (1.72 GFLOP a step) took 160-179 s over 34 processes, cnn_small b128 (0.63
# GFLOP) 70 s. TF and JAX: lstm128 b128 took 195 s and 194 s (one process each).
COSTS = {"torch": Cost(25.0, 27.0), "tf": Cost(55.0, 27.0), "jax": Cost(30.0, 32.0)}
UNKNOWN_COST = Cost(10.0, 27.0)  # the tests' numpy double


def estimate_s(cell: Cell, warmup: int = WARMUP_STEPS, counted: int = COUNTED_STEPS) -> float:
    """Seconds one counts process of `cell` is expected to take."""
    c = COSTS.get(cell.framework, UNKNOWN_COST)
    step_gflop = analytic.cost(cell.model).train_flops_per_sample * cell.train.batch_size / 1e9
    return c.startup_s + step_gflop * c.s_per_gflop * (counted + warmup)


# A cell too slow to count at its batch is counted at a smaller one, halving down to this: the
# same layers, shapes and kernels with fewer rows (a shorter sequence or a smaller image would
# change the kernels' shapes, and for a CNN the kernel mix). Below 4 rows a GEMM is closer to a
# matrix-vector product and may take another code path.
MIN_COUNTED_BATCH = 4


def with_batch(cell: Cell, batch: int) -> Cell:
    return dataclasses.replace(cell, train=dataclasses.replace(cell.train, batch_size=batch))


def fit_batch(cell: Cell, budget_s: float) -> Cell | None:
    """The cell as counted within `budget_s`: itself when it fits, else the same cell at the largest
    batch (halving from its own, at least MIN_COUNTED_BATCH) estimated to fit; None when none does."""
    batch = cell.train.batch_size
    while batch >= MIN_COUNTED_BATCH:
        c = cell if batch == cell.train.batch_size else with_batch(cell, batch)
        if estimate_s(c) <= budget_s:
            return c
        batch //= 2
    return None


def skip_reason(cell: Cell, budget_s: float, reduce: bool = False) -> str | None:
    """Why this cell is not counted (None: it is, at fit_batch's batch when `reduce`)."""
    if cell.device != "cpu":
        return "counts run on CPU only: valgrind does not see work on a GPU"
    if cell.threads != 1:
        return (f"counts run one thread (this cell has {cell.threads}): valgrind serializes threads and "
                f"spin-waits make counts vary; give --threads 1")
    if reduce and fit_batch(cell, budget_s) is not None:
        return None
    est = estimate_s(with_batch(cell, MIN_COUNTED_BATCH) if reduce else cell)
    if est > budget_s:
        at = f" even at batch {MIN_COUNTED_BATCH}" if reduce else ""
        return (f"estimated {est:.0f} s under valgrind{at}, past the counts budget of {budget_s:.0f} s "
                f"(--counts-budget-s)")
    return None


# ---------------------------------------------------------------------------------------------
# One counts process.
def count(cell: Cell, side: Side, work_dir: Path, timeout_s: float, data_path: str | None = None,
          warmup: int = WARMUP_STEPS, counted: int = COUNTED_STEPS) -> dict[str, Any]:
    """Run one counts process; return the record's `counts` section with `status` ok, or failed /
    timeout with a reason. Raises CountsUnavailable when valgrind, gcc or the header is missing."""
    shim = shim_path()
    work_dir = Path(work_dir).resolve()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    out_json = work_dir / "child.json"
    write_child_job(work_dir / "job.json", "counts", {"cell": cell.to_dict(), "shim": str(shim), "warmup_steps": warmup,
                                                      "counted_steps": counted, "data": data_path}, out_json)
    # A fixed hash seed: randomized string hashes lay dicts out differently in every process,
    # which moves the interpreter's share of the count.
    env = {**process.worker_env(cell, side.code_root), "PYTHONHASHSEED": "0", **dict(side.env)}
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={work_dir}/callgrind.out.%p",
           sys.executable, str(CHILD), str(work_dir / "job.json")]
    t0 = time.monotonic()
    with open(work_dir / "valgrind.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=side.code_root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            if side.cpu is not None:
                os.sched_setaffinity(proc.pid, {side.cpu})  # before its threads start: they inherit it
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill(proc)
            return {"status": "timeout", "reason": f"no count after the {timeout_s:.0f} s timeout",
                    "wall_s": time.monotonic() - t0}
        except BaseException:  # Ctrl-C: the process runs in its own session, nothing else stops it
            process.kill(proc)
            raise
    wall_s = time.monotonic() - t0
    child = read_result(out_json)
    if child is None:
        tail = (work_dir / "valgrind.log").read_text(errors="replace").strip().splitlines()[-15:]
        return {"status": "failed", "reason": f"valgrind exited with code {proc.returncode} without a count",
                "error_tail": tail, "wall_s": wall_s}
    if child.get("status") != "ok":
        return {**child, "wall_s": wall_s}
    if not child.get("on_valgrind"):
        return {"status": "failed", "reason": "the child did not run under valgrind", "wall_s": wall_s}
    try:
        per_step = [parse_instructions(p.read_text(errors="replace")) for p in counted_dumps(work_dir)]
    except (DumpError, ValueError) as e:
        return {"status": "failed", "reason": str(e), "wall_s": wall_s}
    if len(per_step) != counted:
        return {"status": "failed", "reason": f"{len(per_step)} dumps for {counted} counted steps", "wall_s": wall_s}
    total = sum(per_step)
    return {"status": "ok", "instructions_per_step": total / counted, "instructions_total": total,
            "instructions_by_step": per_step, "counted_step_s": child["counted_step_s"],
            "counted_steps": counted, "warmup_steps": warmup, "tool": "callgrind",
            "valgrind_version": valgrind_version(), "cpu_features_seen": features(child["cpu_features_mask"]),
            "cpu_features_native": native_features(), "kernel": child["kernel"],
            "framework_versions": child["framework_versions"], "wall_s": wall_s,
            "startup_s": child["import_build_s"], "warmup_s": child["warmup_s"], "counted_s": child["counted_s"]}


def count_pair(cell: Cell, sides: tuple[Side, Side], work_dirs: tuple[Path, Path], timeout_s: float,
               data_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides at the same time (each on its own CPU when the sides say so)."""
    out: list[dict[str, Any] | BaseException] = [{}, {}]

    def one(i: int) -> None:
        try:
            out[i] = count(cell, sides[i], work_dirs[i], timeout_s, data_path)
        except BaseException as e:  # re-raised in the caller's thread
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out[0], out[1]  # type: ignore[return-value]


def pair_cpus() -> tuple[int | None, int | None]:
    """One CPU per side when this process may use two or more; else both unpinned."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def counts_record(cell: Cell, run_id: str | None, counts: dict[str, Any]) -> dict[str, Any]:
    """A record of a check's counts process: the cell, and its counts (status as the process ended)."""
    rec = record.base_record(cell, run_id)
    rec["status"] = counts.get("status") if counts.get("status") in ("ok", "timeout") else "failed"
    if rec["status"] != "ok":
        rec["reason"] = f"counts: {counts.get('reason', 'failed')}"
    else:
        rec["kernel"] = counts["kernel"]
        rec["framework_versions"] = counts["framework_versions"]
    rec["counts"] = counts
    return rec
