"""Timers, statistics and memory probes that need no framework.

The worker drives a Trainer through these, so every framework is timed and sampled by the
same code. Nothing here imports a framework.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import psutil


@dataclass(frozen=True)
class Stats:
    """Robust summary of repeated measurements; the raw values are kept for later tests
    (a median hides a regression when the spread is high, so compare.py needs them)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    values: tuple[float, ...]

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr, "min": self.min,
                "max": self.max, "values": list(self.values)}


def summarize(values: Sequence[float]) -> Stats:
    if len(values) == 0:
        raise ValueError("no values to summarize")
    a = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])  # linear interpolation (numpy default)
    return Stats(float(med), float(q1), float(q3), float(a.min()), float(a.max()), tuple(float(v) for v in a))


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


class RssSampler:
    """Samples this process's RSS on a thread; `peak_bytes` is the highest value seen.

    Runs only in the worker's separate memory pass: a sampling thread competes for the same
    cores, so it must never be on during the timed pass."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval_s)

    def _take(self) -> None:
        r = int(self._proc.memory_info().rss)
        self.samples += 1
        if r > self.peak_bytes:
            self.peak_bytes = r

    def __enter__(self) -> "RssSampler":
        self._take()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()


def calibrate_matmul_gflops(threads: int, n: int = 1024, seconds: float = 0.4) -> float:
    """This machine's achievable fp32 GFLOP/s from a square numpy sgemm (best of a few timed
    batches), measured in the same run so `% of achievable` compares like with like.
    numpy's BLAS honours OPENBLAS/OMP thread variables the worker sets before start-up."""
    del threads  # the thread count is applied through the environment before numpy loads BLAS
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS thread pool start
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        dt = time.perf_counter() - t
        best = max(best, 3 * 2 * n ** 3 / dt / 1e9)
    return best


def cpu_threads_default() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_threads_default(duet: bool = True, alternate: bool = False) -> int:
    """Threads per process for `bench check` rounds. Alternate rounds (the default) take turns on
    every CPU, so each side's timed repeat has the whole machine: every core. Side-by-side rounds
    run base and head at once, so each gets half the cores. One after the other, each gets every
    core but one: a core left to the OS, the driver and the neighbours made rounds comparable on
    the 2-core development machine (per-round sd of log(head/base) for torch lstm128: 17% at 2
    threads, 10% at 1; results/published/check-power-*.md), and the rounds a check needs grow with
    its square. Taking turns cancels that noise instead (results/published/check-rounds-*)."""
    if alternate:
        return cpu_threads_default()
    return max(1, cpu_threads_default() // 2) if duet else max(1, cpu_threads_default() - 1)
