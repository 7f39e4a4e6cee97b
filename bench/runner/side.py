"""`Side`: what one side of a measurement runs and where it goes. A plain run has one side; an
in-job A/B (`check --against`, `--calibrate`, `check --counts`) has two, base and head, each its
own code (a checkout, or a worktree of another commit) and its own run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import envinfo
from ..records.run import Run


@dataclass(frozen=True)
class Side:
    name: str = "run"
    code_root: Path = envinfo.REPO_ROOT  # the worker imports bench and impls from here
    run: Run | None = None  # where its records are filed (None: a counts process measured on its own)
    cpu: int | None = None  # a counts process pinned to this CPU (None: any)
    env: tuple[tuple[str, str], ...] = ()  # variables added to its processes' environment (benchmarks' injected work)

    @property
    def run_dir(self) -> Path:
        assert self.run is not None, f"side {self.name} has no run"
        return self.run.directory
