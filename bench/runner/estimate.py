"""How long a run will take, said before it starts.

The first guess, FLOPs at a fixed fraction of the machine's sgemm rate, was 35-50% off on the
zoo (TF and JAX run lstm128 at half torch's rate, JAX's convolutions at a fifth of sgemm), so
a cell this machine has measured before in its own runs (results/<run-id>/, not the committed
baselines: see load_priors) is estimated from its own record instead: the best ok record of the
same framework, variant, model, device, threads and precision on the same machine (see priors)
gives the seconds per step (scaled linearly to the new batch size), the inference
rate and the process overhead (start-up, compile, memory pass: the process's wall time minus
its training and evaluation). The process's wall time is the runner's view of it
(`process_wall_s`: interpreter start, imports and exit included) where the record has it; older
records only have the worker's own `wall_s`, which left out ~1-3 s of start-up per process and
made estimates of short-process profiles (quick, ci) read 25-80% low. Cells never measured here
fall back to FLOPs (FLOP_FRACTION, FALLBACK_COST).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .. import analytic
from ..records import results
from ..spec import Cell

GPU_GFLOPS = 20_000.0
# One host reads its sgemm up to ~10% apart from one process to the next: the run's own reading
# before its cells (192-199 GFLOP/s, three tries) against its workers' (median 203 and 214 in
# two full runs, the same hour, 2026-12-03). A record is scaled only by what lies beyond that.
SGEMM_SAME_HOST = 1.10
# Cells with no record here: a step is its FLOPs at FLOP_FRACTION of the sgemm rate measured
# at the run's start, plus a fixed cost per step (dispatch: what a step costs beyond its
# arithmetic), plus a fixed cost per process. Fitted on the 18 quick cells of four spawned
# runs on the 2-core AMD VM, 2026-12-03 (results/published/harness-cost-cpu-2core-2026-12-03.md):
# the recurrent cells that fill the time reach 0.72-1.1 of sgemm (lstm512, bilstm512,
# lstm3x256), the small ones lose most of a step to dispatch (cnn_small: 7-19 ms a step for
# 3 ms of arithmetic). The first fallback (40% of sgemm, 12 s and 8 s a process) read quick
# runs 24-35% long, twice the training time of the big cells.
FLOP_FRACTION = 0.85


@dataclass(frozen=True)
class FallbackCost:
    step_overhead_s: float  # per training step, beyond its FLOPs
    startup_s: float  # a full process's wall time that is neither timed steps nor the evaluation
    memory_startup_s: float  # a memory-only process's, beside its steps (two run at once)


FALLBACK_COST = {  # medians over the fitted runs' processes
    "torch": FallbackCost(step_overhead_s=0.001, startup_s=4.5, memory_startup_s=12.0),
    "jax": FallbackCost(step_overhead_s=0.008, startup_s=5.5, memory_startup_s=7.0),
    "tf": FallbackCost(step_overhead_s=0.008, startup_s=11.0, memory_startup_s=12.0),
}
DEFAULT_FALLBACK = FallbackCost(step_overhead_s=0.005, startup_s=8.0, memory_startup_s=10.0)


@dataclass(frozen=True)
class Prior:
    """What one earlier record says about a cell's speed on this machine."""

    batch_size: int
    step_s: float
    infer_samples_per_s: float
    overhead_s: float  # wall time that is neither training steps nor the evaluation
    memory_wall_s: float | None  # a memory-only process of that cell, when one was recorded
    memory_steps: int  # warm-up + memory steps that process ran
    sgemm_gflops: float | None = None  # the sgemm rate that record's process measured at its start


def _ident(framework: str, variant: str, model: str, device: str, threads: int, precision: str) -> tuple:
    return (framework, variant, model, device, int(threads or 0), precision)


def cell_ident(c: Cell) -> tuple:
    return _ident(c.framework, c.variant, c.model.name, c.device, c.threads, c.precision)


