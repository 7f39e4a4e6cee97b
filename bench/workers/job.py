"""The job a runner hands to `python -m bench.worker JOB.json`: one cell, where to write its record.

The job file is the contract between two versions of the code: `check --against REF` runs REF's
own worker on a job written by this checkout's runner. So the JSON keys stay those every worker
so far reads (cell, run_dir, run_id, data, round, mode), and `job_version` says which format this
is: a worker that does not know the version refuses the job in one line (REFUSED on stdout,
exit 2), which the runner files as a failed cell with that line as its reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..spec import Cell

JOB_VERSION = 1
KNOWN_VERSIONS = (1,)
# Line prefixes on the worker's stdout, the channel the runner reads while the worker runs.
PROGRESS = "@progress"
REFUSED = "@refused"
EXIT_REFUSED = 2


class JobRefused(ValueError):
    """A job this worker cannot read: its one-line reason."""


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
        out: dict[str, Any] = {"job_version": self.version, "round": self.round, "mode": self.mode,
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
