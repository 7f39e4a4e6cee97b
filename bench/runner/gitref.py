"""Temporary git worktrees: `check --against REF` runs REF's own code (its worker included) from
a detached checkout of REF, removed when the check ends, and by the next check when a `kill -9`
left it behind.

Layout: <tmp>/lstm-bench-base-XXXX/ holds the owner file (bench.workers.owned: pid and start time of the
check) and tree/, the worktree itself (git wants that directory empty, so the owner file sits
beside it)."""
from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Hashable, Iterator, Mapping, TypeVar

from .. import envinfo
from ..workers import owned

PREFIX = "lstm-bench-base-"


class GitError(RuntimeError):
    pass


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(envinfo.REPO_ROOT), *args], capture_output=True, text=True)


def add_worktree(ref: str) -> Path:
    """A detached worktree of `ref` in a temporary directory (removed by remove_worktree)."""
    holder = owned.make(PREFIX)
    path = holder / "tree"
    out = _git("worktree", "add", "--detach", str(path), ref)
    if out.returncode != 0:
        owned.remove(holder)
        msg = (out.stderr.strip().splitlines() or ["git worktree failed"])[-1]
        raise GitError(f"cannot check out {ref!r}: {msg}")
    return path


def remove_worktree(path: Path) -> None:
    _git("worktree", "remove", "--force", str(path))
    if path.name == "tree":
        owned.remove(path.parent)


K = TypeVar("K", bound=Hashable)


@contextlib.contextmanager
def worktrees(refs: Mapping[K, str]) -> Iterator[dict[K, Path]]:
    """One detached worktree per name (of its ref) for the block's length, every one removed
    after, however the block ends (the benchmarks' A/B trees; check --against's one)."""
    made: dict[K, Path] = {}
    try:
        for name, ref in refs.items():
            made[name] = add_worktree(ref)
        yield made
    finally:
        for tree in made.values():
            remove_worktree(tree)


def prune_stale() -> list[Path]:
    """Remove the worktrees (and their directories) of checks whose process died; the ones removed."""
    gone = owned.stale(PREFIX)
    for holder in gone:
        _git("worktree", "remove", "--force", str(holder / "tree"))
        owned.remove(holder)
    if gone:
        _git("worktree", "prune")  # registrations whose directory is gone
    return gone