def priors(records: Iterable[dict[str, Any]], machine_id: str, profile: str | None = None) -> dict[tuple, list[Prior]]:
    """Per cell identity and batch size, the best usable record (ranked below), from this machine
    only; one of `profile` where there is one (a process's fixed cost depends on its profile: warm-up,
    repeats, the memory pass; a claim process's is not a full one's)."""
    full: dict[tuple, tuple[tuple[bool, int, str, str], dict]] = {}
    mem: dict[tuple, tuple[tuple[bool, int, str, str], dict]] = {}
    for r in records:
        if r.get("status") != "ok" or (r.get("env") or {}).get("machine_id") != machine_id:
            continue
        ident = _ident(r.get("framework", ""), r.get("variant", ""), r.get("model", ""), r.get("device", ""),
                       r.get("threads") or 0, r.get("precision", "")) + (int(r.get("batch_size") or 0),)
        # Best first: the asked-for profile; then the record that timed more steps (the claim
        # profile times 6, cold, and read the big LSTMs' steps 2x slow for a full run); then the
        # newest by the record's own clock. Run ids do not sort by time: the committed
        # baselines' "quick-all-2" sorts after every dated id, and hid this machine's later runs.
        proto = (r.get("cell") or {}).get("protocol") or {}
        timed = int(proto.get("repeats") or 0) * int(proto.get("steps_per_repeat") or 0)
        when = (r.get("profile") == profile, timed, str((r.get("env") or {}).get("utc") or ""), str(r.get("run_id", "")))
        target = mem if r.get("mode") == "memory" else full
        if ident not in target or when > target[ident][0]:
            target[ident] = (when, r)
    out: dict[tuple, list[Prior]] = {}
    for ident, (_, r) in full.items():
        m = r.get("metrics") or {}
        try:
            step_s = float(m["step_ms"]["median"]) / 1000.0
            infer = float(m["infer_samples_per_s"]["median"])
            steps, test_n, wall = int(m["trained_steps"]), int(m["test_samples"]), _process_wall(r)
        except (KeyError, TypeError, ValueError):
            continue
        if not (step_s > 0 and infer > 0 and math.isfinite(wall)):
            continue
        proto = (r.get("cell") or {}).get("protocol") or {}
        # time-to-accuracy's evaluations are not overhead
        n_evals = evaluations_every(steps, int(proto.get("eval_every_steps") or 0))
        overhead = max(0.0, wall - steps * step_s - (1 + n_evals) * test_n / infer)
        mrec = mem.get(ident, (None, None))[1]
        out.setdefault(ident[:-1], []).append(Prior(batch_size=int(r.get("batch_size") or 0) or 1, step_s=step_s, infer_samples_per_s=infer,
                           overhead_s=overhead, memory_wall_s=_process_wall(mrec) if mrec and mrec.get("wall_s") else None,
                           memory_steps=int(proto.get("warmup_steps", 0)) + int(proto.get("memory_steps", 0)),
                           sgemm_gflops=_positive((r.get("analytic") or {}).get("calibration_gflops"))))
    return out


def _process_wall(r: dict[str, Any]) -> float:
    """Seconds of a process's whole life: the runner's figure, else (older records) the worker's."""
    return float(r.get("process_wall_s") or r["wall_s"])


