"""`run`: plan cells (from the selection flags or --config), run each in fresh processes, locally
or as Ray tasks, keep every record, and print the run's table; --resume runs what is missing."""
from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..workers import contention
from .. import data, envinfo, measure
from ..runner import limits, schedule
from ..records import results, runlock
from ..runner.plan import plan
from ..records.run import Run
from . import counts as counts_cmd, selection
from .ui import RunUI, console as make_console
from .usage import EXIT_USAGE, UsageError


def cmd_run(args: argparse.Namespace) -> int:
    _check_executor(args)
    conf = None
    if args.config:  # checked whole before anything else, so a bad config leaves nothing behind
        from ..runner import config

        try:
            conf = _config(args)
            conf_cells = conf.plan(args.threads)
        except config.ConfigError as e:  # several mistakes: one line each, then exit 2
            for line in e.errors:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_USAGE
    console = make_console()
    results_dir = Path(args.results_dir)
    data_path = str(Path(args.data).resolve()) if args.data else None
    if data_path:
        data.load(data_path)  # a bad file fails here, before any cell starts
    counts_cmd.check_flags(args)
    if args.resume and args.env:
        raise UsageError("--env names a new run's environments: a resumed run uses those in its manifest")
    for flag, given in (("--retry-failed", args.retry_failed), ("--retry-suspect", args.retry_suspect)):
        if given and not args.resume:
            raise UsageError(f"{flag} reruns cells of an earlier run: give it with --resume RUN_ID")
    lock = contextlib.ExitStack()  # the run's lock, held from before its first write to the end
    with lock:
        if args.resume:
            # Written into (records removed with --retry-*, new ones filed): only a run directly
            # inside the results directory, and only by one runner at a time.
            run_dir = results.inside(results_dir, results.resolve_run(args.resume, results_dir))
            if not args.dry_run:
                lock.enter_context(runlock.hold(run_dir))
            run = Run.open(run_dir)
            cells = run.manifest.planned_cells()
            r = run.manifest.rounds or {}
            rounds = schedule.Rounds(full=int(r.get("full", 1)), memory=int(r.get("memory", 0)),
                                     memory_jobs=int(r.get("memory_jobs", 1)))  # a run from before: one at a time
            todo = schedule.remaining(run, cells, args.retry_failed, rounds, retry_busy=args.retry_suspect,
                                      dry_run=args.dry_run)
            data_path = run.manifest.data
            env_specs = _manifest_envs(run.manifest.envs)
            run_id = run.run_id
            console.print(f"resuming {run_id}: {len(cells) - len(todo)} of {len(cells)} cells already done")
        else:
            extra: dict[str, Any] = {}
            if conf is not None:
                cells, label = conf_cells, conf.label
                env_specs = conf.envs
                # The config's text goes into the manifest: the run says what asked for it.
                extra = {"profile": ",".join(dict.fromkeys(c.profile for c in cells)), "config": conf.manifest_entry()}
            else:
                env_specs = _env_args(args)
                sel = replace(selection.from_args(args), envs=tuple(e.name for e in env_specs))
                cells = plan(sel)
                label = sel.profile
                extra = {"profile": sel.profile}
            if not cells:
                raise UsageError("the selection is empty")
            if args.rounds < 1 or args.memory_rounds < 0:
                raise UsageError("--rounds must be >= 1 and --memory-rounds >= 0")
            if args.memory_jobs is not None and args.memory_jobs < 1:
                raise UsageError(f"--memory-jobs must be >= 1, got {args.memory_jobs}")
            rounds = schedule.Rounds(full=args.rounds, memory=args.memory_rounds,
                                     memory_jobs=args.memory_jobs or default_memory_jobs())
            run_id = results.check_run_id(args.run_id) if args.run_id else schedule.new_run_id(label)
            results.run_dir(results_dir, run_id)  # an id, whose directory lies inside the results directory
            run_dir = results_dir / run_id
            if (run_dir / "manifest.json").exists():
                raise UsageError(f"run {run_id} already exists in {results_dir}: use --resume {run_id}")
            todo = cells
            if args.all and envinfo.gpu_absent_reason():
                console.print(f"[yellow]gpu cells not planned[/]: {envinfo.gpu_absent_reason()}")
        no_gpu = envinfo.gpu_absent_reason()
        gpu_cells = [c for c in todo if c.device == "gpu"]
        if no_gpu and gpu_cells:  # said before anything starts: they will be recorded as skipped
            console.print(f"[yellow]note[/]: {len(gpu_cells)} of {len(todo)} cells are GPU cells and {no_gpu}: "
                          f"they will be recorded as skipped", markup=True)
        too_big = limits.refusals(todo, data_path)
        from ..runner import estimate

        watch = contention.Watch()
        with watch:  # a low reading scales every record up (one read 136 GFLOP/s, its workers 169): busy, it must not
            gflops = measure.calibrate_matmul_gflops(0)  # as long as a worker's, whose readings it is compared with
        est = estimate.estimate(todo, gflops, estimate.load_priors(results_dir, envinfo.machine_id(), todo[0].profile if todo else None),
                                rounds.full, max(0, rounds.memory - rounds.full), rounds.memory_jobs,
                                watch.total.reason("the sgemm rate was read") if watch.total else None)
        console.print(f"run {run_id}: {len(todo)} cells, estimated {est.seconds / 60:.0f} min on this machine "
                      f"({est.describe(gflops)}) -> {run_dir}")
        if args.dry_run:  # nothing written, nothing removed: the run, if new, does not exist yet
            for c in todo:
                console.print(f"  {c.key}" + (f"  (skipped here: {no_gpu})" if no_gpu and c.device == "gpu" else ""),
                              markup=False)
            for line in too_big:
                console.print(f"[red]would be refused[/]: {line}", markup=True)
            return EXIT_USAGE if too_big else 0
        if too_big:
            raise UsageError(too_big[0] + (f" (and {len(too_big) - 1} more; see run --dry-run)" if len(too_big) > 1 else ""))
        # Built (or found cached) before the run exists: a failed build is one line, exit 2, and no
        # run that would silently lack one side of an A/B; environments built meanwhile stay cached.
        built = build_envs(env_specs, args, console) if todo else ()
        if built and args.resume:  # a cell's processes must not span two pin sets: pooled, they would mix
            made = run.manifest.envs or {}
            moved = [b.name for b in built if made.get(b.name, {}).get("pin_hash") not in (None, b.pin_hash)]
            if moved:
                raise UsageError(f"environment {moved[0]} now resolves to other pins than run {run.run_id} was made "
                                 f"with: pin its packages exactly, or start a new run")
        if built and not args.resume:
            extra["envs"] = {b.name: {**spec.to_dict(), "pin_hash": b.pin_hash, "pins": list(b.pins)}
                             for spec, b in zip(env_specs, built)}
        cluster = None
        if args.executor == "ray" and todo:  # connected before the run is created: a failure leaves nothing
            from ..runner import ray_executor

            try:
                cluster = ray_executor.connect(args.address, args.ray_code)
            except ray_executor.RayUnavailable as e:
                raise UsageError(str(e)) from None
        if not args.resume:
            lock.enter_context(runlock.hold(run_dir))  # two runs given one --run-id at once: one wins
            if (run_dir / "manifest.json").exists():
                raise UsageError(f"run {run_id} already exists in {results_dir}: use --resume {run_id}")
            run = Run.create(run_dir, run_id, cells, sys.argv[1:], data=data_path,
                             rounds={"full": rounds.full, "memory": rounds.memory, "memory_jobs": rounds.memory_jobs},
                             **extra)
        try:
            return _execute(args, console, run, cells, todo, data_path, rounds, est, cluster,
                            tuple((b.name, b) for b in built))
        except OSError as e:  # the results disk failed mid-run: what was filed stays, the run can resume
            run.finish("failed")  # where the disk still takes it
            raise results.ResultsError(f"{results.os_error_line(e)}; the run stopped (records filed so far are "
                                       f"kept: {args.prog} run --resume {run_id} once fixed)") from None


