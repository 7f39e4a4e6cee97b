"""`Side`: what one side of a measurement runs and where it goes. A plain run has one side; an
in-job A/B (`check --against`, `--calibrate`, `check --counts`) has two, base and head, each its
own code (a checkout, or a worktree of another commit) and its own run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import envinfo
from ..records.run import Run


@dataclass(frozen=True)
class Side:
    name: str = "run"
    code_root: Path = envinfo.REPO_ROOT  # the worker imports bench and impls from here
    run: Run | None = None  # where its records are filed (None: a counts process measured on its own)
    cpu: int | None = None  # a counts process pinned to this CPU (None: any)
    env: tuple[tuple[str, str], ...] = ()  # variables added to its processes' environment (benchmarks' injected work)
    # Package environments (bench.runner.envs.BuiltEnv) by name, for cells that name one; `own`:
    # the one every other cell of this side runs in (check --base-env own), None = this interpreter.
    envs: tuple[tuple[str, Any], ...] = ()
    own: Any = None

    def env_for(self, env_name: str) -> Any:
        """The BuiltEnv a cell of environment `env_name` runs in (None: this interpreter)."""
        if not env_name:
            return self.own
        found = dict(self.envs).get(env_name)
        assert found is not None, f"environment {env_name} was not built for side {self.name}"
        return found

    @property
    def run_dir(self) -> Path:
        assert self.run is not None, f"side {self.name} has no run"
        return self.run.directory
