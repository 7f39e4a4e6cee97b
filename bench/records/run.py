"""`Run`: one run directory and everything written into it.

Layout (nothing outside this module builds a path into a run):
    <run>/manifest.json              the plan and the run's state (`Manifest`)
    <run>/cells/<key>[.rN|.mN].json  one record per process (bench.records.results.cell_path)
    <run>/jobs/<stem>.json           the job each worker was given
    <run>/staging/<stem>/            where a worker writes its record before the runner files it
    <run>/counts/<key>/              a counts process's working files
    <run>/.lock                      held by the one process writing the run (bench.records.runlock)

A Run is opened for reading anywhere; it is written only by the process holding its lock. Every
manifest change is a named update that writes the manifest at once (atomically); every record
goes through `file`, which also keeps it in memory, so a check's decisions read the rounds as
they are filed instead of re-reading both runs from disk after every round.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .. import envinfo
from . import results, runlock
from ..spec import Cell

Key = tuple[str, int, str]  # (cell key, round, mode): one process of a cell

# Fields every manifest has had since schema version 1, written even when None.
_ALWAYS = ("run_id", "created_utc", "argv", "status", "profile", "data", "cells", "env")


@dataclass(frozen=True)
class Manifest:
    """A run's manifest. Optional fields are written only once set (so a manifest has the same
    keys it always had); keys this version does not know are kept as they were."""

    run_id: str
    created_utc: str
    cells: tuple[Mapping[str, Any], ...]  # {"key": ..., "cell": Cell.to_dict()} in planned order
    argv: tuple[str, ...] = ()
    status: str = "running"  # running | complete | interrupted | failed | done (a counts check)
    profile: str | None = None
    data: str | None = None  # the MNIST path the run measured on (None: the vendored file)
    rounds: Mapping[str, int] | None = None  # processes per cell (a run from before rounds: none)
    env: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] | None = None  # run --config: the file's text
    check_id: str | None = None  # check --against: the two sides share it
    side: str | None = None
    against: str | None = None
    estimate_s: float | None = None
    executor: str | None = None
    ray: Mapping[str, Any] | None = None
    sequential: Mapping[str, Any] | None = None  # check --against: the plan every look reads
    duet_cpus: tuple[tuple[int, ...], ...] | None = None
    duet_handshake: bool | None = None
    duet_design: str | None = None  # "alternate" (taking turns on one CPU set) or "side by side"
    counts: Mapping[str, int] | None = None
    envs: Mapping[str, Any] | None = None  # package environments: name -> spec, pin hash, pins (bench/runner/envs.py)
    finished_utc: str | None = None
    other: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.other)
        for f in dataclasses.fields(self):
            if f.name == "other":
                continue
            v = getattr(self, f.name)
            if v is None and f.name not in _ALWAYS:
                continue
            if f.name == "duet_cpus":
                v = [list(c) for c in v]
            elif f.name in ("cells", "argv"):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)} - {"other"}
        kw = {k: v for k, v in d.items() if k in names}
        kw["cells"] = tuple(d.get("cells") or ())
        kw["argv"] = tuple(d.get("argv") or ())
        if d.get("duet_cpus") is not None:
            kw["duet_cpus"] = tuple(tuple(int(c) for c in s) for s in d["duet_cpus"])
        kw.setdefault("created_utc", "")
        other = {k: v for k, v in d.items() if k not in names and k not in ("schema", "schema_version")}
        return cls(**kw, other=other)

    def planned_cells(self) -> list[Cell]:
        """The planned cells (a manifest entry that does not make a cell: one line, exit 2)."""
        out = []
        for i, c in enumerate(self.cells):
            try:
                out.append(Cell.from_dict(c["cell"]))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise results.ResultsError(f"run {self.run_id}: its manifest's cells[{i}] is not a cell "
                                           f"({type(e).__name__}: {e}): corrupt results file") from None
        return out


class Run:
    """One run directory: its layout, its manifest (named updates), its records (one writer)."""

    def __init__(self, directory: Path, manifest: Manifest):
        self.directory = Path(directory)
        self.manifest = manifest
        self._records: dict[Key, dict[str, Any]] | None = None  # read on first use, then kept current

    # --- making and opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, run_id: str, cells: Iterable[Cell], argv: Iterable[str], *,
               profile: str | None, data: str | None, rounds: Mapping[str, int] | None = None, threads: int = 0,
               **optional: Any) -> Run:
        """A new run (its manifest written); the caller holds its lock (`lock`)."""
        cells = list(cells)
        m = Manifest(run_id=results.check_run_id(run_id), created_utc=envinfo.utc_now(),
                     cells=tuple({"key": c.key, "cell": c.to_dict()} for c in cells), argv=tuple(argv),
                     profile=profile, data=data, rounds=dict(rounds or {"full": 1, "memory": 0}),
                     env=envinfo.environment(threads or (cells[0].threads if cells else 0)), **optional)
        run = cls(directory, m)
        run._write_manifest()
        run._records = {}
        return run

    @classmethod
    def bare(cls, directory: Path, run_id: str = "run") -> Run:
        """A Run object for a directory without a manifest (tools and tests that file records
        into a scratch directory); nothing is written until a record is filed."""
        return cls(directory, Manifest(run_id=results.check_run_id(run_id), created_utc="", cells=()))

    @classmethod
    def open(cls, directory: Path) -> Run:
        """An existing run (its manifest read and checked)."""
        return cls(directory, Manifest.from_dict(results.read_manifest(Path(directory))))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with runlock.hold(self.directory):
            yield

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    # --- layout ----------------------------------------------------------------------------------
    def cell_path(self, key: str, round_: int = 0, mode: str = "full") -> Path:
        return results.cell_path(self.directory, key, round_, mode)

    @property
    def staging_root(self) -> Path:
        return self.directory / "staging"

    def staging(self, key: str, round_: int, mode: str) -> Path:
        """Where the worker of this process writes its record (filed from there by `file`)."""
        return self.staging_root / self.cell_path(key, round_, mode).stem

    def job_path(self, key: str, round_: int, mode: str) -> Path:
        return self.directory / "jobs" / self.cell_path(key, round_, mode).name

    def counts_dir(self, key: str) -> Path:
        results.cell_path(self.directory, key)  # the key checked: it names a directory here too
        return self.directory / "counts" / key

    # --- the manifest: named updates, each written at once ---------------------------------------
    def _update(self, **changes: Any) -> None:
        self.manifest = dataclasses.replace(self.manifest, **changes)
        self._write_manifest()

    def _write_manifest(self) -> None:
        results.write_manifest(self.directory, self.manifest.to_dict())

    def planned(self, estimate_s: float, executor: str) -> None:
        """The run's time estimate (checked against the run afterwards) and its executor."""
        self._update(estimate_s=round(estimate_s, 1), executor=executor)

    def on_ray(self, address: str, code: str, nodes: list[dict[str, Any]]) -> None:
        self._update(executor="ray", ray={"address": address, "code": code, "nodes": nodes})

    def duet(self, cpus: tuple[tuple[int, ...], ...], handshake: bool | None = None,
             design: str | None = None) -> None:
        """check: the CPU sets of duet rounds (() = one side after the other), the handshake, and
        whether the sides take turns on one set (alternate) or run side by side."""
        changes: dict[str, Any] = {"duet_cpus": tuple(cpus)}
        if handshake is not None:
            changes["duet_handshake"] = handshake
        if design is not None:
            changes["duet_design"] = design
        self._update(**changes)

    def sequential_plan(self, spending: str, alpha: float, min_rounds: int, holm_family: int,
                        skew_allowance: float | None = None) -> None:
        """check --against: the plan every look reads; each cell's n_max is added before its first look."""
        plan = {"spending": spending, "alpha": alpha, "min_rounds": min_rounds, "holm_family": holm_family, "n_max": {}}
        if skew_allowance is not None:
            plan["skew_allowance"] = skew_allowance
        self._update(sequential=plan)

    def planned_rounds(self, key: str, n_max: int) -> None:
        plan = dict(self.manifest.sequential or {})
        plan["n_max"] = {**(plan.get("n_max") or {}), key: n_max}
        self._update(sequential=plan)

    def counted(self, counted_steps: int, warmup_steps: int) -> None:
        """check --counts: every cell counted; the run is done."""
        self._update(status="done", counts={"counted_steps": counted_steps, "warmup_steps": warmup_steps})

    def finish(self, status: str) -> None:
        """complete, interrupted or failed. A run that failed on its disk may not take this write:
        the error in flight says so, and a 'running' manifest without a lock holder reads as dead."""
        try:
            self._update(status=status, finished_utc=envinfo.utc_now())
        except OSError:
            if status != "failed":
                raise

    # --- records: one writer ---------------------------------------------------------------------
    def file(self, record: dict[str, Any], round_: int, mode: str, cpus: tuple[int, ...] = ()) -> dict[str, Any]:
        """File one process's record under the round and mode the runner gave it (the worker's own
        say is overwritten: a base worktree of older code knows nothing of rounds). The only code
        that writes a record into a run."""
        rec = {**record, "round": int(round_), "mode": mode}
        if cpus:
            rec["cpus"] = list(cpus)  # a duet round: where this process ran
        results.write_record(self.directory, rec)
        filed = {"schema": results.RECORD_SCHEMA, "schema_version": results.SCHEMA_VERSION, **rec}
        self._cache()[(rec["key"], rec["round"], mode)] = filed
        return filed

    def remove(self, rec: Mapping[str, Any]) -> None:
        """Drop one process record (--retry-failed / --retry-suspect measure it again)."""
        k = (rec["key"], int(rec.get("round", 0)), rec.get("mode", "full"))
        self.cell_path(*k).unlink(missing_ok=True)
        self._cache().pop(k, None)

    def has(self, key: str, round_: int, mode: str) -> bool:
        return (key, round_, mode) in self._cache()

    def record(self, key: str, round_: int = 0, mode: str = "full") -> dict[str, Any] | None:
        return self._cache().get((key, round_, mode))

    def rounds(self) -> list[dict[str, Any]]:
        """Every process record, in the manifest's planned order, then full before memory, then
        by round (what bench.records.results.read_rounds gives)."""
        order = {c["key"]: i for i, c in enumerate(self.manifest.cells)}
        return sorted(self._cache().values(), key=lambda r: (order.get(r["key"], len(order)),
                                                             r.get("mode", "full") != "full", int(r.get("round", 0))))

    def pooled(self) -> list[dict[str, Any]]:
        """One record per cell, its processes pooled (bench.records.pool)."""
        from .pool import pool_records

        return pool_records(self.rounds())

    def _cache(self) -> dict[Key, dict[str, Any]]:
        if self._records is None and not (self.directory / "manifest.json").is_file():
            self._records = {}  # a run being made (or a test's bare directory): nothing filed yet
        if self._records is None:
            self._records = {(r["key"], int(r.get("round", 0)), r.get("mode", "full")): r
                             for r in results.read_rounds(self.directory)}
        return self._records