def _execute(args: argparse.Namespace, console: Any, run: Run, cells: list, todo: list, data_path: str | None,
             rounds: Any, est: Any, cluster: Any, envs: tuple = ()) -> int:
    """Run the planned cells into `run` (its lock held), print the table; the exit status."""
    run.planned(est.seconds, args.executor)  # the estimate kept, so it can be checked against the run
    run_dir, run_id = run.directory, run.run_id
    timeout_s = args.timeout or schedule.DEFAULT_TIMEOUT_S.get(todo[0].profile if todo else "quick", 1800)
    if cluster is not None:
        from ..runner import ray_executor

        if args.start == "fork":  # a Ray task runs one cold worker on its node (bench/runner/ray_executor.py)
            console.print("[yellow]note[/]: --start fork is for the local executor; Ray tasks start each cell's "
                          "worker cold (records say start: spawn)")
        t_run0 = time.monotonic()
        code = ray_executor.execute(cluster, run, todo, data_path, timeout_s, RunUI(console, quiet=args.quiet),
                                    rounds, envs)
    else:
        t_run0 = time.monotonic()
        code = schedule.execute(run, todo, data_path, timeout_s, RunUI(console, quiet=args.quiet), rounds, args.start,
                                envs)
    if args.counts and code != 130:
        counts_cmd.add_to_run(run, todo, args, console, data_path)
    from ..show import report

    recs = run.pooled()
    report.print_report(recs, f"lstm-bench run {run_id}", console)
    if code == 130:
        console.print(f"[yellow]interrupted[/]: {len(recs)} of {len(cells)} cells kept; "
                      f"resume with: {args.prog} run --resume {run_id}"
                      + (" --executor ray" + (f" --address {args.address}" if args.address else "")
                         if args.executor == "ray" else ""))
        return 130
    busy = report.busy_line(recs)
    if busy:
        console.print(busy.replace("RUN_ID", run_id), style="yellow", markup=False)
    took_s = time.monotonic() - t_run0
    # A resumed run with nothing left to do has no estimate to compare against.
    off = f" ({100.0 * (took_s - est.seconds) / est.seconds:+.0f}%)" if est.seconds > 0 else ""
    console.print(f"took {took_s / 60:.1f} min, estimated {est.seconds / 60:.1f} min{off}; records: {run_dir}")
    broken = [r for r in run.rounds() if r["status"] in BROKEN]
    if broken:  # kept, and said in the exit status: a script must not read a run of crashes as a success
        kinds = ", ".join(f"{n} {s}" for s, n in sorted(collections.Counter(r["status"] for r in broken).items()))
        console.print(f"[red]{len(broken)} process(es) of {len({r['key'] for r in broken})} cell(s) did not measure[/] "
                      f"({kinds}): exit 1; rerun them with {args.prog} run --resume {run_id} --retry-failed")
        return EXIT_CELLS_FAILED
    return 0


