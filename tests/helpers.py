"""Helpers shared by the tests (imported as `helpers`: tests/conftest.py puts this folder on the path)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.records.run import Run
from bench.runner.side import Side
from bench.spec import Cell


def new_run(run_dir: Path, cells: list[Cell] = (), run_id: str | None = None, **optional: Any) -> Run:
    """A fresh run in `run_dir` (its manifest written), as `run` makes one."""
    return Run.create(run_dir, run_id or run_dir.name, cells, [], profile=None, data=None, **optional)


def new_side(run_dir: Path, name: str = "run", cells: list[Cell] = (), code_root: Path = Path("."),
             **optional: Any) -> Side:
    """One side of a run or an A/B check: its run made fresh in `run_dir`."""
    return Side(name, code_root, new_run(run_dir, cells, **optional))