def _positive(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v > 0 and math.isfinite(v) else None


def speed_factor(p: Prior, gflops: float, device: str) -> float:
    """How much slower this run's host is than the one that made the record, by the sgemm
    rate each measured: one machine id has been served by hosts 1.5x apart in sgemm (and
    2.7x apart in torch lstm128's step time) on the shared development machine, so a record
    made on another day is scaled, by what lies beyond one host's own spread (SGEMM_SAME_HOST).
    Never below 1 (a faster sgemm now is no promise that the small recurrent matmuls are
    faster) and only on the CPU."""
    if device != "cpu" or p.sgemm_gflops is None or not gflops > 0:
        return 1.0
    return max(1.0, p.sgemm_gflops / gflops / SGEMM_SAME_HOST)


def nearest(candidates: list[Prior] | None, batch_size: int) -> Prior | None:
    """The record at the batch size closest (in ratio) to the one asked for: step time is far
    from linear in the batch across a sweep, so the nearest measured batch is scaled least."""
    if not candidates:
        return None
    return min(candidates, key=lambda p: abs(math.log(batch_size / p.batch_size)))


def load_priors(results_dir: Path, machine_id: str, profile: str | None = None) -> dict[tuple, list[Prior]]:
    """Every record of this machine's own runs under results_dir that reads cleanly (a corrupt
    one is simply not used: an estimate must never stop a run).

    Not the committed baselines/: they were measured on other days, and one machine id is
    served by hosts up to 2x apart. On 2026-12-03 the big LSTMs' steps ran 20-50% faster than
    in the baselines of 2026-11-24 at the same sgemm rate, so a `full` run estimated from them
    printed 53.6 min and took 39.6 (-26%), and from the newest baseline of each cell it would
    have said 78.6 (-50%). The FLOPs fallback, which scales with the sgemm measured now, is
    within 6% on that run and on the next. A machine's own runs are its freshest evidence."""
    recs: list[dict[str, Any]] = []
    for run_dir in results.list_runs(results_dir):
        try:
            recs.extend(results.read_rounds(run_dir))
        except Exception:  # noqa: BLE001 - see docstring
            continue
    return priors(recs, machine_id, profile)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    from_records: int  # cells estimated from this machine's earlier records
    from_flops: int
    scaled: int = 0  # of the cells from records, those scaled up by the sgemm rate read now
    sgemm_busy: str | None = None  # why the sgemm reading was not trusted to scale records

    def describe(self, gflops: float) -> str:
        parts = []
        if self.from_records:
            parts.append(f"{self.from_records} cell(s) from their earlier records on this machine"
                         + (f", {self.scaled} of them scaled up to the {gflops:.0f} GFLOP/s sgemm read now"
                            if self.scaled else ""))
        if self.sgemm_busy:
            parts.append(f"records not scaled: {self.sgemm_busy}")
        if self.from_flops:
            parts.append(f"{self.from_flops} from FLOPs at {FLOP_FRACTION:.0%} of the {gflops:.0f} GFLOP/s "
                         "sgemm measured just now, plus fixed per-step and per-process costs")
        return "; ".join(parts)


def estimate(cells: list[Cell], gflops: float, priors_: dict[tuple, list[Prior]], full_rounds: int = 1,
             memory_processes: int = 0, memory_jobs: int = 1, sgemm_busy: str | None = None) -> Estimate:
    """Seconds for `full_rounds` full processes and `memory_processes` memory-only processes
    per cell (the evaluations every K steps for time-to-accuracy included). A CPU cell's
    memory-only processes run `memory_jobs` at once (bench.runner.schedule.Rounds): their time is
    divided among them. Records of processes that ran two at once already carry the slowdown of
    sharing the cores, and divided so they matched the memory phase's wall time (13.7/2 min
    against 7.0 min measured); records of processes that ran alone make it read short."""
    total, n_rec, n_flops, n_scaled = 0.0, 0, 0, 0
    for c in cells:
        p = nearest(priors_.get(cell_ident(c)), c.train.batch_size)
        n_evals = evaluations(c)
        if p is not None:
            n_rec += 1
            # A reading taken while other programs used the cores says nothing of the host.
            slow = 1.0 if sgemm_busy else speed_factor(p, gflops, c.device)
            n_scaled += slow > 1.0
            step_s = slow * p.step_s * c.train.batch_size / p.batch_size
            infer_s = slow * c.protocol.test_samples / p.infer_samples_per_s
            full = p.overhead_s + c.train.steps * step_s + infer_s * (1 + n_evals)
            mem_steps = c.protocol.warmup_steps + c.protocol.memory_steps
            if p.memory_wall_s is not None:
                memory = p.memory_wall_s + (mem_steps - p.memory_steps) * step_s
            else:
                memory = min(p.overhead_s, fallback(c).memory_startup_s) + mem_steps * step_s
        else:
            n_flops += 1
            cost, fb = analytic.cost(c.model), fallback(c)
            rate = (gflops * FLOP_FRACTION if c.device == "cpu" else GPU_GFLOPS) * 1e9
            step_s = c.train.batch_size * cost.train_flops_per_sample / rate + fb.step_overhead_s
            infer = c.protocol.test_samples * cost.forward_flops_per_sample / rate
            full = fb.startup_s + c.train.steps * step_s + infer * (1 + n_evals)
            mem_steps = c.protocol.warmup_steps + c.protocol.memory_steps
            memory = fb.memory_startup_s + mem_steps * step_s
        overlap = max(1, memory_jobs) if c.device == "cpu" else 1
        total += full_rounds * full + memory_processes * max(0.0, memory) / overlap
    return Estimate(seconds=total, from_records=n_rec, from_flops=n_flops, scaled=n_scaled, sgemm_busy=sgemm_busy)


def fallback(c: Cell) -> FallbackCost:
    return FALLBACK_COST.get(c.framework, DEFAULT_FALLBACK)


def evaluations(c: Cell) -> int:
    """Test-set evaluations during training (time-to-accuracy), beside the final one."""
    return evaluations_every(c.train.steps, int(getattr(c.protocol, "eval_every_steps", 0) or 0))


def evaluations_every(steps: int, every: int) -> int:
    """Evaluations every `every` of `steps` steps, the final one (at the last step) not counted."""
    return (steps - 1) // every if every > 0 else 0
