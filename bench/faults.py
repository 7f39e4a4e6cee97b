"""Faults injected into a worker, for the harness's own tests (never set in a real run).

LSTM_BENCH_FAULT in the worker's environment switches one on, for the cells of one model:
  crash:<model>           the worker dies hard (SIGABRT, no record), the way a segfaulting kernel would;
  slow:<model>:<seconds>  a fixed sleep after every training step, so the regression check can be
                          tested against a real, known slowdown. A fixed sleep, not a factor: it does
                          not shrink when the machine is busy.
  work:<model>:<n>        real extra compute in every training step: one n x n float32 matmul (numpy),
                          so counts (bench.counts) can be tested against a known rise in instructions.
The worker calls `inject` once, when the trainer is built; without the variable it does nothing.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from .spec import Cell

VARIABLE = "LSTM_BENCH_FAULT"


def inject(cell: Cell, trainer: Any) -> None:
    kind, _, rest = os.environ.get(VARIABLE, "").partition(":")
    model, _, seconds = rest.partition(":")
    if model != cell.model.name:
        return
    if kind == "crash":
        print(f"injected crash ({VARIABLE})", file=sys.stderr, flush=True)
        os.abort()
    if kind == "slow":
        _slow_down(trainer, float(seconds))
    if kind == "work":
        _extra_work(trainer, int(seconds))


def _slow_down(trainer: Any, extra_s: float) -> None:
    step = trainer.train_step

    def slow_step(batch: Any) -> Any:
        out = step(batch)
        trainer.sync()
        time.sleep(extra_s)
        return out

    trainer.train_step = slow_step


def _extra_work(trainer: Any, n: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    step = trainer.train_step

    def working_step(batch: Any) -> Any:
        out = step(batch)
        np.matmul(a, b)
        return out

    trainer.train_step = working_step
