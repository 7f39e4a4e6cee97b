"""Alternate rounds: base and head take turns on the same CPUs, one timed repeat at a time.

Why. On a shared VM the speed of a virtual CPU moves in steps that last about a second (another
tenant on the host core's sibling, say): tonight's 2-vCPU Xeon ran one torch lstm128 process at
3,300, 4,000 or 5,800 samples/s and switched between them inside one process. Side by side, base
and head sit on different virtual CPUs whose steps are barely related (pairing correlation
-0.3..+0.6), so a round's head/base read 16-23% of spread. Taking turns on one CPU, repeat R of
one side right after repeat R of the other, both see the same step, and it cancels: 2.9% (95% CI
2.1..4.5%) against 15.9% side by side in the same hour (benchmarks/alternate_probe.py,
results/published/check-rounds-*).

How. Every timed section of a worker (the sgemm calibration, each training repeat, each inference
repeat) is a *turn*: the worker prints `@ready N` and blocks on its own FIFO (no CPU while the
other side is timed). After a group of turns it waits at a *barrier* (`@ready N all`), so neither
side starts untimed work (building, evaluating) while the other is timed. The runner (`Turns`)
lets one side go at a time, and only when every side is waiting: nothing of the harness runs on
those CPUs while a side is timed. At turn N the side N mod 2 goes first (the runner swaps the
sides' order every round), so each goes first equally often (A B, B A, ...: drift cancels).

A side whose process ends leaves; the other then takes every turn alone. A wait past its timeout
goes on alone and the record says so. Code before this module has no turns: `supported` tells.
"""
from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path

from .handshake import READY

FIFO = "turn"  # in each side's seat directory: the runner writes one byte per turn
GO, ALONE = b"g", b"a"  # a turn; every later wait released (the other side left)
BARRIER = "all"  # `@ready N all`: every side goes together
WAIT_TIMEOUT_S = 300.0
PROTOCOL = "turns-1"  # read from the file by `supported` (an older REF's code is read, not imported)


def supported(code_root: Path) -> bool:
    """Whether the worker of the code at `code_root` takes turns (read from its files)."""
    f = code_root / "bench" / "workers" / "turns.py"
    try:
        return PROTOCOL in f.read_text(encoding="utf-8")
    except OSError:
        return False


def is_seat(sync_dir: str) -> bool:
    return (Path(sync_dir) / FIFO).exists()


class Seat:
    """The worker's side: one process's place in an alternate round."""

    def __init__(self, directory: str) -> None:
        # O_RDWR: opening never blocks waiting for a writer, and a read blocks until a byte comes.
        self.fd = os.open(Path(directory) / FIFO, os.O_RDWR)
        self.index = 0
        self.alone = False

    def wait(self, barrier: bool = False, timeout_s: float = WAIT_TIMEOUT_S) -> tuple[float, bool]:
        """Announce the next turn (or barrier) and block until the runner says go. Returns
        (seconds waited, whether it went on alone: timed out, or the other side had left)."""
        index, self.index = self.index, self.index + 1
        if self.alone:
            return 0.0, True
        print(f"{READY} {index}{' ' + BARRIER if barrier else ''}", flush=True)
        t0 = time.perf_counter()
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            self.alone = True
            return time.perf_counter() - t0, True
        self.alone = os.read(self.fd, 1) == ALONE
        return time.perf_counter() - t0, self.alone


class Turns:
    """The runner's side of one alternate round of `parties` processes (seat i for party i)."""

    def __init__(self, directory: Path, parties: int) -> None:
        self.directory = directory
        self.parties = parties
        self._fds: list[int] = []
        for i in range(parties):
            seat = self.seat_dir(i)
            seat.mkdir()
            os.mkfifo(seat / FIFO)
            self._fds.append(os.open(seat / FIFO, os.O_RDWR | os.O_NONBLOCK))
        self._at: list[tuple[int, bool] | None] = [None] * parties  # (turn, barrier) a party waits at; None: working
        self._running: int | None = None  # the party taking its turn now
        self._left: set[int] = set()
        self._lock = threading.Lock()

    def seat_dir(self, party: int) -> Path:
        return self.directory / f"seat{party}"

    def seat(self, party: int) -> "SeatView":
        return SeatView(self, party)

    def ready(self, party: int, index: int, barrier: bool) -> None:
        with self._lock:
            self._at[party] = (index, barrier)
            if self._running == party:
                self._running = None
            self._release()

    def leave(self, party: int) -> None:
        """A side's process ended (done, crashed, killed): the others go on alone from here, at
        once if they wait now, else at their next wait (the byte waits in their FIFO)."""
        with self._lock:
            for p in range(self.parties):
                if p not in self._left:
                    if p != party:
                        self._write(p, ALONE)
                    self._left.add(p)
            self._running = None

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _write(self, party: int, byte: bytes) -> None:
        try:
            os.write(self._fds[party], byte)
        except OSError:  # the FIFO closed with the round: nothing left to release
            pass

    def _release(self) -> None:
        """Let a side go when every side is waiting: at a barrier all of them, else the side whose
        turn it is among those furthest behind."""
        if self._running is not None:
            return
        active = [p for p in range(self.parties) if p not in self._left]
        if not active or any(self._at[p] is None for p in active):
            return  # a side is working outside every timer: no one is timed beside it
        index = min(self._at[p][0] for p in active)  # type: ignore[index]
        behind = [p for p in active if self._at[p][0] == index]  # type: ignore[index]
        if self._at[behind[0]][1]:  # type: ignore[index]
            if len(behind) == len(active):
                for p in active:
                    self._at[p] = None
                    self._write(p, GO)
            return
        first = min(behind, key=lambda p: (p - index) % self.parties)
        self._at[first] = None
        self._running = first
        self._write(first, GO)


class SeatView:
    """One party's view of the round, handed to the process that watches its worker."""

    def __init__(self, turns: Turns, party: int) -> None:
        self.turns, self.party = turns, party
        self.directory = turns.seat_dir(party)

    def ready(self, index: int, barrier: bool = False) -> None:
        self.turns.ready(self.party, index, barrier)

    def leave(self) -> None:
        self.turns.leave(self.party)
