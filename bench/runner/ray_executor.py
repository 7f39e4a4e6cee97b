"""`run --executor ray`: each cell as a Ray task, on whichever node of a cluster has room.

It stays one fresh worker process per cell: the task starts `python -m bench.worker JOB.json`
on its node (process.run_worker, as the local runner does: a Ray worker process is reused across
tasks and would carry framework state) and returns the record, or how the worker died; the
driver files it under results/<run-id>/cells/ as the local runner does. A CPU cell asks Ray for
`threads` CPUs and a GPU cell for one GPU. Ray counts CPUs logically and pins nothing: two
cells never hold more CPUs than a node has, but the OS still places their threads. Per-phase
progress lines are not streamed back: the progress bar moves when a cell finishes.

Ray is imported in this module's functions only: bench stays importable without it.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .. import envinfo, registry
from ..workers import process
from . import schedule
from ..workers.job import Job
from ..records.run import Run
from .side import Side
from ..spec import Cell

INSTALL_HINT = "pip install 'lstm-bench[ray]'"
# What the working_dir upload leaves behind (gitignore patterns, anchored at the repo root).
EXCLUDES = ["/.venv", "/.git", "/results", "/.pytest_cache", "/.benchmarks", "__pycache__", "*.egg-info",
            "/build", "/dist"]
CANCEL_GRACE_S = 5.0  # after Ctrl-C, how long tasks get to stop their workers before a force-kill


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached: one line, exit 2."""


@dataclass
class Cluster:
    address: str  # the GCS address joined (of a local instance, when none was given)
    code: str  # "upload" (working_dir) or "installed" (the package is installed on the nodes)
    nodes: list[dict[str, Any]]


def require() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RayUnavailable(f"--executor ray needs Ray: {INSTALL_HINT}") from None


def connect(address: str | None, code: str = "upload") -> Cluster:
    """Join the cluster at `address`, or the one found on this machine, or start a local instance
    (its node 127.0.0.1: Ray then listens on the loopback only). With code "upload" the tasks get
    this checkout (working tree as it is) through Ray's runtime environment. What keeps it from
    joining (nothing listening, a token missing or wrong) is told before `ray.init`, which would
    retry for 20 s and say neither (bench/runner/ray_connect.py)."""
    require()
    import ray

    from . import ray_connect

    target = address or ray_connect.found_cluster()  # None: a new local instance
    problem = ray_connect.preflight(target, given=address is not None) if target else None
    if problem:
        raise RayUnavailable(problem)
    env = {"working_dir": str(envinfo.REPO_ROOT), "excludes": EXCLUDES} if code == "upload" else None
    opts: dict[str, Any] = {"runtime_env": env, "logging_level": logging.ERROR}  # not its warnings about the upload
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if target is None:
            ray_connect.init_local(include_dashboard=False, **opts)
        else:
            ray_connect.init_join(address, **opts)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
        raise RayUnavailable(f"cannot connect to Ray at {target or 'a new local instance'}: "
                             f"{ray_connect.failure_line(e)}") from None
    finally:
        # ray.init replaces the SIGTERM handler with sys.exit; keep bench's (KeyboardInterrupt),
        # so a cancelled CI job still cancels the tasks and marks the run interrupted.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    nodes = [{"hostname": n.get("NodeManagerHostname"), "node_id": n.get("NodeID"),
              "cpus": n.get("Resources", {}).get("CPU", 0), "gpus": n.get("Resources", {}).get("GPU", 0)}
             for n in ray.nodes() if n.get("Alive")]
    return Cluster(ray.get_runtime_context().gcs_address, code, nodes)


