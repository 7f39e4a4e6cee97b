"""One runner per run: an exclusive lock on `<run dir>/.lock` for as long as a command writes
into the run (run, run --resume, check --against's two sides).

flock(2), not a pid file: the kernel drops the lock when its holder dies however it dies
(kill -9 included), so a stale lock never blocks. The file keeps the holder's pid only to name
it in the refusal; it is left in place (deleting a lock file races with a process that has it
open, and two processes could then each hold a lock on a different file).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .results import ResultsError

LOCK_NAME = ".lock"


class RunBusy(ResultsError):
    """Another live process holds the run; one line, exit 2."""


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s lock (creating the directory) until the block ends; a RunBusy naming the
    holder's pid when another process holds it."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    # O_CLOEXEC (Python's default): workers and warm parents started with exec never inherit it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunBusy(f"run {run_dir.name} is in use by process {holder(run_dir) or '(unknown pid)'}: "
                          f"wait for it to end (or stop it) before running or resuming the same run") from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if locked and created:  # a run that wrote nothing (its first write failed): the directory this call made goes
            with contextlib.suppress(OSError):
                if os.listdir(run_dir) == [LOCK_NAME]:
                    path.unlink()
                    run_dir.rmdir()
        os.close(fd)  # releases the lock


def holder(run_dir: Path) -> int | None:
    """The pid written by the process that holds (or last held) the run's lock."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((Path(run_dir) / LOCK_NAME).read_text().split()[0])
    return None


def is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run (a manifest saying "running" without one: it died)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
