"""Synchronised timed repeats for duet rounds: a handshake through the runner before each repeat.

In a duet round (check --against on CPU) base and head run at once, one per CPU set. They share
the machine's caches, memory bandwidth and neighbours, and the round cancels what they share only
if their timed windows overlap. Started together, two processes still drift apart by their
start-up and warm-up times, so without a handshake head's repeat 3 may run beside base's
evaluation. Here each worker, before each training repeat, prints `@ready R` on stdout (the channel
the runner already reads) and waits outside every timer until the runner, having seen `@ready R`
from every side of the round, creates `go.R` in the round's sync directory. A side whose process
ends (done, crashed, killed) leaves the rendezvous, so the other is never left waiting for it.

A worker that waits longer than its timeout goes on alone and its record says so; a worker of
older code (a base REF before the handshake) never gets a sync directory: `supported` asks each
side's code first, and the check says when its rounds run unsynchronised.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

READY = "@ready"  # line prefix on the worker's stdout: "@ready R" before training repeat R
ALL = "go.all"  # every later wait is released (a side left)
POLL_S = 0.0002  # the waiting worker sleeps this long between looks: starts agree to ~1 ms
WAIT_TIMEOUT_S = 300.0  # a side that never comes (a hang): go on alone and say so


def go_path(directory: Path, repeat: int) -> Path:
    return directory / f"go.{repeat}"


class Rendezvous:
    """The runner's side of one round's handshake, shared by the round's two watching threads."""

    def __init__(self, directory: Path, parties: int) -> None:
        self.directory = directory
        self.parties = parties
        self._ready: dict[int, int] = {}
        self._left = 0
        self._lock = threading.Lock()

    def ready(self, repeat: int, barrier: bool = False) -> None:
        """A side printed `@ready repeat`; the last of the sides present lets every side go (every
        wait is a barrier here: `barrier` is for alternate rounds, bench/workers/turns.py)."""
        with self._lock:
            self._ready[repeat] = self._ready.get(repeat, 0) + 1
            if self._ready[repeat] + self._left >= self.parties:
                _touch(go_path(self.directory, repeat))

    def leave(self) -> None:
        """A side's process ended: no one waits for it from now on."""
        with self._lock:
            self._left += 1
            _touch(self.directory / ALL)


def _touch(path: Path) -> None:
    # Created whole by one system call: the waiting worker sees it or does not, never half.
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def wait_for_go(directory: str, repeat: int, timeout_s: float = WAIT_TIMEOUT_S) -> tuple[float, bool]:
    """The worker's side: announce repeat `repeat` and wait for the runner's go.
    Returns (seconds waited, whether it timed out and goes on alone)."""
    d = Path(directory)
    print(f"{READY} {repeat}", flush=True)
    t0 = time.perf_counter()
    go, everyone = go_path(d, repeat), d / ALL
    while not (go.exists() or everyone.exists()):
        if time.perf_counter() - t0 > timeout_s:
            return time.perf_counter() - t0, True
        time.sleep(POLL_S)
    return time.perf_counter() - t0, False


def supported(code_root: Path) -> bool:
    """Whether the worker of the code at `code_root` takes part in the handshake. Read from its
    files, not by importing it: an editable install would lend it this checkout's module."""
    # Where the module lay in the flat layout (commits before the layer packages) and where it lies now.
    return any((code_root / "bench" / sub / "handshake.py").is_file() for sub in ("", "workers"))
