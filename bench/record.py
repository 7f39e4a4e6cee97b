"""What a result record is, read through types instead of dotted string paths.

A record stays plain JSON on disk (results.py writes and reads it); this module is the one place
that knows where a figure sits inside it. Status and Verdict are str-valued enums, so a record
written with them is byte-identical to one written with the bare strings, and `Status.OK == "ok"`
holds for records read back from disk.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a cell's process ended (the record's "status")."""
    OK = "ok"
    FAILED = "failed"
    OOM = "oom"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"

    def __str__(self) -> str:  # f"{status}" prints "ok", not "Status.OK"
        return self.value


class Verdict(str, Enum):
    """A check's decision on one cell and metric."""
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value