def _task(job_json: dict[str, Any], timeout_s: float, uploaded: bool) -> dict[str, Any]:
    """On the node: one fresh worker process for the cell, in a temp dir of this node. The job
    travels as its JSON, as it does to the worker."""
    import ray

    job = Job.from_dict(job_json)
    cell = job.cell
    # With a working_dir Ray runs the task in its unpacked copy of the code, and the worker
    # runs that copy; an installed package runs from where it is installed.
    code_root = Path.cwd() if uploaded else envinfo.REPO_ROOT
    reason = registry.unavailable_reason(cell.framework)  # this node's packages, not the driver's
    if reason:
        rec = process.outcome_record(job, "skipped", reason)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f"lstm-bench-{job.run_id}-"))
        try:
            env = process.worker_env(cell, code_root)
            if not cell.threads:
                # Ray sets OMP_NUM_THREADS to the task's CPU count; a GPU cell sets no thread
                # count, so its worker gets the frameworks' defaults, as locally.
                env.pop("OMP_NUM_THREADS", None)
            rec = process.run_worker(replace(job, run_dir=str(tmp / "stage")), tmp / "job.json",
                                     process.Watch(timeout_s), env, code_root, _die_with_parent())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rec["node"] = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}
    return rec


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the worker process gets SIGKILL when the task's process dies. It runs in a session
    of its own (process.run_worker), so a crashed or force-cancelled Ray worker, which has no
    chance to stop it, would leave it running, using the cores the next cell is measured on."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the task died before that took hold
            os._exit(1)

    return preexec


def _lost(ray: Any, e: BaseException) -> tuple[str, str, bool]:
    """(status, reason, lost) for a task that returned no record. Lost: the task went with its
    node, its Ray worker or its owner, so the record says nothing of the cell and --resume
    reruns it."""
    x = ray.exceptions
    cause = getattr(e, "cause", None) if isinstance(e, x.RayTaskError) else None
    err = cause if isinstance(cause, x.RayError) else e
    if isinstance(err, x.OutOfMemoryError):
        return "oom", f"Ray's memory monitor killed the task: {str(err).splitlines()[0][:200]}", False
    what = next((text for kind, text in (
        (x.WorkerCrashedError, "its Ray worker process died"), (x.NodeDiedError, "its node died"),
        (x.LocalRayletDiedError, "its node's raylet died"), (x.OwnerDiedError, "the driver that owned it died"),
        (x.ObjectLostError, "its result was lost with its node"), (x.TaskCancelledError, "it was cancelled"),
        (x.RuntimeEnvSetupError, "its node could not set up the runtime environment (the code upload)"),
        (x.TaskUnschedulableError, "no node could run it"), (x.RaySystemError, "a Ray system error"),
    ) if isinstance(err, kind)), None)
    if what is None:  # the task's own code raised: a bug, not a lost task
        last = str(err).splitlines()[-1][:200] if str(err) else ""
        return "failed", f"Ray task raised {type(err).__name__}: {last}", False
    return "failed", f"Ray task lost: {what} ({type(err).__name__}); --resume reruns it", True


def _skip_reason(cell: Cell, nodes: list[dict[str, Any]]) -> str | None:
    """What no node of the cluster can give the cell (Ray would wait for it forever)."""
    if cell.device == "gpu" and not any(n["gpus"] for n in nodes):
        return "no GPU in the Ray cluster"
    most = max((n["cpus"] for n in nodes), default=0)
    if cell.device == "cpu" and cell.threads > most:
        return f"{cell.threads} threads: no Ray node has that many CPUs (the largest has {most:g}; use --threads)"
    return None


