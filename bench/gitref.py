"""Temporary git worktrees: `check --against REF` runs REF's own code (its worker included) from
a detached checkout of REF, removed when the check ends."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from . import envinfo


class GitError(RuntimeError):
    pass


def add_worktree(ref: str) -> Path:
    """A detached worktree of `ref` in a temporary directory (removed by remove_worktree)."""
    path = Path(tempfile.mkdtemp(prefix="lstm-bench-base-"))
    out = subprocess.run(["git", "-C", str(envinfo.REPO_ROOT), "worktree", "add", "--detach", str(path), ref],
                         capture_output=True, text=True)
    if out.returncode != 0:
        path.rmdir()
        msg = (out.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise GitError(f"cannot check out {ref!r}: {msg}")
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(envinfo.REPO_ROOT), "worktree", "remove", "--force", str(path)],
                   capture_output=True, text=True)
