"""The child process: builds one cell, measures it, writes one JSON record.

`python -m bench.worker JOB.json` -- the runner starts one per cell (spawned, never forked,
so no framework or CUDA state is shared), with thread and allocator variables already in its
environment. Order inside the cell, each pass apart so none perturbs another:
  1. build + canonical weights;
  2. training: first step timed alone (compile_s), warm-up, the timed window (R repeats of N
     steps, a sync at each boundary, batches staged before it), then the rest of the recipe;
  3. evaluation on the test set, timed the same way (inference samples/s) -> accuracy;
  4. the memory pass: a few more steps with the RSS sampler on and allocator peaks reset.
Progress lines on stdout start with "@progress"; everything else goes to stderr.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import analytic, data, envinfo, faults, measure, nvml, reference, registry
from .workers import contention, handshake, turns
from .records import record, results
from .workers.job import EXIT_REFUSED, PROGRESS, REFUSED, Job, JobRefused
from .spec import Cell

if TYPE_CHECKING:  # for the annotations only
    from impls.base import Trainer

SELF_CHECK_TOLERANCE = 0.01  # timed total vs the sum of its repeats


def progress(phase: str, done: int, total: int) -> None:
    print(f"{PROGRESS} {phase} {done} {total}", flush=True)


def timed_window(trainer: Trainer, batches: list[Any], repeats: int, per_repeat: int,
                 step: Callable[[Any], Any],
                 between: Callable[[int], None] | None = None,
                 watch: contention.Watch | None = None,
                 before: Callable[[int], None] | None = None,
                 watch_each: bool = False) -> tuple[list[float], float, list[Any]]:
    """Run `repeats` windows of `per_repeat` calls of step(batch), syncing only at window
    boundaries. Returns per-repeat seconds, the wall time around all of them (read by a clock
    of its own, for the self-check) and the outputs (device handles, not synced).
    `before(r)` runs before repeat r and `between(r)` after it, both outside every timer (the
    duet handshake, alternate turns; time-to-accuracy evaluations).
    `watch` adds up what other processes ran on this process's CPUs during the window, or with
    `watch_each` during each repeat alone (alternate rounds: between repeats the other side takes
    its turn on these CPUs, which is the design, not contention)."""
    if watch_each:
        return _timed(trainer, batches, repeats, per_repeat, step, between, before, watch)
    with watch if watch is not None else contextlib.nullcontext():
        return _timed(trainer, batches, repeats, per_repeat, step, between, before)


def _timed(trainer: Trainer, batches: list[Any], repeats: int, per_repeat: int, step: Callable[[Any], Any],
           between: Callable[[int], None] | None,
           before: Callable[[int], None] | None = None,
           watch_each: contention.Watch | None = None) -> tuple[list[float], float, list[Any]]:
    outs: list[Any] = []
    rep_s: list[float] = []
    outside_ns = 0
    trainer.sync()
    t_all = time.perf_counter_ns()
    for r in range(repeats):
        if before is not None:
            t_out = time.perf_counter_ns()
            before(r)
            outside_ns += time.perf_counter_ns() - t_out
        with watch_each if watch_each is not None else contextlib.nullcontext():
            t0 = time.perf_counter()
            for i in range(per_repeat):
                outs.append(step(batches[r * per_repeat + i]))
            trainer.sync()
            rep_s.append(time.perf_counter() - t0)
        if between is not None:
            t_out = time.perf_counter_ns()
            between(r)
            outside_ns += time.perf_counter_ns() - t_out
    total_s = (time.perf_counter_ns() - t_all - outside_ns) / 1e9
    return rep_s, total_s, outs


class AccuracyCurve:
    """Time to accuracy, MLPerf style: test accuracy every `eval_every_steps` training steps,
    outside the timed region, and the training seconds until it first reaches the target.
    Training seconds are wall time from the first step (compilation included, as a user waits
    for it) minus the time spent evaluating. Inside the timed window an evaluation that falls
    due waits for the end of the repeat (no timer runs there), so its step is recorded as run."""

    def __init__(self, cell: Cell, trainer: Trainer, ds: data.Mnist) -> None:
        P = cell.protocol
        self.every, self.target = P.eval_every_steps, P.target_accuracy
        self.trainer, self.B = trainer, cell.train.batch_size
        self.points: list[dict[str, Any]] = []
        self.eval_s = 0.0
        self._slot = 0
        self._t0 = 0.0
        self._staged: list[Any] = []
        if self.every:
            x, y = ds.test_arrays(P.test_samples)
            self._n, self._y = len(y), y
            self._staged = staged_chunks(trainer, x, y, self.B)

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def train_s(self) -> float:
        return time.perf_counter() - self._t0 - self.eval_s

    def maybe(self, steps_done: int) -> None:
        """Evaluate if a multiple of `every` was passed since the last evaluation."""
        if not self.every or steps_done // self.every <= self._slot:
            return
        self._slot = steps_done // self.every
        self.trainer.sync()  # the steps so far count as training time, the evaluation does not
        train_s = self.train_s()
        t0 = time.perf_counter()
        logits = [self.trainer.to_numpy(self.trainer.predict(b)) for b in self._staged]
        acc = float((np.concatenate(logits)[:self._n].argmax(axis=1) == self._y).mean())
        self.eval_s += time.perf_counter() - t0
        self.points.append({"step": steps_done, "train_s": train_s, "test_accuracy": acc})

    def release(self) -> None:
        self._staged = []  # the memory pass must not count the staged test set

    def summary(self, final_step: int, final_train_s: float, final_acc: float) -> dict[str, Any]:
        if not self.points or self.points[-1]["step"] != final_step:
            self.points.append({"step": final_step, "train_s": final_train_s, "test_accuracy": final_acc})
        out: dict[str, Any] = {"eval_every_steps": self.every, "eval_s": self.eval_s, "points": self.points}
        if self.target:
            hit = next((p for p in self.points if p["test_accuracy"] >= self.target), None)
            out["target_accuracy"] = self.target
            out["reached"] = hit is not None
            out["best_accuracy"] = max(p["test_accuracy"] for p in self.points)
            if hit is not None:
                out.update(step=hit["step"], train_s=hit["train_s"], samples=hit["step"] * self.B)
        return out


def staged_chunks(trainer: Trainer, x: np.ndarray, y: np.ndarray, B: int) -> list[Any]:
    """The test set in batches of B, the last one padded to a full batch: one compiled shape."""
    n = len(y)
    n_chunks = math.ceil(n / B)
    pad = n_chunks * B - n
    if pad:
        x = np.concatenate([x, x[:pad]])
        y = np.concatenate([y, y[:pad]])
    return [trainer.stage(x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]) for i in range(n_chunks)]


class Pace:
    """Before each timed repeat of a duet or alternate round: the duet handshake
    (bench/workers/handshake.py) when the job has a sync directory, or this side's turn
    (bench/workers/turns.py) when it has a seat; and the wall-clock start of every training repeat,
    so a reader can see how the two sides' windows lay."""

    def __init__(self, sync_dir: str | None) -> None:
        self.sync_dir = sync_dir
        self.seat = turns.Seat(sync_dir) if sync_dir and turns.is_seat(sync_dir) else None
        self.waited_s: list[float] = []
        self.went_alone = 0
        self.repeat_start_unix: list[float] = []

    @property
    def alternate(self) -> bool:
        return self.seat is not None

    def __call__(self, repeat: int) -> None:
        """Before training repeat `repeat`."""
        if self.seat is not None:
            self._note(*self.seat.wait())
        elif self.sync_dir:
            self._note(*handshake.wait_for_go(self.sync_dir, repeat))
        self.repeat_start_unix.append(time.time())

    def turn(self, _: int = 0) -> None:
        """Before any other timed section of an alternate round (sgemm, an inference repeat)."""
        if self.seat is not None:
            self._note(*self.seat.wait())

    def barrier(self) -> None:
        """After a group of turns: no side starts untimed work while the other is timed."""
        if self.seat is not None:
            self._note(*self.seat.wait(barrier=True))

    def _note(self, waited: float, alone: bool) -> None:
        self.waited_s.append(round(waited, 6))
        self.went_alone += alone

    def summary(self) -> dict[str, Any]:
        design = "alternate" if self.seat is not None else "together" if self.sync_dir else "side by side"
        return {"design": design, "synchronised": bool(self.sync_dir), "repeat_start_unix": self.repeat_start_unix,
                **({"waited_s": self.waited_s, "went_alone": self.went_alone} if self.sync_dir else {})}


