"""A history of per-push figures that lasts: one JSON file, schema-versioned, written atomically,
committed to a data branch by CI (as github-action-benchmark keeps its data.js on gh-pages), so
it never expires the way an actions/cache entry does after 7 days unused.

Each point is one push: its commit, when it was added, and the figures `bench export` writes
for github-action-benchmark (the same names, so a series here is the same measurement as a
chart there), each with its unit and direction. bench.decide.trend judges the series.

  {"schema": "lstm-bench-history", "version": 1,
   "points": [{"commit": "a92d680...", "added": "2026-12-08T02:00:00Z", "run_id": "...",
               "figures": [{"name": "torch lstm128 cpu b128 step ms", "unit": "ms", "value": 41.2,
                            "bigger_is_better": false}, ...]}, ...]}
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..records import results
from ..records.record import Record
from . import export

SCHEMA = "lstm-bench-history"
VERSION = 1
KNOWN_VERSIONS = (1,)


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    value: float
    bigger_is_better: bool


@dataclass(frozen=True)
class Point:
    commit: str
    added: str  # ISO 8601 UTC
    figures: tuple[Figure, ...]
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "added": self.added, "run_id": self.run_id,
                "figures": [{"name": f.name, "unit": f.unit, "value": f.value, "bigger_is_better": f.bigger_is_better}
                            for f in self.figures]}


@dataclass(frozen=True)
class Series:
    """One figure's values over the pushes that have it, oldest first."""
    name: str
    unit: str
    bigger_is_better: bool
    values: tuple[float, ...]
    commits: tuple[str, ...]


@dataclass(frozen=True)
class History:
    points: tuple[Point, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "version": VERSION, "points": [p.to_dict() for p in self.points]}

    def added(self, point: Point) -> "History":
        """With `point` as the newest push; a point of the same commit (a re-run of that push's
        job) is replaced, not counted twice."""
        return History(tuple(p for p in self.points if p.commit != point.commit) + (point,))

    def series(self) -> list[Series]:
        """Every figure's series, in the order first seen. A push that lacks a figure is missing
        data for that series (asv's convention), not a zero. A figure whose unit or direction
        changed starts a new series under its name with the unit appended: two kinds of figure
        are never spliced into one line."""
        found: dict[tuple[str, str, bool], list[tuple[float, str]]] = {}
        for p in self.points:
            for f in p.figures:
                found.setdefault((f.name, f.unit, f.bigger_is_better), []).append((f.value, p.commit))
        names = [k[0] for k in found]
        out = []
        for (name, unit, bigger), pts in found.items():
            shown = name if names.count(name) == 1 else f"{name} [{unit}{', bigger is better' if bigger else ''}]"
            out.append(Series(shown, unit, bigger, tuple(v for v, _ in pts), tuple(c for _, c in pts)))
        return out


def _bad(path: Path, why: str) -> results.ResultsError:
    return results.ResultsError(f"{path}: {why}: not an lstm-bench history file")


def _figure(path: Path, d: Any) -> Figure:
    if not isinstance(d, dict):
        raise _bad(path, "a figure is not an object")
    try:
        value = d["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad(path, f"figure {d.get('name')!r} has no finite value")
        if not isinstance(d["name"], str) or not isinstance(d["bigger_is_better"], bool):
            raise _bad(path, "a figure's name or direction has the wrong type")
        return Figure(d["name"], str(d.get("unit", "")), float(value), d["bigger_is_better"])
    except KeyError as e:
        raise _bad(path, f"a figure lacks {e.args[0]!r}") from None


def from_dict(d: Any, path: Path) -> History:
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise _bad(path, f"schema is {d.get('schema') if isinstance(d, dict) else None!r}, not {SCHEMA!r}")
    if d.get("version") not in KNOWN_VERSIONS:
        raise _bad(path, f"version {d.get('version')!r} is not one this lstm-bench reads ({KNOWN_VERSIONS})")
    points = d.get("points")
    if not isinstance(points, list):
        raise _bad(path, "no list of points")
    out = []
    for p in points:
        if not isinstance(p, dict) or not isinstance(p.get("commit"), str) or not isinstance(p.get("figures"), list):
            raise _bad(path, "a point lacks its commit or its figures")
        out.append(Point(p["commit"], str(p.get("added", "")), tuple(_figure(path, f) for f in p["figures"]),
                         p.get("run_id")))
    return History(tuple(out))


def read(path: Path, missing_ok: bool = False) -> History:
    """The history at `path`; a missing file is an empty history only when `missing_ok` (the first
    push that adds a point), else bad input."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return History()
        raise results.ResultsError(f"{path}: no such history file (the first `trend --add` creates it)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, f"not JSON ({e})") from None
    return from_dict(d, path)


def write(path: Path, history: History) -> None:
    results.atomic_write_json(Path(path), history.to_dict())


def point_from_run(run_dir: Path, commit: str | None = None, now: datetime | None = None) -> Point:
    """A push's point: the run's figures as `bench export` names them. The commit is the one
    given, else the one the run's records were made at."""
    records = results.read_records(run_dir)
    lists = export.github_action_benchmark(records)
    figures = tuple(Figure(e["name"], e["unit"], float(e["value"]), direction == "bigger")
                    for direction in ("bigger", "smaller") for e in lists[direction])
    if not figures:
        raise results.ResultsError(f"{run_dir}: the run has no ok cell: nothing to add to the history")
    if commit is None:
        commits = {str(c) for c in (Record(r).git_commit for r in records) if c}
        if len(commits) != 1:
            raise results.ResultsError(f"{run_dir}: give --commit (the run's records name "
                                       f"{len(commits) or 'no'} commits)")
        commit = commits.pop()
    added = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Point(commit, added, figures, run_dir.name)
