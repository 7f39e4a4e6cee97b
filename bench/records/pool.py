"""Pool the process records of a cell (rounds) into the one record tables and plots show.

A cell measured in several fresh processes has one record per process. The process is the
unit of independence, so pooled figures are taken over per-process values, never over the
repeats of all processes thrown together:
- throughput and step time: the median of the per-process medians; `values` holds those
  per-process medians and `rounds` how many there are;
- accuracy: the mean over full rounds, with its sd;
- RSS growth: the median over every process that sampled it (memory-only rounds included),
  with the per-process values and their relative spread (max - min) / median;
- tensor-level memory: the pooled figure is the least over processes, and `tensor_spread`
  says how far processes disagreed. For torch and JAX every process reads the same figure.
  TF's graph mode picks an op order per instantiation, and each process keeps the least of
  several (impls/tf_impl.py); on a busy machine a quarter of cnn_tutorial's orders reach the
  least, so one process of 8 misses it about 1 time in 10, which a median over 4 processes
  would pass on to about 5% of cells. The least over processes (32 instantiations) misses it
  about 1 time in 10,000, and it is what the figure means: the memory the step needs in the
  best order the runtime picks.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np

from ..measure import summarize
from .record import Status

_PER_PROCESS_STATS = ("train_samples_per_s", "infer_samples_per_s", "step_ms")


def _spread(values: list[float]) -> float | None:
    med = float(np.median(values)) if values else 0.0
    return (max(values) - min(values)) / med if values and med > 0 else None


def measured_memory(rec: dict[str, Any]) -> tuple[int | None, str]:
    """The memory figure a cell is judged on, and its source: GPU the allocator peak; CPU the
    tensor-level figure when the framework gives one, else the (noisy) RSS growth."""
    mem = rec.get("memory") or {}
    if rec.get("device") == "gpu":
        return mem.get("allocator_peak_bytes"), "allocator peak"
    if mem.get("tensor_peak_bytes") is not None:
        return int(mem["tensor_peak_bytes"]), "tensor-level"
    rss = mem.get("rss_delta_train_bytes")
    return (int(rss) if rss is not None else None), "RSS growth"


def pool_cell(procs: list[dict[str, Any]]) -> dict[str, Any]:
    """One pooled record from the process records of one cell (any order, any status)."""
    full = [r for r in procs if r.get("mode", "full") == "full"]
    ok_full = [r for r in full if r.get("status") == Status.OK]
    ok_any = [r for r in procs if r.get("status") == Status.OK]
    base = copy.deepcopy(min(ok_full or full or procs, key=lambda r: int(r.get("round", 0))))
    base["rounds"] = {"full": len(ok_full), "memory": len(ok_any) - len(ok_full), "failed": len(procs) - len(ok_any)}
    if base.get("status") != Status.OK:
        return base
    m = base["metrics"]
    if len(ok_full) > 1:
        for name in _PER_PROCESS_STATS:
            meds = [r["metrics"][name]["median"] for r in ok_full if r["metrics"].get(name)]
            if meds:
                m[name] = {**summarize(meds).to_dict(), "per_process": True}
        accs = [r["metrics"]["test_accuracy"] for r in ok_full]
        m["test_accuracy"] = float(np.mean(accs))
        m["test_accuracy_sd"] = float(np.std(accs, ddof=1))
        m["test_accuracy_values"] = accs
    mem = base.setdefault("memory", {})
    rss = [int(r["memory"]["rss_delta_train_bytes"]) for r in ok_any
           if (r.get("memory") or {}).get("rss_delta_train_bytes") is not None]
    if rss:
        mem["rss_delta_train_bytes"] = int(np.median(rss))
        mem["rss_delta_rounds_bytes"] = rss
        mem["rss_delta_spread"] = _spread([float(v) for v in rss])
    tens = [int(r["memory"]["tensor_peak_bytes"]) for r in ok_any
            if (r.get("memory") or {}).get("tensor_peak_bytes") is not None]
    if tens:
        mem["tensor_peak_bytes"] = min(tens)
        mem["tensor_peak_rounds_bytes"] = tens
        mem["tensor_spread"] = _spread([float(v) for v in tens])
    a = base.setdefault("analytic", {})
    value, source = measured_memory(base)
    a["measured_memory_bytes"] = value
    a["measured_memory_source"] = source
    floor = a.get("train_floor_bytes")
    a["memory_over_floor"] = (value / floor) if (value and floor) else None
    # Derived here, when read, for every record (the worker stores the measurements only; records
    # written before that keep the figure they stored, which this recomputes from the same values).
    a["rss_over_floor"] = mem["rss_delta_train_bytes"] / floor if (rss and floor) else a.get("rss_over_floor")
    return base


def pool_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of any number of rounds -> one pooled record per cell key, in first-seen order."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault(r["key"], []).append(r)
    return [pool_cell(v) for v in by_key.values()]


def group_rounds(records: Iterable[dict[str, Any]], mode: str = "full") -> dict[str, dict[int, dict[str, Any]]]:
    """key -> round -> record, for one mode (a check pairs base and head by round)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        if r.get("mode", "full") == mode:
            out.setdefault(r["key"], {})[int(r.get("round", 0))] = r
    return out