def train_and_time(cell: Cell, trainer: Trainer, ds: data.Mnist,
                   watch: contention.Watch | None = None, pace: Pace | None = None) -> dict[str, Any]:
    P, T = cell.protocol, cell.train
    B, seed = T.batch_size, T.seed
    handles: list[Any] = []
    curve = AccuracyCurve(cell, trainer, ds)

    trainer.sync()
    first = trainer.stage(*ds.train_batch(seed, 0, B))
    trainer.sync()
    curve.start()
    t0 = time.perf_counter()
    handles.append(trainer.train_step(first))
    trainer.sync()
    compile_s = time.perf_counter() - t0
    curve.maybe(1)
    for s in range(1, P.warmup_steps):
        handles.append(trainer.train_step(trainer.stage(*ds.train_batch(seed, s, B))))
        curve.maybe(s + 1)
    progress("warmup", P.warmup_steps, T.steps)

    n_timed = P.repeats * P.steps_per_repeat
    staged = [trainer.stage(*ds.train_batch(seed, P.warmup_steps + i, B)) for i in range(n_timed)]
    rep_s, total_s, outs = timed_window(trainer, staged, P.repeats, P.steps_per_repeat, trainer.train_step,
                                        lambda r: curve.maybe(P.warmup_steps + (r + 1) * P.steps_per_repeat), watch,
                                        pace, watch_each=pace is not None and pace.alternate)
    if pace is not None:
        pace.barrier()
    del staged
    handles.extend(outs)
    done = P.warmup_steps + n_timed
    progress("train", done, T.steps)
    every = max(1, (T.steps - done) // 20)
    for s in range(done, T.steps):
        handles.append(trainer.train_step(trainer.stage(*ds.train_batch(seed, s, B))))
        if s + 1 < T.steps:
            curve.maybe(s + 1)  # the last step's accuracy is the final evaluation's
        if (s + 1) % every == 0:
            trainer.sync()
            progress("train", s + 1, T.steps)
    trainer.sync()
    train_wall_s = curve.train_s()
    curve.release()
    losses = [trainer.loss_value(h) for h in handles]
    return {"compile_s": compile_s, "rep_s": rep_s, "total_s": total_s, "losses": losses,
            "timed_losses": losses[P.warmup_steps:done], "train_wall_s": train_wall_s, "curve": curve}


def evaluate(cell: Cell, trainer: Trainer, ds: data.Mnist,
             watch: contention.Watch | None = None, pace: Pace | None = None) -> dict[str, Any]:
    """Accuracy on the test set; the same pass, chunked into repeats, times inference."""
    P, B = cell.protocol, cell.train.batch_size
    x, y = ds.test_arrays(P.test_samples)
    n = len(y)
    staged = staged_chunks(trainer, x, y, B)
    n_chunks = len(staged)
    trainer.sync()
    t0 = time.perf_counter()
    trainer.to_numpy(trainer.predict(staged[0]))
    infer_compile_s = time.perf_counter() - t0
    groups = [g for g in np.array_split(np.arange(n_chunks), min(P.infer_repeats, n_chunks)) if len(g)]
    logits, rates = [], []
    turns_ = pace is not None and pace.alternate
    for g in groups:
        rep_s, _, outs = timed_window(trainer, [staged[i] for i in g], 1, len(g), trainer.predict, watch=watch,
                                      before=pace.turn if turns_ else None, watch_each=turns_)
        rates.append(len(g) * B / rep_s[0])
        logits.extend(trainer.to_numpy(o) for o in outs)
    if turns_:
        pace.barrier()
    pred = np.concatenate(logits)[:n].argmax(axis=1)
    progress("eval", n, n)
    return {"test_accuracy": float((pred == y[:n]).mean()), "test_samples": n,
            "infer_samples_per_s": measure.summarize(rates), "infer_compile_s": infer_compile_s}


def memory_pass(cell: Cell, trainer: Trainer, ds: data.Mnist, rss_before: int) -> dict[str, Any]:
    P, T = cell.protocol, cell.train
    out: dict[str, Any] = {"rss_before_model_bytes": rss_before}
    if P.memory_steps == 0:
        return out
    batches = [trainer.stage(*ds.train_batch(T.seed, T.steps + i, T.batch_size)) for i in range(P.memory_steps)]
    trainer.sync()
    gc.collect()
    trainer.reset_memory()
    with measure.RssSampler() as sampler:
        for b in batches:
            trainer.train_step(b)
        trainer.sync()
    out["rss_peak_train_bytes"] = sampler.peak_bytes
    out["rss_delta_train_bytes"] = sampler.peak_bytes - rss_before
    out["rss_samples"] = sampler.samples
    out.update(trainer.memory())
    # What the framework itself holds for a step (params, grads, Adam, saved activations,
    # temporaries): deterministic for identical code, unlike RSS. Outside the RSS window.
    out.update(trainer.tensor_memory(batches[0]))
    if cell.device == "gpu":
        out.update(nvml.process_memory())
    progress("memory", P.memory_steps, P.memory_steps)
    return out


def self_check(cell: Cell, timing: dict[str, Any], memory: dict[str, Any]) -> list[str]:
    """Reasons this record should not be trusted as is (empty list = passed)."""
    reasons = []
    losses = timing["losses"]
    if not all(math.isfinite(v) for v in losses):
        reasons.append("loss is not finite")
    n = cell.protocol.steps_per_repeat
    tl = timing["timed_losses"]
    first, last = float(np.mean(tl[:n])), float(np.mean(tl[-n:]))
    if cell.protocol.repeats > 1 and not last < first:
        reasons.append(f"loss did not decrease over the timed window (first repeat mean {first:.4f}, "
                       f"last {last:.4f})")
    parts = sum(timing["rep_s"])
    if abs(timing["total_s"] - parts) > SELF_CHECK_TOLERANCE * timing["total_s"]:
        reasons.append(f"timed total {timing['total_s']:.4f}s differs from the sum of its repeats "
                       f"{parts:.4f}s by more than {SELF_CHECK_TOLERANCE:.0%}")
    mem_keys = ("rss_delta_train_bytes", "tensor_peak_bytes") if cell.device == "cpu" else ("allocator_peak_bytes",)
    for mem_key in mem_keys:
        if memory.get(mem_key) is None:
            reasons.append(f"memory figure {mem_key} missing")
    return reasons


def busy_reasons(timed: contention.Contention | None, sgemm: contention.Contention | None) -> list[str]:
    """A cell timed while other programs ran on its CPUs is suspect, with the reason (issue 25)."""
    found = [timed.reason("timing") if timed else None, sgemm.reason("calibrating sgemm") if sgemm else None]
    return [r for r in found if r]


# pyperf warns when a benchmark's standard deviation passes 10% of its mean; the harness keeps
# medians and quartiles, so the same warning reads IQR / median. A warning is printed under the
# table and kept in the record; it does not make the cell suspect (a wide spread is a property of
# the machine and the cell, not evidence that the figure is wrong).
SPREAD_WARN_IQR_OVER_MEDIAN = 0.10


def spread_warnings(train_rate: measure.Stats) -> list[str]:
    ratio = train_rate.iqr / train_rate.median if train_rate.median > 0 else 0.0
    if ratio <= SPREAD_WARN_IQR_OVER_MEDIAN:
        return []
    return [f"repeats spread widely: train samples/s IQR is {ratio:.0%} of the median "
            f"(warned past {SPREAD_WARN_IQR_OVER_MEDIAN:.0%}, as pyperf does)"]


def allocator_peak(trainer: Trainer, memory: dict[str, Any]) -> int | None:
    """The allocator's peak among the trainer's memory() figures (None on CPU)."""
    peak = memory.get(trainer.allocator_peak_key)
    return None if peak is None else int(peak)


def measure_cell(cell: Cell, data_path: str | None, pace: Pace | None = None) -> dict[str, Any]:
    from impls.base import Unsupported  # impls.base imports no framework

    impl = registry.load(cell.framework)
    ds = data.load(data_path)
    if cell.device == "gpu" and not impl.gpu_available():
        raise Unsupported(f"{cell.framework} sees no GPU in this process")
    timed, sgemm = contention.Watch(), contention.Watch()
    if pace is not None and pace.alternate and cell.device == "cpu":
        pace.turn()  # the calibration is timed too: one side at a time on these CPUs
    with sgemm:
        calib = measure.calibrate_matmul_gflops(cell.threads) if cell.device == "cpu" else None
    if pace is not None and cell.device == "cpu":
        pace.barrier()
    gc.collect()
    rss_before = measure.rss_bytes()
    t0 = time.perf_counter()
    trainer = impl.build(cell.model, cell.train, cell.device, cell.precision, cell.variant, cell.threads)
    trainer.set_weights(reference.init_weights(cell.model, cell.train.seed))
    build_s = time.perf_counter() - t0
    faults.inject(cell, trainer)  # nothing, unless a test switched a fault on
    if cell.strict and not trainer.fast_path:
        raise FastPathMissing(f"--strict: expected fast path did not run: {trainer.fast_path_note}")
    progress("build", 0, cell.train.steps)

    timing = train_and_time(cell, trainer, ds, timed, pace)
    ev = evaluate(cell, trainer, ds, timed, pace)
    memory = memory_pass(cell, trainer, ds, rss_before)
    memory["allocator_peak_bytes"] = allocator_peak(trainer, memory)

    B, N = cell.train.batch_size, cell.protocol.steps_per_repeat
    train_rate = measure.summarize([B * N / s for s in timing["rep_s"]])
    step_ms = measure.summarize([1000.0 * s / N for s in timing["rep_s"]])
    cost = analytic.cost(cell.model)
    floor = cost.train_floor_bytes(B)
    achieved = train_rate.median * cost.train_flops_per_sample / 1e9
    tail = timing["losses"][-min(10, len(timing["losses"])):]
    reasons = self_check(cell, timing, memory) + busy_reasons(timed.total, sgemm.total if calib else None)
    return {
        "kernel": trainer.kernel,
        "fast_path": bool(trainer.fast_path),
        "fast_path_note": trainer.fast_path_note,
        "precision_applied": trainer.precision_applied,
        "framework_versions": impl.versions(),
        "data": {"source": ds.source, "sha256": ds.sha256},
        "metrics": {
            "test_accuracy": ev["test_accuracy"],
            "test_samples": ev["test_samples"],
            "trained_steps": cell.train.steps,
            "trained_samples": cell.train.steps * B,
            "final_train_loss": float(np.mean(tail)),
            "train_samples_per_s": train_rate.to_dict(),
            "step_ms": step_ms.to_dict(),
            "infer_samples_per_s": ev["infer_samples_per_s"].to_dict(),
            "compile_s": timing["compile_s"],
            "infer_compile_s": ev["infer_compile_s"],
            "build_s": build_s,
            "train_wall_s": timing["train_wall_s"],
            "timed_total_s": timing["total_s"],
            "param_count": int(trainer.param_count),
        },
        "memory": memory,
        "analytic": {
            "forward_flops_per_sample": cost.forward_flops_per_sample,
            "train_flops_per_sample": cost.train_flops_per_sample,
            "train_floor_bytes": floor,
            "achieved_gflops": achieved,
            "calibration_gflops": calib,
            "pct_of_achievable": (100.0 * achieved / calib) if calib else None,
        },
        "losses": timing["losses"],
        **({"accuracy_curve": timing["curve"].summary(cell.train.steps, timing["train_wall_s"], ev["test_accuracy"])}
           if cell.protocol.eval_every_steps else {}),
        "self_check": {"passed": not reasons, "reasons": reasons},
        "suspect": bool(reasons),
        "contention": {"timed": timed.total.to_dict() if timed.total else None,
                       "sgemm": sgemm.total.to_dict() if calib and sgemm.total else None},
        "warnings": spread_warnings(train_rate),
        **({"duet": pace.summary()} if pace is not None else {}),
    }


def measure_memory_only(cell: Cell, data_path: str | None) -> dict[str, Any]:
    """A memory-only process (RSS in rounds): build, the warm-up steps (so compilation and
    allocator warm-up happen before sampling, as in a full cell), then the memory pass."""
    impl = registry.load(cell.framework)
    ds = data.load(data_path)
    if cell.device == "gpu" and not impl.gpu_available():
        from impls.base import Unsupported

        raise Unsupported(f"{cell.framework} sees no GPU in this process")
    gc.collect()
    rss_before = measure.rss_bytes()
    trainer = impl.build(cell.model, cell.train, cell.device, cell.precision, cell.variant, cell.threads)
    trainer.set_weights(reference.init_weights(cell.model, cell.train.seed))
    for s in range(cell.protocol.warmup_steps):
        trainer.train_step(trainer.stage(*ds.train_batch(cell.train.seed, s, cell.train.batch_size)))
    trainer.sync()
    memory = memory_pass(cell, trainer, ds, rss_before)
    memory["allocator_peak_bytes"] = allocator_peak(trainer, memory)
    return {"memory": memory, "framework_versions": impl.versions(), "kernel": trainer.kernel}


class FastPathMissing(RuntimeError):
    pass


def classify(exc: BaseException) -> str:
    """oom for the framework's out-of-memory errors (named differently by each), else failed."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, MemoryError) or any(s in text for s in ("out of memory", "outofmemory", "resource_exhausted",
                                                                 "resourceexhausted")):
        return "oom"
    return "failed"


def run_job(job: Job) -> dict[str, Any]:
    from impls.base import Unsupported

    cell = job.cell
    rec = record.base_record(cell, job.run_id, job.round, job.mode)
    t0 = time.perf_counter()
    try:
        # A duet round's process (job.cpus) records where its repeats started; with a sync directory
        # it also waits for the other side before each one.
        pace = Pace(job.sync_dir) if job.cpus or job.sync_dir else None
        rec.update(measure_memory_only(cell, job.data) if job.mode == "memory" else
                   measure_cell(cell, job.data, pace))
        rec["status"] = "ok"
    except Unsupported as e:
        rec.update(status="skipped", reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
    except FastPathMissing as e:
        rec.update(status="failed", reason=str(e))
    except Exception as e:  # the record must say what broke, whatever broke
        lines = traceback.format_exc().strip().splitlines()
        rec.update(status=classify(e), reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                   error_tail=lines[-15:])
    rec["wall_s"] = time.perf_counter() - t0
    rec["imported_versions"] = envinfo.imported_versions()
    return rec


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.worker JOB.json", file=sys.stderr)
        return 2
    try:
        job = Job.from_dict(json.loads(Path(argv[0]).read_text()))
    except JobRefused as e:  # a job from another version of the code: say so, measure nothing
        print(f"{REFUSED} {e}", flush=True)
        return EXIT_REFUSED
    rec = run_job(job)
    results.write_record(Path(job.run_dir), rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
