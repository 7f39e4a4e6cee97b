"""The one child protocol: every process the harness starts to measure something is given a
versioned job file (JSON: `job_version`, `kind`, the kind's fields) and leaves one result (JSON,
written atomically). Three kinds:
- "cell": `python -m bench.worker JOB.json`, one cell (`Job`); its result is the record, written
  into the job's `run_dir` (its staging directory), as every version's worker has written it.
- "overhead": `python -m bench.overhead JOB.json`; its result goes to the job's `out`.
- "counts": `bench/counts/child.py JOB.json` under valgrind; its result goes to the job's `out`.
  Started by path in a code root that may be an older commit's, it cannot import this module:
  it checks the version and kind with its own few lines.

The cell job is the contract between two versions of the code: `check --against REF` runs REF's
own worker on a job written by this checkout's runner. So its JSON keys stay those every worker
so far reads (cell, run_dir, run_id, data, round, mode); a key a worker does not know (`kind`) is
ignored by it, and `job_version` says which format this is: a worker that does not know the
version refuses the job in one line (REFUSED on stdout, exit 2), which the runner files as a
failed cell with that line as its reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import results
from ..spec import Cell

JOB_VERSION = 1
KNOWN_VERSIONS = (1,)
# Line prefixes on the worker's stdout, the channel the runner reads while the worker runs.
PROGRESS = "@progress"
REFUSED = "@refused"
EXIT_REFUSED = 2


KINDS = ("cell", "overhead", "counts")


class JobRefused(ValueError):
    """A job this worker cannot read: its one-line reason."""


def write_child_job(path: Path, kind: str, fields: dict[str, Any], out: Path) -> None:
    """An overhead or counts job: its fields, where its one result goes, the version and kind."""
    assert kind in KINDS and kind != "cell"
    results.atomic_write_json(Path(path), {"job_version": JOB_VERSION, "kind": kind, "out": str(out), **fields})


def read_child_job(path: Path, kind: str) -> dict[str, Any]:
    """A job file of `kind` (JobRefused: another version or kind, said in one line)."""
    d = json.loads(Path(path).read_text())
    version, got = d.get("job_version", 1), d.get("kind", kind)
    if version not in KNOWN_VERSIONS:
        raise JobRefused(f"job version {version!r} is unknown to this child (it reads "
                         f"{', '.join(map(str, KNOWN_VERSIONS))})")
    if got != kind:
        raise JobRefused(f"a {got!r} job given to the {kind} child")
    return d


def write_result(job: dict[str, Any], result: dict[str, Any]) -> None:
    results.atomic_write_json(Path(job["out"]), result)


def read_result(path: Path) -> dict[str, Any] | None:
    """A child's one result, or None when it left none (it died first)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Job:
    cell: Cell
    run_dir: str  # where the worker writes its record: a staging directory the runner files from
    run_id: str | None = None
    data: str | None = None  # MNIST file or directory (None = the vendored file)
    round: int = 0
    mode: str = "full"  # "full" measurement or "memory" only
    cpus: tuple[int, ...] = ()  # duet rounds: the CPUs the worker is pinned to (the record says so)
    # Duet rounds: where the runner signals that every side is ready for the next timed repeat
    # (bench/workers/handshake.py). An optional key: workers that predate it never get one.
    sync_dir: str | None = None
    version: int = JOB_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job_version": self.version, "kind": "cell", "round": self.round, "mode": self.mode,
                               "cell": self.cell.to_dict(), "run_dir": self.run_dir, "run_id": self.run_id,
                               "data": self.data}
        if self.cpus:
            out["cpus"] = list(self.cpus)
        if self.sync_dir:
            out["sync_dir"] = self.sync_dir
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        # A job without a version predates versioning; its keys are those of version 1.
        version = d.get("job_version", 1)
        if version not in KNOWN_VERSIONS:
            raise JobRefused(f"job version {version!r} is unknown to this worker (it reads "
                             f"{', '.join(map(str, KNOWN_VERSIONS))})")
        return cls(cell=Cell.from_dict(d["cell"]), run_dir=d["run_dir"], run_id=d.get("run_id"), data=d.get("data"),
                   round=int(d.get("round", 0)), mode=d.get("mode", "full"),
                   cpus=tuple(int(c) for c in d.get("cpus") or ()), sync_dir=d.get("sync_dir"), version=version)
