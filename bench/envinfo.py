"""The environment a record was measured in, found without importing any framework."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_state() -> dict[str, object]:
    """Commit and dirty flag of the checkout bench runs from (None when not a git checkout,
    e.g. an installed wheel)."""
    if not (REPO_ROOT / ".git").exists():
        return {"commit": None, "dirty": None}
    commit = _run(["git", "rev-parse", "HEAD"], REPO_ROOT)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO_ROOT)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


@lru_cache(maxsize=1)
def machine_id() -> str:
    """A stable, anonymous id of this machine: records from different machines are not
    comparable, and this is how compare.py tells them apart."""
    raw = ""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            raw = Path(p).read_text().strip()
            break
        except OSError:
            continue
    raw = raw or socket.gethostname()
    return hashlib.sha256(f"{raw}|{cpu_model()}".encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def gpus() -> tuple[str, ...]:
    """GPU names from nvidia-smi; empty when there is none (or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return ()
    out = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return tuple(line.strip() for line in out.splitlines() if line.strip()) if out else ()


def gpu_absent_reason() -> str | None:
    if gpus():
        return None
    if shutil.which("nvidia-smi") is None:
        return "no GPU on this machine (nvidia-smi not found)"
    return "no GPU on this machine (nvidia-smi lists none)"


# The instruction-set flags the frameworks' CPU kernels choose between (oneDNN, XLA, Eigen): two
# hosts that differ in them run different code for the same cell.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
             "amx_bf16", "amx_int8", "sve", "asimd")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The ISA_FLAGS this CPU reports (empty where /proc/cpuinfo says nothing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in ISA_FLAGS if f in have)
    except OSError:
        pass
    return ()


def environment(threads: int) -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_flags": list(cpu_flags()),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "threads": threads,
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "gpus": list(gpus()),
        "machine_id": machine_id(),
        "git": git_state(),
        "executable": sys.executable,
        "utc": utc_now(),
    }


# Top-level modules of the harness itself: on a worker's PYTHONPATH, never an installed package's.
_OWN_MODULES = frozenset({"bench", "impls", "tests", "__main__"})


def imported_versions() -> dict[str, str]:
    """{distribution: version} of every installed package a module of which this process has
    imported: the versions a worker actually ran with (in a package environment, that
    environment's), not what the runner's interpreter has installed."""
    from importlib import metadata

    try:
        owners = metadata.packages_distributions()
    except Exception:  # a broken distribution's metadata must not cost the record
        return {}
    out: dict[str, str] = {}
    for top in {name.partition(".")[0] for name in list(sys.modules)} - _OWN_MODULES:
        for dist in owners.get(top, ()):
            try:
                out[dist.lower().replace("_", "-")] = metadata.version(dist)
            except Exception:
                continue
    return dict(sorted(out.items()))
