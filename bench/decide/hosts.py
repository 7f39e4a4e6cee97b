"""Which host a result set was measured on, by what decides its speed: CPU model, the ISA flags
the frameworks' kernels choose between, core count, memory, and the sgemm rate every timed
process reads. A machine id alone is not enough: two hosts of this project answered to one id
(results/baselines/cpu-2core-quick read sgemm 204 GFLOP/s, cpu-2core-quick-tensor-memory 131,
the same id and CPU name), and the same cell read 4,000 to 11,600 samples/s across hosts."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable

# Processes of one host read their sgemm within ~10% (25% on a busy hour); hosts of one kind
# differed by 1.5x to 4x. A ratio past this is read as another host.
SGEMM_BAND = 1.4
LINE_START = "host differs"  # how mismatch's line starts, so a list of differences can be sorted by kind


def is_mismatch(line: str) -> bool:
    """Whether one of compare.differences' lines is a host mismatch (its own override)."""
    return line.startswith(LINE_START)


@dataclass(frozen=True)
class Host:
    cpu_model: str | None
    cpu_flags: tuple[str, ...] | None  # None: records from before flags were recorded
    cores: int | None
    memory_gb: int | None
    sgemm_gflops: float | None  # the median over the set's timed CPU processes

    def describe(self) -> str:
        parts = [self.cpu_model or "?", f"{self.cores or '?'} CPUs"]
        if self.memory_gb:
            parts.append(f"{self.memory_gb} GB")
        if self.cpu_flags:
            parts.append(" ".join(f for f in self.cpu_flags if f.startswith(("avx512f", "amx_tile", "avx2"))))
        if self.sgemm_gflops:
            parts.append(f"sgemm {self.sgemm_gflops:.0f} GFLOP/s")
        return ", ".join(p for p in parts if p)


def host_of(recs: Iterable[dict[str, Any]]) -> Host:
    recs = list(recs)
    envs = [r.get("env") or {} for r in recs if r.get("env")]

    def one(key: str) -> Any:
        vals = {str(e.get(key)) for e in envs if e.get(key) is not None}
        return next(iter(vals)) if len(vals) == 1 else ("/".join(sorted(vals)) if vals else None)

    flags = {tuple(e["cpu_flags"]) for e in envs if e.get("cpu_flags") is not None}
    mem = {e.get("memory_total_bytes") for e in envs if e.get("memory_total_bytes")}
    cores = {e.get("cpu_logical_cores") for e in envs if e.get("cpu_logical_cores")}
    sgemm = [float((r.get("analytic") or {}).get("calibration_gflops")) for r in recs
             if r.get("status") == "ok" and (r.get("analytic") or {}).get("calibration_gflops")]
    return Host(cpu_model=one("cpu_model"), cpu_flags=next(iter(flags)) if len(flags) == 1 else None,
                cores=next(iter(cores)) if len(cores) == 1 else None,
                memory_gb=round(next(iter(mem)) / 2**30) if len(mem) == 1 else None,
                sgemm_gflops=statistics.median(sgemm) if sgemm else None)


def mismatch(base: Iterable[dict[str, Any]], head: Iterable[dict[str, Any]]) -> str | None:
    """Why the two sets come from different hosts (one line), or None when nothing says so."""
    b, h = host_of(base), host_of(head)
    why = []
    if b.cpu_model and h.cpu_model and b.cpu_model != h.cpu_model:
        why.append("CPU model")
    if b.cpu_flags is not None and h.cpu_flags is not None and b.cpu_flags != h.cpu_flags:
        why.append("ISA flags")
    if b.cores and h.cores and b.cores != h.cores:
        why.append("core count")
    if b.memory_gb and h.memory_gb and abs(b.memory_gb - h.memory_gb) > 1:
        why.append("memory")
    if b.sgemm_gflops and h.sgemm_gflops and max(b.sgemm_gflops, h.sgemm_gflops) / min(b.sgemm_gflops,
                                                                                       h.sgemm_gflops) > SGEMM_BAND:
        why.append(f"sgemm rate ({max(b.sgemm_gflops, h.sgemm_gflops) / min(b.sgemm_gflops, h.sgemm_gflops):.2f}x "
                   f"apart, past the {SGEMM_BAND}x one host shows)")
    if not why:
        return None
    return (f"{LINE_START} ({', '.join(why)}: another host, or one hour much busier than the other): "
            f"base {b.describe()}; head {h.describe()}")
