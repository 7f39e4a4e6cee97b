"""A warm parent that forks one cell's worker per request instead of starting a cold interpreter.

The runner starts it the way it starts a cold worker (the same python, environment, cwd and
PYTHONPATH of the code root), and it imports what every worker of that code and framework
imports: the harness, the framework, and what the framework imports lazily on first use. It
starts no thread pool, backend or device, and says how many threads it holds once its imports
are done, so the runner can refuse to fork from a parent that holds threads (fork copies the
calling thread only; a pool copied that way deadlocks or silently runs single-threaded). One
pool is exempt, and counted apart: numpy's OpenBLAS starts its threads when it is loaded, stops
them before a fork (pthread_atfork) and starts them again in the child on first use (measured:
a forked child's matmul runs on both threads, as fast as the parent's).

Per request it forks a child that calls setsid (the runner's killpg reaches it and only it),
takes the request's pipe ends as its stdout and stderr, sets the cell's environment and CPUs,
and runs `bench.worker` as `python -m bench.worker JOB` would, as __main__. The child is the
unit of isolation a cold worker is: its own allocations and RSS baseline, and a crash, OOM
kill or timeout ends only the child. The parent reaps children and reports each exit code.

Why a small server and not multiprocessing's forkserver: the stdlib keeps one forkserver per
process, started with the caller's environment, cwd and sys.path, while a run needs one parent
per framework and per code root (check --against runs base and head side by side), and each
child needs pipes of its own as stdout/stderr and a session of its own.

Stdlib only and no relative imports: the runner loads this file by path into the parent (see
bench/workers/warm.py), so a base worktree of older code, which has no zygote of its own, gets a warm
parent whose worker, harness and framework code all come from that worktree.

Protocol on the Unix socket, one connection per child: the runner sends one JSON line
{"argv": [JOB], "env": {...}, "cpus": [...]} with two file descriptors (the child's stdout and
stderr); the parent answers "pid N" once forked and "exit CODE" once reaped (CODE as
subprocess reports it: negative for a signal).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
import warnings

READY = "@ready"


# Threads a library starts at import and takes care of across a fork itself, by name
# (/proc/self/task/N/comm). "jemalloc_bg_thd": pyarrow's bundled jemalloc (pandas imports pyarrow,
# keras imports pandas, so `import tensorflow` brings it). jemalloc's postfork_child handler
# re-initialises its locks and turns its background thread off in the child (purging then
# happens inline); it only serves Arrow's memory pool, never a framework's tensors. Measured: a
# child forked after `import tensorflow` trained a Keras LSTM and exited 0.
FORK_AWARE_THREADS = frozenset({"jemalloc_bg_thd"})


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def fork_aware_count() -> int:
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().strip() in FORK_AWARE_THREADS
        except OSError:  # the thread ended meanwhile
            pass
    return n


def preload(modules: list[str]) -> list[str]:
    """Import what every worker imports; a module that fails to import is left to the child,
    which fails the same way a cold worker would and records why."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the child reports it properly
            failed.append(f"{name}: {type(e).__name__}")
    return failed


def preload_data() -> list[str]:
    """The code root's vendored MNIST, read and verified once for every child (bench.data.preload).
    Code older than that function has nothing to preload; a bad file is left to the child, which
    fails the way a cold worker would and records why."""
    try:
        fn = getattr(importlib.import_module("bench.data"), "preload", None)
        if fn is not None:
            fn()
    except Exception as e:  # noqa: BLE001 - the child reports it properly
        return [f"bench.data: {type(e).__name__}"]
    return []


def run_child(conn: socket.socket, fds: list[int], request: dict, closing: list[int]) -> None:
    """In the forked child: become the cold worker's equivalent, run the worker, never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        conn.close()
        os.setsid()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cpus"):
            # Before the worker starts a thread: the ones it starts inherit the mask.
            os.sched_setaffinity(0, set(request["cpus"]))
        spec = importlib.util.find_spec("bench.worker")
        sys.argv = [spec.origin if spec and spec.origin else "bench.worker", *request["argv"]]
        with warnings.catch_warnings():
            # runpy warns that bench.worker is already imported (the parent preloaded it); the
            # worker runs as __main__ all the same, as under `python -m`.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            try:
                runpy.run_module("bench.worker", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - whatever broke goes to the runner's error tail
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)  # never run the parent's cleanup (its socket, its children) in the child


def read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
    while not msg.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            break
        msg += more
    return json.loads(msg), list(fds)


def serve(sock_path: str, modules: list[str]) -> int:
    preload(["numpy"])
    openblas_threads = thread_count()  # the main thread and OpenBLAS's fork-aware pool
    failed = preload(modules) + preload_data()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd sees SIGCHLD
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(16)
    children: dict[int, socket.socket] = {}
    print(f"{READY} threads={thread_count()} after_numpy={openblas_threads} fork_aware={fork_aware_count()} "
          f"failed={json.dumps(failed)}",
          flush=True)
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([listener, wake_r, stdin], [], [])
        if stdin in ready and not os.read(stdin, 4096):
            break  # the runner closed our stdin (or died): no more children
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 4096):
                        break
                except BlockingIOError:
                    break
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass  # the runner gave up on this child already
                conn.close()
        if listener in ready:
            conn, _ = listener.accept()
            try:
                request, fds = read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            closing = [listener.fileno(), wake_r, wake_w] + [c.fileno() for c in children.values()]
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_child(conn, fds, request, closing)
            for fd in fds:
                os.close(fd)
            children[pid] = conn
            try:
                conn.sendall(f"pid {pid}\n".encode())
            except OSError:
                pass
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2:]))
