"""Records on disk: schema, atomic writes, reading runs back (flattened for the tidy tables, bench.tidy).

Layout: results/<run-id>/manifest.json  (the plan: every cell's spec and key)
        results/<run-id>/cells/<key>.json  (one record per finished cell)
A record is written with write-to-temp + fsync + rename, so a crash or Ctrl-C never leaves a
half-written file: a cell either has its whole record or none (and --resume reruns it).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .record import Status

RECORD_SCHEMA = "lstm-bench/record"
MANIFEST_SCHEMA = "lstm-bench/manifest"
SCHEMA_VERSION = 1
STATUSES = tuple(Status)


class ResultsError(ValueError):
    """A results file or run a user pointed at that cannot be used; one line, exit 2."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-to-temp + fsync + rename: a reader sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode())


def read_json(path: Path, schema: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except OSError as e:
        raise ResultsError(f"cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path} is not valid JSON ({e}): corrupt results file") from None
    if not isinstance(obj, dict) or obj.get("schema") != schema:
        raise ResultsError(f"{path} is not a {schema} file")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{path} has schema version {version}; this lstm-bench reads version {SCHEMA_VERSION}")
    return obj


MODES = ("full", "memory")  # a full measurement, or a memory-only process (RSS in rounds)


def cell_path(run_dir: Path, key: str, round_: int = 0, mode: str = "full") -> Path:
    """Round 0 of a full measurement is `<key>.json`; further processes of the same cell are
    `<key>.r<N>.json` (full) and `<key>.m<N>.json` (memory only)."""
    if mode not in MODES:
        raise ValueError(f"bad record mode {mode!r}")
    if round_ == 0 and mode == "full":
        return run_dir / "cells" / f"{key}.json"
    return run_dir / "cells" / f"{key}.{'r' if mode == 'full' else 'm'}{round_}.json"


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    record = {"schema": RECORD_SCHEMA, "schema_version": SCHEMA_VERSION, "round": 0, "mode": "full", **record}
    if record.get("status") not in STATUSES:
        raise ValueError(f"bad record status {record.get('status')!r}")
    path = cell_path(run_dir, record["key"], int(record["round"]), record["mode"])
    atomic_write_json(path, record)
    return path


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "manifest.json",
                      {"schema": MANIFEST_SCHEMA, "schema_version": SCHEMA_VERSION, **manifest})


def resolve_run(ref: str | Path, results_dir: Path) -> Path:
    """A run id (under results_dir) or a path to a run directory."""
    p = Path(ref)
    for cand in (p, results_dir / str(ref)):
        if (cand / "manifest.json").is_file():
            return cand
    raise ResultsError(f"no run {str(ref)!r} (looked for manifest.json in {p} and {results_dir / str(ref)})")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / "manifest.json", MANIFEST_SCHEMA)


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    """Every process record of a run (all rounds, full and memory-only), in the manifest's
    planned order, then by round; a corrupt file is an error, not silently dropped."""
    manifest = read_manifest(run_dir)
    order = {k: i for i, k in enumerate(c["key"] for c in manifest.get("cells", []))}
    recs = [read_json(p, RECORD_SCHEMA) for p in sorted((run_dir / "cells").glob("*.json"))]
    return sorted(recs, key=lambda r: (order.get(r.get("key"), len(order)), r.get("mode", "full") != "full",
                                       int(r.get("round", 0))))


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """One record per cell: a cell measured in several processes (rounds) is pooled, its
    figures taken over per-process values (bench.pool)."""
    from .pool import pool_records

    return pool_records(read_rounds(run_dir))


def finished_keys(run_dir: Path) -> set[str]:
    """Cells whose first full measurement has a record (what --resume skips)."""
    out = set()
    for p in (run_dir / "cells").glob("*.json"):
        try:
            rec = read_json(p, RECORD_SCHEMA)
        except ResultsError:
            continue  # a corrupt record counts as missing: --resume reruns that cell
        if rec.get("mode", "full") == "full" and int(rec.get("round", 0)) == 0:
            out.add(rec["key"])
    return out


def list_runs(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    runs = [p for p in results_dir.iterdir() if (p / "manifest.json").is_file()]
    return sorted(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)  # oldest first


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record -> one flat row (dotted keys) for pandas."""
    row: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            row[prefix] = obj

    walk("", record)
    return row
