"""Tidy exports: one flat row per cell with every metric, for pandas and notebooks.

`bench show RUN [RUN ...] --format csv|parquet|json` concatenates the pooled records of the
runs (bench.records.results.read_records: one record per cell, figures over per-process values) into
one table. A row says where it came from (run_id, node, machine_id, commit) and what was
measured (the cell's fields, the full model spec as `spec.*` so a user's own model is
self-describing), then every scalar figure under its record path with the unit in the name:
`metrics.train_samples_per_s.median`, `memory.tensor_peak_bytes`, `metrics.step_ms.iqr`, ...

Left out, because a flat table cannot hold them usefully: per-step losses and per-repeat
`values` lists (they stay in the run's JSON records), the environment beyond what identifies
the machine, and the cell's own copy of fields that are already columns. Any other list (a
failed cell's error tail, a CNN's conv channels) becomes its JSON text, so every column holds one
type, parquet accepts it, and json.loads gives the list back.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable

from ..records import results
from ..records.record import env_name, node_of  # the Ray executor records the host; a local run's records are "local"

# Columns first in every export, in this order (the rest follow in record order).
IDENTITY = ("run_id", "node", "machine_id", "commit", "key", "framework", "variant", "env", "model", "device",
            "batch_size", "precision", "threads", "seed", "steps", "profile", "status", "reason", "suspect")
_DROP_PREFIXES = ("losses", "env.", "cell.", "schema", "imported_versions", "environment.pins")
_DROP_SUFFIXES = (".values",)
FORMATS = ("csv", "parquet", "json")


def row(rec: dict[str, Any], run_id: str) -> dict[str, Any]:
    cell = rec.get("cell") or {}
    env = rec.get("env") or {}
    out: dict[str, Any] = {
        "run_id": run_id, "node": node_of(rec) or "local", "machine_id": env.get("machine_id"),
        "commit": (env.get("git") or {}).get("commit"),
        "seed": (cell.get("train") or {}).get("seed"), "steps": (cell.get("train") or {}).get("steps"),
        # the package environment ("" = the harness's interpreter): a dimension like the variant
        "env": env_name(rec), "env_pin_hash": (rec.get("environment") or {}).get("pin_hash"),
    }
    for k, v in results.flatten(rec).items():
        if k.startswith(_DROP_PREFIXES) or k.endswith(_DROP_SUFFIXES) or k in out:
            continue
        out[k] = _scalar(v)
    for k, v in (cell.get("model") or {}).items():
        out[f"spec.{k}"] = _scalar(v)
    for k, v in (cell.get("protocol") or {}).items():
        out[f"protocol.{k}"] = _scalar(v)
    return out


def _scalar(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v))
    return v


def _plain(v: Any) -> Any:
    """numpy scalars that json cannot write: their Python value."""
    return v.item() if hasattr(v, "item") else str(v)


def frame(runs: Iterable[tuple[str, list[dict[str, Any]]]]):
    """(run id, pooled records) pairs -> one pandas DataFrame, identity columns first."""
    import pandas as pd  # local: bench stays quick to import for `list` and the worker

    rows = [row(rec, run_id) for run_id, recs in runs for rec in recs]
    df = pd.DataFrame(rows)
    first = [c for c in IDENTITY if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def read_runs(refs: Iterable[str], results_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for ref in refs:
        run_dir = results.resolve_run(ref, results_dir)
        run_id = str(results.read_manifest(run_dir).get("run_id") or run_dir.name)
        out.append((run_id, results.read_records(run_dir)))
    return out


def load(*refs: str, results_dir: str | Path = "results"):
    """The tidy table of one or more runs, for a notebook: `bench.show.tidy.load("RUN1", "RUN2")`."""
    return frame(read_runs(refs, Path(results_dir)))


def encode(df, fmt: str) -> bytes:
    """The table in one of FORMATS. parquet needs pyarrow (the `[parquet]` extra)."""
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    if fmt == "json":
        # One object per row; NaN -> null, as JSON readers other than Python's expect. Not
        # DataFrame.to_json: it rounds floats to 10 significant digits.
        rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
        return (json.dumps(rows, indent=1, default=_plain) + "\n").encode()
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise results.ResultsError("--format parquet needs pyarrow: pip install 'lstm-bench[parquet]'") from None
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"unknown tidy format {fmt!r}")


def write(data: bytes, out: str | None, fmt: str) -> None:
    """To --out (atomically: a reader never sees half a file) or to stdout; parquet is binary
    and refuses a terminal."""
    if out:
        results.atomic_write_bytes(Path(out), data)
        return
    if fmt == "parquet" and sys.stdout.isatty():
        raise results.ResultsError("parquet is binary: give --out FILE.parquet (or redirect stdout)")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
