"""What a record is, read through types instead of dotted string paths.

A record stays plain JSON on disk (results.py writes and reads it); this module is the one place
that knows where a figure sits inside it. Status and Verdict are str-valued enums, so a record
written with them is byte-identical to one written with the bare strings, and `Status.OK == "ok"`
holds for records read back from disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from .. import envinfo
from ..spec import Cell


# How a busy-machine self-check reason starts (bench.workers.contention writes it), so records
# can be searched for it: part of what a record says, so it lives here.
BUSY_PREFIX = "machine busy:"

def base_record(cell: Cell, run_id: str | None, round_: int = 0, mode: str = "full") -> dict[str, Any]:
    """What every record of a cell says, however its process ended: the worker starts its record
    from this, and the runner files one for a cell whose worker left none (skipped, crashed)."""
    return {
        "key": cell.key, "run_id": run_id, "cell": cell.to_dict(),
        "framework": cell.framework, "variant": cell.variant, "model": cell.model.name, "device": cell.device,
        "batch_size": cell.train.batch_size, "precision": cell.precision, "threads": cell.threads,
        "profile": cell.profile, "env": envinfo.environment(cell.threads),
        "round": int(round_), "mode": mode,
    }


MB = 1e6  # bytes in the MB of every table and export (decimal, as the published tables read)


class TextEnum(str, Enum):
    """A str-valued enum (enum.StrEnum needs Python 3.11): equal to, hashed like, JSON-written and
    printed as its value, so it can stand wherever the bare string stood."""

    def __str__(self) -> str:  # f"{status}" prints "ok", not "Status.OK"
        return self.value


class Status(TextEnum):
    """How a cell's process ended (the record's "status")."""
    OK = "ok"
    FAILED = "failed"
    OOM = "oom"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class Verdict(TextEnum):
    """A check's decision on one cell and metric. The gate is one-sided (bench.decide.stats):
    REGRESSED fails it, INCONCLUSIVE leaves it open, every other verdict passes it and says how:
    IMPROVED, UNCHANGED, NOT_REGRESSED (a regression past the floor is ruled out, nothing more:
    the interval reaches past the band on the good side) and CHANGED, which only comes from the
    accuracy rule: same recipe, no dropout, different accuracy (a numerics change that is not a
    regression)."""
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    NOT_REGRESSED = "not regressed"
    INCONCLUSIVE = "inconclusive"
    CHANGED = "changed"


@dataclass(frozen=True, eq=False)
class Record:
    """A read-only view of one record (a dict as results.read_records gives it). A figure the
    record lacks reads as None (or the default named beside it); a figure present as null reads
    as None too."""

    raw: Mapping[str, Any]

    def _at(self, *path: str, default: Any = None) -> Any:
        cur: Any = self.raw
        for part in path:
            if not isinstance(cur, Mapping) or part not in cur:
                return default
            cur = cur[part]
        return cur

    # --- the cell: what was measured ------------------------------------------------------
    @property
    def seed(self) -> int:
        """The training seed (fixes initial weights, batch order, dropout); 0 when not recorded."""
        return int(self._at("cell", "train", "seed", default=0) or 0)

    @property
    def train_spec(self) -> dict[str, Any] | None:
        return self._at("cell", "train")

    @property
    def train_steps(self) -> int | None:
        return self._at("cell", "train", "steps")

    @property
    def model_spec(self) -> dict[str, Any] | None:
        return self._at("cell", "model")

    @property
    def spec_name(self) -> str | None:
        """The model's name inside its spec (a config may redefine a zoo name)."""
        return self._at("cell", "model", "name")

    @property
    def family(self) -> str | None:
        """"rnn" or "cnn"."""
        return self._at("cell", "model", "family")

    @property
    def dropout(self) -> float:
        return float(self._at("cell", "model", "dropout", default=0.0) or 0.0)

    @property
    def protocol_test_samples(self) -> Any:
        """Test images the recipe evaluates on (10,000 in records older than the field)."""
        return self._at("cell", "protocol", "test_samples", default=10_000)

    # --- where it ran ---------------------------------------------------------------------
    @property
    def node(self) -> str | None:
        """The host a record was measured on, when a Ray run says so (records of a local run do not)."""
        return self._at("node", "hostname")

    @property
    def machine_id(self) -> str | None:
        return self._at("env", "machine_id")

    @property
    def git_commit(self) -> str | None:
        return self._at("env", "git", "commit")

    @property
    def git_dirty(self) -> bool | None:
        return self._at("env", "git", "dirty")

    @property
    def self_check_reasons(self) -> list[str]:
        return list(self._at("self_check", "reasons") or [])

    @property
    def machine_busy(self) -> bool:
        """Other programs used the cell's CPUs while it was timed (bench.workers.contention)."""
        return any(r.startswith(BUSY_PREFIX) for r in self.self_check_reasons)

    @property
    def busy_while_timing(self) -> bool:
        """Other programs used the cell's CPUs during its timed windows (the sgemm calibration aside)."""
        return bool(self._at("contention", "timed", "busy", default=False))

    @property
    def warnings(self) -> list[str]:
        """Notes that do not make a cell suspect (a wide spread of repeats)."""
        return list(self._at("warnings") or [])

    # --- metrics --------------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, Any]:
        return self._at("metrics", default={})

    def summary(self, metric: str) -> dict[str, Any] | None:
        """A metric's {median, iqr, q1, q3, values, ...} summary (bench.measure.Stats.to_dict),
        e.g. summary("train_samples_per_s")."""
        return self._at("metrics", metric)

    def median(self, metric: str) -> float | None:
        return self._at("metrics", metric, "median")

    @property
    def train_samples_per_s(self) -> float | None:
        """Median training throughput (over repeats, or of per-process medians when pooled)."""
        return self.median("train_samples_per_s")

    @property
    def infer_samples_per_s(self) -> float | None:
        return self.median("infer_samples_per_s")

    @property
    def test_accuracy(self) -> float | None:
        return self._at("metrics", "test_accuracy")

    # --- memory ---------------------------------------------------------------------------
    @property
    def rss_delta_train_bytes(self) -> int | None:
        return self._at("memory", "rss_delta_train_bytes")

    @property
    def rss_delta_rounds_bytes(self) -> list[int] | None:
        return self._at("memory", "rss_delta_rounds_bytes")

    @property
    def rss_delta_spread(self) -> float | None:
        """(max - min) / median of the per-process RSS growth."""
        return self._at("memory", "rss_delta_spread")

    @property
    def instructions_per_step(self) -> float | None:
        """Instructions per training step under callgrind (run/check --counts; bench.counts)."""
        return self._at("counts", "instructions_per_step")

    @property
    def instructions_by_step(self) -> list[float] | None:
        """Each counted step's instructions (a record made before they were kept: None)."""
        steps = self._at("counts", "instructions_by_step")
        return [float(v) for v in steps] if isinstance(steps, list) and steps else None

    @property
    def tensor_peak_bytes(self) -> int | None:
        return self._at("memory", "tensor_peak_bytes")

    # --- analytic -------------------------------------------------------------------------
    @property
    def measured_memory_bytes(self) -> float | None:
        """The memory figure a cell is judged on (its source: measured_memory_source)."""
        return self._at("analytic", "measured_memory_bytes")

    def measured_memory_source(self, default: str | None = None) -> str | None:
        """"tensor-level", "allocator peak" or "RSS growth"; `default` when the record is older
        than the field."""
        return self._at("analytic", "measured_memory_source", default=default)

    @property
    def train_floor_bytes(self) -> float | None:
        return self._at("analytic", "train_floor_bytes")

    @property
    def memory_over_floor(self) -> float | None:
        return self._at("analytic", "memory_over_floor")

    @property
    def achieved_gflops(self) -> float | None:
        return self._at("analytic", "achieved_gflops")

    @property
    def pct_of_achievable(self) -> float | None:
        return self._at("analytic", "pct_of_achievable")

    @property
    def calibration_gflops(self) -> float | None:
        """This worker's own sgemm GFLOP/s, measured at its start."""
        return self._at("analytic", "calibration_gflops")