# A run whose processes ended so exits 1 (its records kept); skipped cells (a GPU cell on a CPU
# machine, a framework not installed) are a plan's normal outcome, not a failure.
BROKEN = ("failed", "oom", "timeout")
EXIT_CELLS_FAILED = 1


def _env_args(args: argparse.Namespace) -> list:
    """--env NAME=SPEC (repeatable) -> the environment specs (a bad one: a usage error)."""
    from ..runner import envs

    try:
        specs = [envs.parse_env_arg(t) for t in args.env or ()]
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"--env names environment {dup[0]} twice")
    return specs


def _manifest_envs(entries: Any) -> list:
    from ..runner import envs

    return [envs.EnvSpec.from_dict(name, d) for name, d in (entries or {}).items()]


def build_envs(specs: list, args: argparse.Namespace, console: Any, code_root: Path = envinfo.REPO_ROOT) -> tuple:
    """Each environment resolved and built, or found in the cache (bench/runner/envs.py); one
    line per environment. A failure is a usage error: one line with the resolver's reason."""
    if not specs:
        return ()
    from ..runner import envs

    builder = envs.Builder(cache_dir=Path(args.env_cache).expanduser() if getattr(args, "env_cache", None)
                           else envs.default_cache_dir())
    out = []
    for spec in specs:
        try:
            b = builder.build(spec, code_root)
        except envs.EnvError as e:
            raise UsageError(str(e)) from None
        how = f"built in {b.build_s:.1f} s" if b.built_now else "cached"
        console.print(f"environment {b.name}: {how}, {len(b.pins)} pins ({b.pin_hash}) -> {b.directory}",
                      markup=False)
        out.append(b)
    return tuple(out)


def default_memory_jobs() -> int:
    """Memory-only processes at once: two where the run may use two CPUs or more. Not more: each
    holds a framework's whole footprint (TF's ~1 GB RSS), and only two were measured."""
    import os

    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def _check_executor(args: argparse.Namespace) -> None:
    """--executor ray needs Ray importable: said before anything is written."""
    if args.executor != "ray":
        if args.address or args.ray_code != "upload":
            raise UsageError("--address and --ray-code go with --executor ray")
        return
    from ..runner import ray_executor

    try:
        ray_executor.require()
    except ray_executor.RayUnavailable as e:
        raise UsageError(str(e)) from None