def execute(cluster: Cluster, run: Run, cells: list[Cell], data_path: str | None, timeout_s: float, ui: Any,
            rounds: schedule.Rounds = schedule.Rounds(), envs: tuple[tuple[str, Any], ...] = ()) -> int:
    """schedule.execute's contract on Ray: every outcome gets a record, Ctrl-C/SIGTERM cancels the
    tasks and keeps what finished. Returns 0, or 130 when interrupted. Which processes run is the
    local scheduler's policy (schedule.Pending); here a cell's processes run one after another, its
    further rounds on the node of its first. A cell of a package environment (`envs`: name ->
    bench.runner.envs.BuiltEnv) runs in Ray's own runtime environment made from its pins
    (task_options)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if rounds.decide is not None:
        raise ValueError("adaptive rounds (check --against) need one machine: they run locally")
    run.on_ray(cluster.address, cluster.code, cluster.nodes)
    task = ray.remote(max_retries=0)(_task)  # never a silent re-measurement
    alive = {n["node_id"] for n in cluster.nodes}
    git = envinfo.git_state()
    pending = schedule.Pending(run, cells, rounds)
    home: dict[str, str] = {}  # cell -> the node of its first process: its further rounds run there too
    for cell in cells:
        node = (run.record(cell.key) or {}).get("node") or {}  # measured before (--resume)
        if node.get("node_id"):
            home[cell.key] = node["node_id"]
    in_flight: dict[Any, Job] = {}
    side = Side("run", envinfo.REPO_ROOT, run, envs=envs)
    sources = _env_sources() if envs else None
    total = len(cells) * max(rounds.full, rounds.memory)
    ui.start(total)
    ui.advance(total - pending.count())  # done before (--resume) or not worth repeating

    def store(job: Job, rec: dict[str, Any]) -> process.CellOutcome:
        built = side.env_for(job.cell.env)
        if built is not None:
            rec = {**rec, "environment": {**built.describe(), "via": "ray runtime_env (uv)"}}
        if cluster.code == "upload" and isinstance(rec.get("env"), dict):
            rec["env"]["git"] = git  # the upload has no .git: the code is this checkout's working tree
        return schedule.labelled(process.file_record(run, rec, job), job.round, job.mode)

    def file(job: Job, rec: dict[str, Any]) -> None:
        cell = job.cell
        outcome = store(job, rec)
        ui.cell_finished(cell, outcome)
        ui.advance(pending.done(cell, job.round, job.mode, outcome.status))  # the rest of a failed cell
        if rec.get("node"):
            home.setdefault(cell.key, rec["node"]["node_id"])
        submit(cell)

    def submit(cell: Cell) -> None:
        nxt = pending.next(cell)
        if nxt is None:
            return
        r, mode = nxt
        job = Job(cell, run_dir=str(run.directory), run_id=run.run_id, data=data_path, round=r, mode=mode)
        ui.cell_started(cell)
        reason = _skip_reason(cell, cluster.nodes)
        if reason:
            return file(job, process.outcome_record(job, "skipped", reason))
        opts = task_options(cell, side.env_for(cell.env), sources)
        if home.get(cell.key) in alive:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(home[cell.key], soft=False)
        in_flight[task.options(**opts).remote(job.to_dict(), timeout_s, cluster.code == "upload")] = job

    status = "complete"
    try:
        for cell in cells:
            submit(cell)
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in done:
                job = in_flight.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as e:
                    st, reason, lost = _lost(ray, e)
                    rec = process.outcome_record(job, st, reason)
                    if lost:
                        rec["lost"] = True
                file(job, rec)
    except KeyboardInterrupt:
        status = "interrupted"
        _cancel(ray, in_flight, store)
    except OSError:  # the results disk: said by the caller, the run marked failed where it can be
        status = "failed"
        _cancel(ray, in_flight, store)
        raise
    finally:
        schedule.finish((side,), ui, status)
        ray.shutdown()
    return 130 if status == "interrupted" else 0


def _env_sources() -> Any:
    from . import envs

    return envs.pip_sources()


def task_options(cell: Cell, built: Any, sources: Any) -> dict[str, Any]:
    """A cell's Ray task options: its resources, and for a cell of a package environment the
    runtime environment Ray builds from its pins (bench.runner.envs.ray_runtime_env)."""
    opts: dict[str, Any] = {"num_gpus": 1} if cell.device == "gpu" else {"num_cpus": cell.threads}
    if built is not None:
        from . import envs

        opts["runtime_env"] = envs.ray_runtime_env(built, sources)
    return opts


def _cancel(ray: Any, pending: dict[Any, Job], keep: Any) -> None:
    """Stop every outstanding task. First a plain cancel (KeyboardInterrupt in the task, whose
    run_worker then kills its worker process group), then force=True for what is still running
    (that kills the Ray worker). A task that finished meanwhile keeps its record."""
    refs = list(pending)
    try:
        for ref in refs:
            ray.cancel(ref)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S) if refs else ([], [])
        for ref in ready:
            try:
                keep(pending[ref], ray.get(ref))
            except ray.exceptions.RayError:
                pass  # cancelled: no record, as for the cell a local run was in when interrupted
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: no more grace
    finally:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray is going away: nothing left to stop
                pass
