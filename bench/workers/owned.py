"""Temporary directories that name their owner: a file inside holds the pid and start time of the
process that made it, so a later command can remove those whose owner is gone (a `kill -9`
skips every cleanup) and never one whose owner still runs.

The start time guards against pid reuse: a pid alive with another start time is another process.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

OWNER_FILE = ".lstm-bench-owner"


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # after the command name, which may hold spaces


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def make(prefix: str, root: Path | None = None) -> Path:
    """A new directory under the temporary directory (or `root`), with this process as its owner."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    (path / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid())}))
    return path


def owner_alive(path: Path) -> bool:
    """Whether the process that made `path` still runs (True when that cannot be told)."""
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # not ours, or unreadable: never treated as stale
    if not pid_alive(pid):
        return False
    ticks = owner.get("start_ticks")
    now = _start_ticks(pid)
    return ticks is None or now is None or now == ticks


def stale(prefix: str, root: Path | None = None) -> list[Path]:
    """This tool's directories named `prefix*` whose owner process is gone."""
    base = Path(root or tempfile.gettempdir())
    return sorted(p for p in base.glob(f"{prefix}*")
                  if p.is_dir() and not p.is_symlink() and (p / OWNER_FILE).is_file() and not owner_alive(p))


def remove(path: Path) -> None:
    """Remove a directory this tool made (marked by its owner file); anything else is left alone."""
    if (path / OWNER_FILE).is_file() and not path.is_symlink():
        with contextlib.suppress(OSError):
            shutil.rmtree(path)


def prune(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove this tool's `prefix*` directories whose owner is gone; the ones removed."""
    gone = stale(prefix, root)
    for path in gone:
        remove(path)
    return gone