# run flags that say what to run or how to train, with their unset values: a config says that
# itself, so giving one beside --config is a conflict, not a silent override. --threads, --run-id,
# --rounds, --memory-rounds, --timeout, --data, --dry-run and --quiet still apply.
_CONFIG_CONFLICTS = (("--all", "all", False), ("--framework", "framework", None), ("--model", "model", None),
                     ("--device", "device", None), ("--variant", "variant", None),
                     ("--batch-size", "batch_size", None), ("--profile", "profile", None),
                     ("--precision", "precision", None), ("--steps", "steps", None), ("--warmup", "warmup", None),
                     ("--repeats", "repeats", None), ("--repeat-steps", "repeat_steps", None),
                     ("--seed", "seed", 0), ("--seeds", "seeds", None), ("--strict", "strict", False),
                     ("--target-accuracy", "target_accuracy", None), ("--eval-every", "eval_every", None),
                     ("--env", "env", None))


def _config(args: argparse.Namespace):
    """run --config: the flags that conflict with it (a usage error), then the parsed config."""
    from ..runner import config

    if args.resume or args.retry_failed or args.retry_suspect:
        raise UsageError("give --config or --resume, not both (a run's manifest holds its config)")
    given = [flag for flag, dest, unset in _CONFIG_CONFLICTS if getattr(args, dest, unset) != unset]
    if given:
        raise UsageError(f"--config conflicts with {', '.join(given)}: the config says what to run and how "
                         f"(set it in {args.config})")
    if args.threads < 0:  # else the config would be blamed for the flag's value
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    return config.load(args.config)


def add_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="measure cells (each in its own process) and save records")
    selection.add_selection_args(r)
    r.add_argument("--data", help="MNIST as .npz (keys x_train, y_train, x_test, y_test) or a directory of IDX files")
    r.add_argument("--run-id", help="name the run (default: time + profile)")
    r.add_argument("--resume", metavar="RUN_ID", help="run only the cells of RUN_ID that have no record yet")
    r.add_argument("--retry-failed", action="store_true", help="with --resume: also rerun failed/oom/timeout cells")
    r.add_argument("--retry-suspect", action="store_true",
                   help="with --resume: also rerun the processes timed while other programs used their CPUs "
                        "(marked 'machine busy')")
    r.add_argument("--dry-run", action="store_true", help="plan and print the cells, run nothing")
    counts_cmd.add_counts_args(r, "after each cell, also count")
    r.add_argument("--memory-rounds", type=int, default=3,
                   help="processes per cell that sample RSS (memory-only processes make up the number; default 3)")
    r.add_argument("--memory-jobs", type=int, default=None, metavar="N",
                   help="memory-only processes of CPU cells run N at once, after every timed process (nothing in "
                        "them is timed; default 2 on a machine with 2+ CPUs, 1 turns it off)")
    r.add_argument("--config", metavar="FILE.toml",
                   help="models and sweeps from a TOML file (see examples/sweep.toml) instead of the selection flags")
    r.add_argument("--env", action="append", metavar="NAME=PKG[,PKG...]",
                   help="run every cell in a package environment built with uv from these packages (with the "
                        "project's own dependencies), e.g. --env jax09=jax==0.9.2,optax==0.2.8; repeatable: the "
                        "cells run once per environment (docs/envs.md)")
    r.add_argument("--env-cache", metavar="DIR",
                   help=f"where environments are built and kept (default: $LSTM_BENCH_ENV_CACHE, else "
                        f"~/.cache/lstm-bench/envs)")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: the cells one after another on this machine (default); ray: each cell as a Ray "
                        "task on a cluster, CPU cells asking for --threads CPUs, GPU cells for one GPU (needs "
                        "lstm-bench[ray]). Either way one fresh worker process per cell. `check --against` always "
                        "runs locally: its A/B interleaving needs one machine")
    r.add_argument("--address", metavar="HOST:PORT",
                   help="with --executor ray: the cluster's head (default: RAY_ADDRESS, a cluster started on this "
                        "machine, else a new local instance)")
    r.add_argument("--ray-code", choices=("upload", "installed"), default="upload",
                   help="with --executor ray: upload this checkout to the nodes (default), or use the lstm-bench "
                        "installed on them")
    # Unset rather than quick/fp32, so --config can tell that they were given (see selection.from_args).
    r.set_defaults(func=cmd_run, profile=None, precision=None)