# --- labels and groupings shared by the tables, plots and exports ----------------------------
def env_name(rec: Mapping[str, Any]) -> str:
    """The package environment a record's cell ran in ("" = the harness's own interpreter)."""
    return str((rec.get("cell") or {}).get("env") or "")


def env_suffix(rec: Mapping[str, Any]) -> str:
    """"@NAME" for a cell of a package environment, else "": how every label names it."""
    env = env_name(rec)
    return f"@{env}" if env else ""


def framework_label(rec: Mapping[str, Any]) -> str:
    """framework[:variant][@env], the variant left out when it is "default", the environment when
    the cell ran in the harness's own interpreter."""
    return rec["framework"] + ("" if rec.get("variant") == "default" else f":{rec.get('variant')}") + env_suffix(rec)


def package_versions(rec: Mapping[str, Any]) -> dict[str, str]:
    """The package versions a record's worker ran with: its environment's resolved pins, else the
    versions its worker reported having imported, else its framework's versions."""
    pins = (rec.get("environment") or {}).get("pins")
    if pins:
        out = {}
        for p in pins:
            name, sep, ver = str(p).partition("==")
            if sep:
                out[name.strip().lower()] = ver.split(";")[0].strip()
        return out
    return dict(rec.get("imported_versions") or rec.get("framework_versions") or {})


def cell_label(rec: Mapping[str, Any]) -> str:
    """"framework[:variant] model device bBATCH", plus " seed N" when not the default seed."""
    seed = seed_of(rec)
    return f"{framework_label(rec)} {rec['model']} {rec['device']} b{rec['batch_size']}" + \
        (f" seed {seed}" if seed else "")


def seed_of(rec: Mapping[str, Any]) -> int:
    return Record(rec).seed


def node_of(rec: Mapping[str, Any]) -> str | None:
    """The host a record was measured on, when a Ray run says so (records of a local run do not)."""
    return Record(rec).node


def by_node(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Records grouped by node (stable) when they come from more than one, and whether they do:
    figures from different machines are not to be read side by side as if alike."""
    several = len({node_of(r) for r in records if node_of(r)}) > 1
    return (sorted(records, key=lambda r: node_of(r) or "") if several else records), several
