"""Did another program use the CPUs while a cell was timed? (issue 25: a busy machine noticed)

On 2026-12-02 a program held one of the development machine's two cores for twenty minutes
during `run --all`, and every cell was printed `ok`: torch lstm512 at 90 +- 116 samples/s
(~330 ms a step idle, 1,426 ms that day), torch lstm128 at "130% of sgemm". Nothing in a record
said the machine was busy. This module measures it, with no framework and no thread of its own:

  foreign CPU time = the busy time /proc/stat counts on the cell's CPUs
                     - the CPU time of this process (all its threads)

over the same wall-clock window, read as a number of cores (foreign CPU s / wall s). Steal time
(a hypervisor serving other VMs) is recorded beside it, not counted as foreign: it is not a
program on this machine, and nothing here could stop it.

Resolution. /proc/stat counts in clock ticks (1/USER_HZ, 10 ms here), per CPU; the process's
CPU time is read at a finer grain. So over a window of W seconds on C CPUs the estimate can be
off by up to ~2 ticks per CPU, 2*C*tick/W cores: 0.04 cores over a 1-second window on 2 CPUs.
A window is judged busy only when the estimate minus that resolution exceeds the threshold, so
a stated threshold decides, not the rounding of a short window.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..records.record import BUSY_PREFIX

# A cell is suspect when other processes used more than this many cores, on average, while it
# was timed. 0.10 = 10% of one core: room for the harness's own parent (its reader threads and
# the progress display share the cell's CPUs) and the OS, which together read 0.00-0.05 cores in
# 8 torch/JAX `ci` processes on the idle development machine (2026-12-02), and far below the
# 0.9-1.0 cores of the program that went unnoticed.
BUSY_THRESHOLD_CORES = 0.10
_STAT = "/proc/stat"
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _cpu_set() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return tuple(range(os.cpu_count() or 1))


def read_ticks(cpus: tuple[int, ...], path: str = _STAT) -> tuple[int, int] | None:
    """(busy ticks, steal ticks) summed over `cpus`, or None where /proc/stat is unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    busy = steal = 0
    seen = 0
    for line in lines:
        parts = line.split()
        if not parts or parts[0] not in wanted:
            continue
        v = [int(x) for x in parts[1:]] + [0] * 8
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy += v[0] + v[1] + v[2] + v[5] + v[6]
        steal += v[7]
        seen += 1
    return (busy, steal) if seen == len(wanted) else None


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    own_cpu_s: float
    busy_ticks: int | None
    steal_ticks: int | None
    cpus: tuple[int, ...]
    loadavg_1m: float | None


def snapshot(cpus: tuple[int, ...] | None = None, stat_path: str = _STAT) -> Snapshot:
    cpus = cpus if cpus is not None else _cpu_set()
    ticks = read_ticks(cpus, stat_path)
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = None
    return Snapshot(time.perf_counter(), time.process_time(), ticks[0] if ticks else None,
                    ticks[1] if ticks else None, cpus, load)


@dataclass(frozen=True)
class Contention:
    """What other programs did on the cell's CPUs during one or more windows (added up)."""
    window_s: float
    foreign_cpu_s: float | None  # None: /proc/stat unreadable (not Linux, or no procfs)
    steal_cpu_s: float | None
    own_cpu_s: float
    cpus: tuple[int, ...]
    loadavg_1m_max: float | None
    tick_s: float = _TICK_S
    windows: int = 1  # windows added up: each brings its own rounding of the tick counts

    @property
    def foreign_cores(self) -> float | None:
        if self.foreign_cpu_s is None or self.window_s <= 0:
            return None
        return max(0.0, self.foreign_cpu_s) / self.window_s

    @property
    def resolution_cores(self) -> float:
        """How far the tick counts alone can move foreign_cores (see the module's docstring): ~2
        ticks per CPU per window, so many short windows (an alternate round's repeats, watched one
        by one) are judged on their summed rounding, not one window's."""
        return 2 * len(self.cpus) * self.tick_s * self.windows / self.window_s if self.window_s > 0 else float("inf")

    def busy(self, threshold_cores: float = BUSY_THRESHOLD_CORES) -> bool:
        f = self.foreign_cores
        return f is not None and f - self.resolution_cores > threshold_cores

    def reason(self, what: str = "timing", threshold_cores: float = BUSY_THRESHOLD_CORES) -> str | None:
        if not self.busy(threshold_cores):
            return None
        return (f"{BUSY_PREFIX} other processes used {self.foreign_cores:.1f} of a core while {what} "
                f"(threshold {threshold_cores:g})")

    def __add__(self, other: "Contention") -> "Contention":
        def plus(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a + b

        loads = [v for v in (self.loadavg_1m_max, other.loadavg_1m_max) if v is not None]
        return Contention(self.window_s + other.window_s, plus(self.foreign_cpu_s, other.foreign_cpu_s),
                          plus(self.steal_cpu_s, other.steal_cpu_s), self.own_cpu_s + other.own_cpu_s,
                          tuple(sorted(set(self.cpus) | set(other.cpus))), max(loads) if loads else None,
                          self.tick_s, self.windows + other.windows)

    def to_dict(self, threshold_cores: float = BUSY_THRESHOLD_CORES) -> dict:
        return {"window_s": self.window_s, "foreign_cpu_s": self.foreign_cpu_s,
                "foreign_cores": self.foreign_cores, "resolution_cores": self.resolution_cores,
                "steal_cpu_s": self.steal_cpu_s, "own_cpu_s": self.own_cpu_s, "cpus": list(self.cpus),
                "loadavg_1m_max": self.loadavg_1m_max, "threshold_cores": threshold_cores, "windows": self.windows,
                "busy": self.busy(threshold_cores)}


def between(a: Snapshot, b: Snapshot, tick_s: float = _TICK_S) -> Contention:
    window = b.wall_s - a.wall_s
    own = b.own_cpu_s - a.own_cpu_s
    if a.busy_ticks is None or b.busy_ticks is None or a.cpus != b.cpus:
        foreign = steal = None
    else:
        foreign = (b.busy_ticks - a.busy_ticks) * tick_s - own
        steal = (b.steal_ticks - a.steal_ticks) * tick_s
    loads = [v for v in (a.loadavg_1m, b.loadavg_1m) if v is not None]
    return Contention(window, foreign, steal, own, a.cpus, max(loads) if loads else None, tick_s)


class Watch:
    """Adds up the contention of several windows: `with watch: ...` around each one."""

    def __init__(self) -> None:
        self.total: Contention | None = None
        self._start: Snapshot | None = None

    def __enter__(self) -> "Watch":
        self._start = snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        c = between(self._start, snapshot(self._start.cpus))
        self.total = c if self.total is None else self.total + c
        self._start = None
