"""Warm parents: a cell's worker forked from a parent that has already imported the harness and
the framework (issue 25), instead of a cold `python -m bench.worker JOB`.

One parent per code root and per worker environment: the environment is the cell's whole
worker_env, so every variable a framework or BLAS library reads at import time (thread counts,
allocator switches) is the one a cold worker of that cell would have imported with, and the
child differs from a cold worker only in not having paid for the imports. The parent itself is
bench/workers/zygote.py, loaded by path so a base worktree of older code gets one too.

Where a parent cannot be used (it did not start, it holds more than one thread after its
imports, it died), the runner starts that cell and the remaining ones of that parent cold, and
says so once on stderr.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .zygote import READY

START_METHODS = ("spawn", "fork")
ZYGOTE_FILE = Path(__file__).with_name("zygote.py")

# What each framework imports lazily on first use, preloaded beside its implementation module:
# torch's Adam imports torch._dynamo on first construction (2.7 s of a 12 s `ci` process).
PRELOAD: dict[str, tuple[str, ...]] = {
    "torch": ("torch._dynamo", "torch.optim"),
    "tf": (),
    "jax": (),
}
# Frameworks whose workers may be forked from a warm parent, from the fork-safety checks of
# results/published/warm-workers-cpu-2core-2026-12-0[23].md; the others always start cold. None
# starts a thread of its own at import (their pools, XLA's client and TF's runtime start in the
# child). `import tensorflow` brings pyarrow's jemalloc background thread, which is fork-aware
# (zygote.FORK_AWARE_THREADS); a parent holding any other thread is still refused.
FORK_SAFE = frozenset({"torch", "jax", "tf", "fake"})
HARNESS_MODULES = ("bench.worker",)
# A parent forks this many children, then a fresh parent takes over. Children of one parent share
# its heap layout and whatever else it lends them; torch's forked children showed a lag-1
# autocorrelation of +0.42 between consecutive processes on an idle machine (warm-workers report),
# so a parent is not allowed to lend its children a speed of its own for long. Records say which
# parent (generation) and which of its children a process was.
REFORK_EVERY = 5
START_TIMEOUT_S = 300.0  # a parent still importing after this is given up (cold start instead)

# The boot line of a parent: load bench/workers/zygote.py by path (not as bench.workers.zygote, which would be
# the code root's bench) and serve. sys.path[0] is '' (the cwd = code root), as under `-m`.
BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('lstm_bench_zygote', sys.argv[1]); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); sys.exit(m.serve(sys.argv[2], sys.argv[3:]))")


class ChildProcess:
    """A forked worker as run_worker sees a Popen: pid, stdout/stderr, poll, wait, returncode."""

    def __init__(self, pid: int, conn: socket.socket, stdout: IO[str], stderr: IO[str]) -> None:
        self.pid = pid
        self.lineage: dict[str, int] = {}  # {"generation": g, "child": i}: its parent and its place there
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._conn = conn
        self._buf = b""

    def _read_exit(self, block: bool) -> None:
        self._conn.setblocking(block)
        try:
            while b"\n" not in self._buf:
                chunk = self._conn.recv(64)
                if not chunk:  # the parent died with the child unreported
                    self.returncode = -signal.SIGKILL if self.returncode is None else self.returncode
                    return
                self._buf += chunk
        except BlockingIOError:
            return
        line, _, self._buf = self._buf.partition(b"\n")
        self.returncode = int(line.split()[1])
        self._conn.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_exit(block=False)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._read_exit(block=True)
        return self.returncode


def ready_fields(line: str) -> dict[str, str]:
    """A parent's ready line as fields: key=value pairs, the last (failed=[...], JSON) to the end of
    the line, since its messages ("bench.data: DataError") hold spaces."""
    head, _, failed = line.partition(" failed=")
    fields = dict(f.split("=", 1) for f in head.split()[1:] if "=" in f)
    fields["failed"] = failed.strip()
    return fields


def extra_threads(ready_fields: dict[str, str]) -> int:
    """Threads a parent holds that a fork would not copy safely, from its ready line: beyond
    those numpy's import started (OpenBLAS's pool, which stops itself before a fork and restarts
    in the child) and the fork-aware ones zygote names (FORK_AWARE_THREADS), the framework
    started them. A parent of older code says nothing of fork-aware threads: 0."""
    return (int(ready_fields.get("threads", "0")) - int(ready_fields.get("after_numpy", "1"))
            - int(ready_fields.get("fork_aware", "0")))


@dataclass(frozen=True)
class ParentKey:
    code_root: str
    env: tuple[tuple[str, str], ...]
    python: str = sys.executable  # a cell's package environment has its own interpreter (and parents)


class Parent:
    """One warm parent process and its socket."""

    def __init__(self, key: ParentKey, modules: tuple[str, ...], generation: int = 0) -> None:
        self.generation = generation
        self.children: list[ChildProcess] = []
        self.dir = tempfile.mkdtemp(prefix="lstm-bench-warm-")
        self.sock_path = os.path.join(self.dir, "s")
        self.log_path = os.path.join(self.dir, "stderr")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [key.python, "-c", BOOT, str(ZYGOTE_FILE), self.sock_path, *modules], env=dict(key.env),
                cwd=key.code_root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True)  # Ctrl-C reaches the runner only, which then closes us
        self.threads = 0
        self.failed_imports = ""
        self.problem = self._wait_ready()

    def _wait_ready(self) -> str | None:
        assert self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not line or not line[0].startswith(READY):
            self.close()
            tail = Path(self.log_path).read_text(errors="replace").strip().splitlines()[-1:] \
                if os.path.exists(self.log_path) else []
            return "the warm parent did not start" + (f" ({tail[0]})" if tail else "")
        fields = ready_fields(line[0])
        self.threads = int(fields.get("threads", "0"))
        self.failed_imports = fields.get("failed", "")
        extra = extra_threads(fields)
        if extra:
            self.close()
            return (f"the warm parent holds {extra} thread(s) beyond numpy's after its imports "
                    "(fork copies only the calling thread)")
        return None

    def fork(self, argv: list[str], env: dict[str, str], cpus: tuple[int, ...]) -> ChildProcess:
        """A child running `bench.worker ARGV`; raises OSError if the parent is gone."""
        import json

        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.sock_path)
            msg = (json.dumps({"argv": argv, "env": env, "cpus": list(cpus)}) + "\n").encode()
            socket.send_fds(conn, [msg], [out_w, err_w])
            buf = b""
            while b"\n" not in buf:
                chunk = conn.recv(64)
                if not chunk:
                    raise OSError("the warm parent closed the connection before forking")
                buf += chunk
        except BaseException:
            conn.close()
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)  # the child holds its own copies: EOF comes when it exits
            os.close(err_w)
        line, _, rest = buf.partition(b"\n")
        child = ChildProcess(int(line.split()[1]), conn, os.fdopen(out_r, "r"), os.fdopen(err_r, "r"))
        child._buf = rest
        child.lineage = {"generation": self.generation, "child": len(self.children)}
        self.children.append(child)
        return child

    def busy(self) -> bool:
        """A child of this parent not yet reaped (its exit comes through the parent: keep it).
        Reads returncode only: the runner thread that owns a child is the one that polls it."""
        return any(c.returncode is None for c in self.children)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the parent's loop ends at EOF
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for p in (self.sock_path, self.log_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


class Parents:
    """The warm parents of one runner process, started on first use and reused by every cell
    with the same code root and environment; thread-safe (duet rounds fork from two threads)."""

    def __init__(self, refork_every: int = REFORK_EVERY) -> None:
        self._lock = threading.Lock()
        self._parents: dict[ParentKey, Parent] = {}
        self._cold: set[ParentKey] = set()
        self._retired: list[Parent] = []  # replaced after refork_every children; closed once idle
        self._generations: dict[ParentKey, int] = {}
        self.refork_every = refork_every

    def fork(self, framework: str, impl_module: str | None, argv: list[str], env: dict[str, str], code_root: Path,
             cpus: tuple[int, ...] = (), python: str = sys.executable) -> ChildProcess | None:
        """A forked child for this job, or None: start it cold (said once per parent on stderr).
        Parents are per interpreter too: a child of one environment's parent never serves another's."""
        if framework not in FORK_SAFE:
            return None
        key = ParentKey(str(code_root), tuple(sorted(env.items())), python)
        with self._lock:
            if key in self._cold:
                return None
            self._close_idle_retired()
            parent = self._parents.get(key)
            if parent is not None and len(parent.children) >= self.refork_every:
                self._retired.append(self._parents.pop(key))
                parent = None
            if parent is None:
                modules = HARNESS_MODULES + ((impl_module,) if impl_module else ()) + PRELOAD.get(framework, ())
                generation = self._generations[key] = self._generations.get(key, -1) + 1
                parent = Parent(key, modules, generation)
                if parent.problem:
                    return self._give_up(key, framework, parent.problem)
                self._parents[key] = parent
        try:
            if not parent.alive():
                raise OSError(f"it exited with code {parent.proc.returncode}")
            return parent.fork(argv, env, cpus)
        except OSError as e:
            with self._lock:
                if self._parents.pop(key, None) is not None:
                    parent.close()
                    return self._give_up(key, framework, f"the warm parent died ({e})")
            return None

    def _give_up(self, key: ParentKey, framework: str, why: str) -> None:
        self._cold.add(key)
        print(f"lstm-bench: {why}: the remaining {framework} cells from {key.code_root} start cold",
              file=sys.stderr, flush=True)
        return None

    def _close_idle_retired(self) -> None:
        keep = []
        for p in self._retired:
            if p.busy():
                keep.append(p)
            else:
                p.close()
        self._retired = keep

    def pids(self) -> list[int]:
        """The process ids of the parents now warm."""
        with self._lock:
            return [p.proc.pid for p in self._parents.values()]

    def close(self) -> None:
        with self._lock:
            for parent in [*self._parents.values(), *self._retired]:
                parent.close()
            self._parents.clear()
            self._retired.clear()
            self._cold.clear()
            self._generations.clear()


PARENTS = Parents()  # the runner's: closed when a run finishes, and at exit
atexit.register(PARENTS.close)
