"""Records on disk: schema, atomic writes, reading runs back (flattened for the tidy tables, bench.show.tidy).

Layout: results/<run-id>/manifest.json  (the plan: every cell's spec and key)
        results/<run-id>/cells/<key>.json  (one record per finished cell)
A record is written with write-to-temp + fsync + rename, so a crash or Ctrl-C never leaves a
half-written file: a cell either has its whole record or none (and --resume reruns it).
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .record import Status

RECORD_SCHEMA = "lstm-bench/record"
MANIFEST_SCHEMA = "lstm-bench/manifest"
SCHEMA_VERSION = 1
STATUSES = tuple(Status)
MODES = ("full", "memory")  # a full measurement, or a memory-only process (RSS in rounds)


class ResultsError(ValueError):
    """A results file or run a user pointed at that cannot be used; one line, exit 2."""


# A run id is a name, never a path: it becomes one directory directly under the results
# directory, so a separator, '.' or '..' (or anything leading with a dot) could reach outside it
# (`run --dry-run --run-id ..` once deleted the checkout it ran in).
RUN_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A cell key names its record file (bench.spec.Cell.key: framework.variant.model.device.b.p.t.digest).
KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]{0,254}")


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a valid run id, else a ResultsError (one line, exit 2)."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise ResultsError(f"bad run id {run_id!r}: a run id is a name of up to 128 letters, digits, '_', '-' and "
                           f"'.' (not leading), with no path separator")
    return run_id


def run_dir(results_dir: Path, run_id: str) -> Path:
    """The directory of run `run_id`: directly inside `results_dir`, checked after resolving
    links, so nothing this run writes or deletes can land outside the results directory."""
    check_run_id(run_id)
    root = Path(results_dir).resolve()
    path = (root / run_id).resolve()
    if path.parent != root:  # a link named like a run that points elsewhere
        raise ResultsError(f"run {run_id!r} in {results_dir} resolves to {path}, outside the results directory")
    return path


def inside(results_dir: Path, path: Path) -> Path:
    """`path` resolved, if it is a run directory directly inside `results_dir` (what a command
    that writes into a run given as a path may touch); else a one-line ResultsError."""
    resolved = Path(path).resolve()
    if resolved.parent != Path(results_dir).resolve():
        raise ResultsError(f"{path} is not a run in the results directory {results_dir}: give its run id, with "
                           f"--results-dir set to the directory that holds it")
    check_run_id(resolved.name)
    return resolved


# OS errors of the results disk, said in one line with what to do (bench.cli: exit 2).
STORAGE_ERRORS = {
    errno.ENOSPC: "the disk is full: free space, or give --results-dir on another disk",
    errno.EDQUOT: "the disk quota is used up: free space, or give --results-dir on another disk",
    errno.EROFS: "the file system is read-only: give --results-dir a writable directory",
    errno.EACCES: "permission denied: give --results-dir a directory you can write",
    errno.EPERM: "operation not permitted (an immutable file or directory?): give --results-dir a writable directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check --results-dir",
    errno.EEXIST: "a file stands where a directory must be: check --results-dir",
    errno.EISDIR: "a directory stands where a file must be",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ELOOP: "too many levels of symbolic links",
}


def os_error_line(e: OSError) -> str:
    """One line for an OS error on a results path: the path, the system's words, what to do."""
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "") if e.filename else "a results file"
    hint = STORAGE_ERRORS.get(e.errno or -1)
    return f"{where}: {e.strerror or e}" + (f" ({hint})" if hint else "")


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
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not e.filename:  # a failed write names no file: say which
            raise OSError(e.errno, e.strerror, str(path)) from e
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
    problem = _record_problem(obj) if schema == RECORD_SCHEMA else _manifest_problem(obj)
    if problem:
        raise ResultsError(f"{path}: {problem}: corrupt results file")
    return obj


def _record_problem(rec: dict[str, Any]) -> str | None:
    """What makes a record unusable (its fields that every reader relies on), or None."""
    key = rec.get("key")
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        return "field 'key' missing or not a cell key" if key is None or not isinstance(key, str) else \
            f"field 'key' {key!r} is not a cell key"
    if rec.get("status") not in STATUSES:
        return f"field 'status' is {rec.get('status')!r}, not one of {', '.join(STATUSES)}"
    if rec.get("mode", "full") not in MODES:
        return f"field 'mode' is {rec.get('mode')!r}, not one of {', '.join(MODES)}"
    if not isinstance(rec.get("round", 0), int) or rec.get("round", 0) < 0:
        return f"field 'round' is {rec.get('round')!r}, not a round number"
    return None


def _manifest_problem(m: dict[str, Any]) -> str | None:
    run_id = m.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        return f"field 'run_id' is {run_id!r}, not a run id"
    cells = m.get("cells", [])
    if not isinstance(cells, list):
        return "field 'cells' is not a list"
    for i, c in enumerate(cells):
        if not isinstance(c, dict) or not isinstance(c.get("key"), str) or not KEY_RE.fullmatch(c["key"]):
            return f"cells[{i}] has no valid 'key'"
    return None


def cell_path(run_dir: Path, key: str, round_: int = 0, mode: str = "full") -> Path:
    """Round 0 of a full measurement is `<key>.json`; further processes of the same cell are
    `<key>.r<N>.json` (full) and `<key>.m<N>.json` (memory only)."""
    if mode not in MODES:
        raise ValueError(f"bad record mode {mode!r}")
    if not KEY_RE.fullmatch(key):  # a key names a file: it must never reach outside cells/
        raise ResultsError(f"bad cell key {key!r}")
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
    """A run to read: a run id (its directory under results_dir, else one of that name in the
    working directory) or a path to a run directory. Commands that write into a run check what
    this returns with `inside`."""
    text = str(ref)
    named = not (os.sep in text or (os.altsep and os.altsep in text) or text in (".", ".."))
    if named:
        check_run_id(text)
        cand = run_dir(results_dir, text)
        if (cand / "manifest.json").is_file():
            return Path(results_dir) / text
    if (Path(text) / "manifest.json").is_file():
        return Path(text)
    where = f"in {results_dir} or here" if named else "there"
    raise ResultsError(f"no run {text!r} (no manifest.json {where})")


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
    figures taken over per-process values (bench.records.pool)."""
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
