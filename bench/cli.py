"""`python -m bench ...`: run, list, show, compare, check.

Every user error (bad flag, unknown name, missing framework, corrupt data or results file)
is one line on stderr and exit code 2: never a traceback.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import data, envinfo, gitref, measure, plan, process, registry, results, schedule
from .spec import DEVICES, PRECISIONS, PROFILES, ZOO, Cell, SpecError

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{self.prog}: {message}")


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    """Repeatable and comma-separated: --model a,b --model c -> (a, b, c)."""
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return tuple(dict.fromkeys(out))


def _ints(values: Sequence[str] | None, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _split(values))
    except ValueError:
        raise UsageError(f"{flag} takes integers, got {', '.join(values or [])}") from None


def _check_names(given: tuple[str, ...], allowed: Sequence[str], what: str) -> None:
    for g in given:
        if g not in allowed:
            raise UsageError(f"unknown {what} {g!r} (choose from {', '.join(allowed)})")


# ---------------------------------------------------------------------------------------------
class RunUI:
    """Rich progress: cells done/total, the current cell and its phase, elapsed, ETA; one log
    line per finished cell (so a CI log shows progress without a terminal)."""

    def __init__(self, console: Any, quiet: bool = False) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console, self.quiet = console, quiet
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("cells"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[phase]}"),
                                 console=console, transient=False, disable=quiet)
        self.task = None
        self.t0 = time.monotonic()

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("run", total=total, phase="")

    def cell_started(self, cell: Cell) -> None:
        desc = f"{cell.framework}:{cell.variant} {cell.model.name} {cell.device} b{cell.train.batch_size}"
        self.progress.update(self.task, description=desc, phase="starting")

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def add_total(self, n: int) -> None:
        """An adaptive check adds rounds while a cell's answer is unclear."""
        total = self.progress.tasks[0].total or 0
        self.progress.update(self.task, total=total + n)

    def cell_progress(self, key: str, phase: str) -> None:
        self.progress.update(self.task, phase=phase)

    def cell_finished(self, cell: Cell, outcome: process.CellOutcome) -> None:
        self.progress.advance(self.task)
        colour = {"ok": "green", "skipped": "yellow"}.get(outcome.status, "red")
        from rich.markup import escape

        reason = f" - {escape(outcome.reason)}" if outcome.reason else ""
        self.console.log(f"[{colour}]{outcome.status}[/] {cell.framework}:{cell.variant} {cell.model.name} "
                         f"{cell.device} b{cell.train.batch_size}{reason}")

    def stop(self) -> None:
        self.progress.stop()


def _console():
    from rich.console import Console

    # A log file or CI has no terminal width; 80 columns would fold the table into unreadable
    # slivers, so give non-terminals a width that fits it.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 180)


# ---------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    _check_executor(args)
    conf = None
    if args.config:  # checked whole before anything else, so a bad config leaves nothing behind
        from . import config

        try:
            conf = _config(args)
            conf_cells = conf.plan(args.threads)
        except config.ConfigError as e:  # several mistakes: one line each, then exit 2
            for line in e.errors:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_USAGE
    console = _console()
    results_dir = Path(args.results_dir)
    data_path = str(Path(args.data).resolve()) if args.data else None
    if data_path:
        data.load(data_path)  # a bad file fails here, before any cell starts
    if args.resume:
        run_dir = results.resolve_run(args.resume, results_dir)
        manifest = results.read_manifest(run_dir)
        cells = schedule.cells_from_manifest(manifest)
        r = manifest.get("rounds") or {}
        rounds = schedule.Rounds(full=int(r.get("full", 1)), memory=int(r.get("memory", 0)))
        todo = schedule.remaining(run_dir, cells, args.retry_failed, rounds)
        data_path = manifest.get("data")
        console.print(f"resuming {manifest['run_id']}: {len(cells) - len(todo)} of {len(cells)} cells already done")
        run_id = manifest["run_id"]
    else:
        sel: plan.Selection | None = None
        extra: dict[str, Any] = {}
        if conf is not None:
            cells, label = conf_cells, conf.label
            # The config's text goes into the manifest: the run says what asked for it.
            extra = {"profile": ",".join(dict.fromkeys(c.profile for c in cells)), "config": conf.manifest_entry()}
        else:
            sel = _selection(args)
            cells = plan.plan(sel)
            label = sel.profile
        if not cells:
            raise UsageError("the selection is empty")
        if args.rounds < 1 or args.memory_rounds < 0:
            raise UsageError("--rounds must be >= 1 and --memory-rounds >= 0")
        rounds = schedule.Rounds(full=args.rounds, memory=args.memory_rounds)
        run_id = args.run_id or schedule.new_run_id(label)
        run_dir = results_dir / run_id
        if (run_dir / "manifest.json").exists():
            raise UsageError(f"run {run_id} already exists in {results_dir}: use --resume {run_id}")
        manifest = schedule.start_manifest(run_dir, run_id, cells, sel, sys.argv[1:], data_path,
                                         {"full": rounds.full, "memory": rounds.memory}, extra)
        todo = cells
        if args.all and envinfo.gpu_absent_reason():
            console.print(f"[yellow]gpu cells not planned[/]: {envinfo.gpu_absent_reason()}")
    from . import estimate

    gflops = measure.calibrate_matmul_gflops(0, seconds=0.2)
    est = estimate.estimate(todo, gflops, estimate.load_priors(results_dir, envinfo.machine_id()),
                            rounds.full, max(0, rounds.memory - rounds.full))
    console.print(f"run {run_id}: {len(todo)} cells, estimated {est.seconds / 60:.0f} min on this machine "
                  f"({est.describe(gflops)}) -> {run_dir}")
    if getattr(args, "dry_run", False):
        for c in todo:
            console.print(f"  {c.key}")
        if not args.resume:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # a dry run leaves no run behind
        return 0
    manifest["estimate_s"] = round(est.seconds, 1)  # kept, so the estimate can be checked against the run
    manifest["executor"] = args.executor
    results.write_manifest(run_dir, manifest)
    timeout_s = args.timeout or schedule.DEFAULT_TIMEOUT_S.get(todo[0].profile if todo else "quick", 1800)
    if args.executor == "ray" and todo:
        from . import ray_executor

        try:
            cluster = ray_executor.connect(args.address, args.ray_code)
        except ray_executor.RayUnavailable as e:
            if not args.resume:
                import shutil

                shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: no run left behind
            raise UsageError(str(e)) from None
        t_run0 = time.monotonic()
        code = ray_executor.execute(cluster, run_dir, manifest, todo, data_path, timeout_s,
                                    RunUI(console, quiet=args.quiet), rounds)
    else:
        t_run0 = time.monotonic()
        code = schedule.execute(run_dir, manifest, todo, data_path, timeout_s, RunUI(console, quiet=args.quiet), rounds)
    from . import report

    recs = results.read_records(run_dir)
    report.print_report(recs, f"lstm-bench run {run_id}", console)
    if code == 130:
        console.print(f"[yellow]interrupted[/]: {len(recs)} of {len(cells)} cells kept; "
                      f"resume with: python -m bench run --resume {run_id}"
                      + (" --executor ray" + (f" --address {args.address}" if args.address else "")
                         if args.executor == "ray" else ""))
        return 130
    took_s = time.monotonic() - t_run0
    # A resumed run with nothing left to do has no estimate to compare against.
    off = f" ({100.0 * (took_s - est.seconds) / est.seconds:+.0f}%)" if est.seconds > 0 else ""
    console.print(f"took {took_s / 60:.1f} min, estimated {est.seconds / 60:.1f} min{off}; records: {run_dir}")
    return 0


def _check_executor(args: argparse.Namespace) -> None:
    """--executor ray needs Ray importable: said before anything is written."""
    if args.executor != "ray":
        if args.address or args.ray_code != "upload":
            raise UsageError("--address and --ray-code go with --executor ray")
        return
    from . import ray_executor

    try:
        ray_executor.require()
    except ray_executor.RayUnavailable as e:
        raise UsageError(str(e)) from None


def _selection(args: argparse.Namespace) -> plan.Selection:
    fws, models, devices = _split(args.framework), _split(args.model), _split(args.device)
    variants = _split(args.variant) or ("default",)
    _check_names(fws, list(registry.FRAMEWORKS), "framework")
    _check_names(models, list(ZOO), "model")
    _check_names(devices, DEVICES, "device")
    # run's parser leaves --profile and --precision unset (so --config can tell they were given)
    profile, precision = args.profile or "quick", args.precision or "fp32"
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    base = plan.default_selection(profile)
    if not args.all and not (fws or models):
        raise UsageError("say what to run: --all, --framework/--model or --config FILE (see: python -m bench run -h)")
    return plan.Selection(
        frameworks=fws or base.frameworks, models=models or base.models,
        devices=(devices or base.devices) if (args.all or devices) else ("cpu",),
        profile=profile, variants=variants, batch_sizes=_ints(args.batch_size, "--batch-size"),
        steps=args.steps, threads=args.threads, precision=precision, seed=args.seed, strict=args.strict,
        warmup_steps=args.warmup, repeats=args.repeats, steps_per_repeat=args.repeat_steps,
        seeds=_seeds(getattr(args, "seeds", None), args.seed),
        eval_every_steps=_eval_every(getattr(args, "eval_every", None)),
        target_accuracy=_target(getattr(args, "target_accuracy", None)),
    )


# run flags that say what to run or how to train, with their unset values: a config says that
# itself, so giving one beside --config is a conflict, not a silent override. --threads, --run-id,
# --rounds, --memory-rounds, --timeout, --data, --dry-run and --quiet still apply.
_CONFIG_CONFLICTS = (("--all", "all", False), ("--framework", "framework", None), ("--model", "model", None),
                     ("--device", "device", None), ("--variant", "variant", None),
                     ("--batch-size", "batch_size", None), ("--profile", "profile", None),
                     ("--precision", "precision", None), ("--steps", "steps", None), ("--warmup", "warmup", None),
                     ("--repeats", "repeats", None), ("--repeat-steps", "repeat_steps", None),
                     ("--seed", "seed", 0), ("--seeds", "seeds", None), ("--strict", "strict", False),
                     ("--target-accuracy", "target_accuracy", None), ("--eval-every", "eval_every", None))


def _config(args: argparse.Namespace):
    """run --config: the flags that conflict with it (a usage error), then the parsed config."""
    from . import config

    if args.resume or args.retry_failed:
        raise UsageError("give --config or --resume, not both (a run's manifest holds its config)")
    given = [flag for flag, dest, unset in _CONFIG_CONFLICTS if getattr(args, dest, unset) != unset]
    if given:
        raise UsageError(f"--config conflicts with {', '.join(given)}: the config says what to run and how "
                         f"(set it in {args.config})")
    if args.threads < 0:  # else the config would be blamed for the flag's value
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    return config.load(args.config)


def _seeds(text: str | None, seed: int) -> tuple[int, ...]:
    """--seeds 0,1,2 (these seeds) or --seeds 3 (seeds 0, 1, 2)."""
    if text is None:
        return ()
    if seed:
        raise UsageError("give either --seed or --seeds, not both")
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes a count (3) or a list (0,1,2), got {text!r}") from None
    if "," not in text:
        if len(vals) != 1 or vals[0] < 1:
            raise UsageError(f"--seeds N needs N >= 1, got {text!r}")
        return tuple(range(vals[0]))
    if not vals or min(vals) < 0 or len(set(vals)) != len(vals):
        raise UsageError(f"--seeds list must hold distinct seeds >= 0, got {text!r}")
    return tuple(vals)


def _eval_every(v: int | None) -> int:
    if v is not None and v < 1:
        raise UsageError(f"--eval-every must be >= 1 step, got {v}")
    return v or 0


def _target(v: float | None) -> float:
    if v is None:
        return 0.0
    if not 0.0 < v < 1.0:
        raise UsageError(f"--target-accuracy is a fraction of the test set in (0, 1), e.g. 0.97; got {v}")
    return v


def cmd_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    t = Table(title="frameworks", header_style="bold")
    for c in ("name", "available", "variants", "why not"):
        t.add_column(c)
    for name, info in registry.FRAMEWORKS.items():
        why = registry.unavailable_reason(name)
        t.add_row(name, "yes" if why is None else "no", ", ".join(registry.variants(name)), escape(why or ""))
    console.print(t)
    from . import analytic

    m = Table(title="models (zoo)", header_style="bold")
    for c in ("name", "network", "params", "train GFLOP/sample", "in run --all"):
        m.add_column(c)
    from .spec import DEFAULT_MODELS

    for name, spec in ZOO.items():
        cost = analytic.cost(spec)
        m.add_row(name, spec.describe(), f"{cost.params:,}", f"{cost.train_flops_per_sample / 1e9:.4f}",
                  "yes" if name in DEFAULT_MODELS else "no")
    console.print(m)
    gpu_reason = envinfo.gpu_absent_reason()
    console.print(f"devices: cpu ({measure.cpu_threads_default()} threads, {envinfo.cpu_model()}); "
                  f"gpu: {', '.join(envinfo.gpus()) if not gpu_reason else gpu_reason}")
    p = Table(title="profiles", header_style="bold")
    p.add_column("name")
    p.add_column("what")
    for prof in PROFILES.values():
        p.add_row(prof.name + (" (default)" if prof.name == "quick" else ""), prof.description)
    console.print(p)
    runs = results.list_runs(Path(args.results_dir))
    if runs:
        console.print(f"runs in {args.results_dir}/: {len(runs)} (latest: {runs[-1].name}; "
                      f"python -m bench show {runs[-1].name})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from . import report

    if args.explain:
        for c in report.COLUMNS + (report.TTA_COLUMN,):
            print(f"{c.title:>18}  {c.help}")
        return 0
    if not args.run:
        raise UsageError("show: which run? give a run id (see results/) or a run directory")
    if args.out and args.format in ("table", "markdown", "records"):
        raise UsageError("--out is for the tidy formats (csv, parquet, json); redirect the table instead")
    from . import tidy

    runs = tidy.read_runs(args.run, Path(args.results_dir))  # every run read (and checked) before any output
    if args.format in tidy.FORMATS:
        tidy.write(tidy.encode(tidy.frame(runs), args.format), args.out, args.format)
        return 0
    for run_id, recs in runs:
        if args.format == "table":
            report.print_report(recs, f"lstm-bench run {run_id}", _console())
        elif args.format == "markdown":
            sys.stdout.write((f"## {run_id}\n\n" if len(runs) > 1 else "") + report.to_markdown(recs))
        else:  # records: the pooled records themselves, nested as stored
            sys.stdout.write(report.to_json(recs) + "\n")
    return 0


def _rounds_of(ref: str, results_dir: Path) -> tuple[list[dict], dict]:
    run_dir = results.resolve_run(ref, results_dir)
    return results.read_rounds(run_dir), results.read_manifest(run_dir)


def _rules(args: argparse.Namespace):
    from . import compare

    try:
        return compare.parse_rules(args.fail_on), compare.parse_gate(getattr(args, "gate", None))
    except compare.RuleError as e:
        raise UsageError(str(e)) from None


def _confidence(args: argparse.Namespace) -> float:
    c = getattr(args, "confidence", 0.95)
    if not 0.5 <= c < 1:
        raise UsageError(f"--confidence must be in [0.5, 1), got {c}")
    return c


def _comparison(args: argparse.Namespace):
    """Two stored sets, refused (exit 2) when they differ in what makes figures comparable."""
    from . import compare

    rules, gate = _rules(args)
    (base, mb), (head, mh) = (_rounds_of(args.base, Path(args.results_dir)),
                              _rounds_of(args.head, Path(args.results_dir)))
    diffs = compare.differences(base, head)
    if diffs and not args.force:
        raise UsageError("the two sets are not comparable (--force to compare anyway): " + "; ".join(diffs))
    # Sets written by one `check --against` job ran back to back, round by round: pair them.
    paired = bool(mb.get("check_id")) and mb.get("check_id") == mh.get("check_id")
    return compare.compare(base, head, rules, paired=paired, gate=gate, confidence=_confidence(args)), diffs


def _print_comparison(cmp, console, only_changes: bool, diffs: list[str] = ()) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(header_style="bold")
    for c in ("cell", "metric", "base", "head", "processes", "change", "verdict"):
        t.add_column(c, justify="right" if c in ("base", "head", "processes") else "left", overflow="fold")
    colour = {"regressed": "red", "improved": "green", "unchanged": "", "inconclusive": "yellow", "changed": "yellow"}
    from .compare import format_value

    # Cells from several nodes (Ray runs): grouped by node, and each says where it ran.
    several = len(set(cmp.nodes.values())) > 1
    for f in sorted(cmp.findings, key=lambda f: cmp.nodes.get(f.key, "")) if several else cmp.findings:
        if only_changes and f.verdict == "unchanged" and f.rule != "train":
            continue
        n = cmp.rounds.get(f.key, (0, 0))
        cell = f"{cmp.nodes.get(f.key, '?')}: {f.key}" if several else f.key
        t.add_row(escape(cell), f.rule + ("" if f.gated else " (advisory)"), format_value(f.rule, f.base),
                  format_value(f.rule, f.head), f"{n[0]}+{n[1]}" + (" paired" if cmp.paired else ""), escape(f.why),
                  f.verdict, style=colour.get(f.verdict, ""))
    console.print(t)
    for d in diffs:
        console.print(f"[yellow]warning (--force)[/]: {escape(d)}")
    for line in cmp.model_diffs:  # its cells cannot join: say why instead of listing them as only-in
        console.print(f"[yellow]{escape(line)}[/]")
    for label, keys in (("only in base", cmp.only_base), ("only in head", cmp.only_head),
                        ("not ok on one side", cmp.not_ok)):
        if keys:
            console.print(f"{label}: {escape(', '.join(keys))}")


def cmd_compare(args: argparse.Namespace) -> int:
    cmp, diffs = _comparison(args)
    _print_comparison(cmp, _console(), only_changes=False, diffs=diffs)
    return 0


def _check_sides(args: argparse.Namespace, sel: plan.Selection, cells: list, base_root: Path, names: tuple[str, str],
                 label: str):
    """Make the two sides' run directories (paired by a shared check_id) under --results-dir."""
    import uuid

    run_id = schedule.new_run_id(sel.profile)
    results_dir = Path(args.results_dir)
    check_id = uuid.uuid4().hex[:12]
    sides = []
    for name, root in zip(names, (base_root, envinfo.REPO_ROOT)):
        rid = f"{run_id}-{name}"
        m = schedule.start_manifest(results_dir / rid, rid, cells, sel, sys.argv[1:], None,
                                  {"full": args.rounds, "memory": 0},
                                  {"check_id": check_id, "side": name, "against": label})
        sides.append(schedule.Side(name, results_dir / rid, m, root))
    return tuple(sides)


def _round_settles(args: argparse.Namespace, sides, rules, gate, confidence):
    """The adaptive stop rule: after each round, judge the cell on what both sides have so far."""
    from . import compare

    def decide(cell, done: int) -> bool:
        base = [r for r in results.read_rounds(sides[0].run_dir) if r["key"] == cell.key]
        head = [r for r in results.read_rounds(sides[1].run_dir) if r["key"] == cell.key]
        return compare.settled(compare.compare(base, head, rules, paired=True, gate=gate,
                                               confidence=confidence).findings)

    return decide


def _duet_cpus(args: argparse.Namespace, cells: list, sides, console: Any) -> tuple[tuple[int, ...], ...]:
    """The two sides' CPU sets for duet rounds, or () (--sequential, or too few CPUs: said);
    recorded in both sides' manifests (written with their status)."""
    duet = () if args.sequential else schedule.duet_cpus(args.threads)
    if not duet and not args.sequential and any(c.device == "cpu" for c in cells):
        console.print(f"[yellow]note[/]: duet rounds need 2 x {args.threads} CPUs and this process may use "
                      f"{measure.cpu_threads_default()}: the two sides run one after the other")
    for side in sides:
        side.manifest["duet_cpus"] = [list(c) for c in duet]
    return duet


def _duet_words(duet: tuple[tuple[int, ...], ...]) -> str:
    a, b = (",".join(map(str, s)) for s in duet)
    return f"side by side (duet: one on CPU {a}, the other on CPU {b}, swapped every round; GPU cells one after the other)"


def _run_against(args: argparse.Namespace) -> tuple[str, str]:
    """Run the selection with REF's code and with this checkout's in rounds of fresh processes,
    side by side (duet) or A B / B A in this job, adding rounds per cell until every gated metric is
    decided or the cell's time budget is spent; returns the two run directories."""
    if args.base or args.head:
        raise UsageError("check: give either BASE HEAD or --against REF, not both")
    sel = _selection(args)
    cells = plan.plan(sel)
    rules, gate = _rules(args)
    confidence = _confidence(args)
    if args.rounds < 2 or args.max_rounds < args.rounds or args.budget_s <= 0:
        raise UsageError("--rounds must be >= 2 (one round cannot show a spread), --max-rounds >= --rounds, "
                         "--budget-s > 0")
    console = _console()
    try:
        tree = gitref.add_worktree(args.against)
    except gitref.GitError as e:
        raise UsageError(str(e)) from None
    try:
        sides = _check_sides(args, sel, cells, tree, ("base", "head"), args.against)
        duet = _duet_cpus(args, cells, sides, console)
        console.print(f"check --against {args.against}: {len(cells)} cell(s), base and head in fresh processes, "
                      + (_duet_words(duet) if duet else "interleaved A B / B A")
                      + f", {args.rounds}..{args.max_rounds} rounds or {args.budget_s:.0f} s "
                      f"per cell, {args.threads} CPU thread(s) per process")
        rounds = schedule.Rounds(full=args.rounds, max_full=args.max_rounds, budget_s=args.budget_s,
                               decide=_round_settles(args, sides, rules, gate, confidence), duet_cpus=duet)
        code = schedule.execute_sides(sides, cells, None, args.timeout or schedule.DEFAULT_TIMEOUT_S.get(sel.profile, 1800),
                                    RunUI(console, quiet=args.quiet), rounds)
    finally:
        gitref.remove_worktree(tree)
    if code == 130:
        raise KeyboardInterrupt
    return str(sides[0].run_dir), str(sides[1].run_dir)


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 unchanged or improved, 1 regressed, 3 inconclusive (gated metrics), 2 bad input."""
    if (args.calibrate or args.against) and not args.threads:
        args.threads = measure.check_threads_default(duet=not args.sequential)
    if args.calibrate:
        return cmd_calibrate(args)
    if args.against:
        args.base, args.head = _run_against(args)
    elif not (args.base and args.head):
        raise UsageError("check: give BASE HEAD (run ids or directories), or --against GIT_REF with a selection")
    cmp, diffs = _comparison(args)
    console = _console()
    _print_comparison(cmp, console, only_changes=False, diffs=diffs)
    joined = len(cmp.rounds)
    if joined == 0:
        raise UsageError("check: the two result sets have no ok cell in common (same model, recipe, threads...)")
    if args.summary_md:
        from . import compare

        with open(args.summary_md, "a") as f:
            f.write(f"### lstm-bench check: {args.base} vs {args.head}\n\n" + compare.summary_markdown(cmp) + "\n")
    code = cmp.exit_code()
    if code == 1:
        regs = cmp.regressions
        console.print(f"[red]REGRESSED[/]: {len(regs)} gated metric(s) in {len({f.key for f in regs})} of {joined} cells")
    elif code == 3:
        inc = cmp.inconclusive
        console.print(f"[yellow]INCONCLUSIVE[/]: {len(inc)} gated metric(s) not settled within the budget "
                      f"({', '.join(sorted({f.rule for f in inc}))}); rerun with a larger --budget-s / --max-rounds")
    else:
        improved = sum(f.verdict == "improved" and f.gated for f in cmp.findings)
        console.print(f"[green]OK[/]: no gated metric regressed in {joined} cells ({improved} improved)")
    return code


def cmd_calibrate(args: argparse.Namespace) -> int:
    """A/A rounds of this checkout against itself: each metric's process-to-process spread, and
    the smallest slowdown a check can detect at 95% power within the time budget."""
    from rich.table import Table

    from . import compare, stats

    if args.base or args.head or args.against:
        raise UsageError("check --calibrate runs this checkout against itself: give a selection, not BASE/HEAD/--against")
    sel = _selection(args)
    cells = plan.plan(sel)
    rules, _ = _rules(args)
    confidence = _confidence(args)
    rounds_n = max(args.rounds, 4)
    console = _console()
    sides = _check_sides(args, sel, cells, envinfo.REPO_ROOT, ("a1", "a2"), "calibrate")
    duet = _duet_cpus(args, cells, sides, console)
    console.print(f"calibrate: {len(cells)} cell(s) x {rounds_n} A/A rounds (identical code both sides), "
                  + (_duet_words(duet) if duet else "one side after the other"))
    t0 = time.monotonic()
    # Rounds with `decide` never stopping early: the same code path (and duet) as a real check.
    code = schedule.execute_sides(sides, cells, None, args.timeout or schedule.DEFAULT_TIMEOUT_S.get(sel.profile, 1800),
                                RunUI(console, quiet=args.quiet),
                                schedule.Rounds(full=rounds_n, max_full=rounds_n, budget_s=math.inf,
                                              decide=lambda cell, done: False, duet_cpus=duet))
    if code == 130:
        raise KeyboardInterrupt
    per_round_s = (time.monotonic() - t0) / max(1, rounds_n * len(cells))
    affordable = max(2, int(args.budget_s / per_round_s))
    a, b = results.read_rounds(sides[0].run_dir), results.read_rounds(sides[1].run_dir)
    t = Table(header_style="bold", title=f"A/A noise on this machine ({rounds_n} rounds per cell, "
                                          f"{per_round_s:.1f} s per round; budget {args.budget_s:.0f} s = "
                                          f"{affordable} rounds)")
    for c in ("cell", "metric", "process sd", "round log-ratio sd", "A/A estimate", "detectable at 95% power"):
        t.add_column(c)
    from rich.markup import escape

    for key in dict.fromkeys(r["key"] for r in a):
        ga, gb = compare.ok_rounds(a).get(key, {}), compare.ok_rounds(b).get(key, {})
        for rule in rules:
            if rule.kind != "rounds":
                continue
            rr = sorted(set(ga) & set(gb))
            pairs = [(compare.value(rule, ga[r]), compare.value(rule, gb[r])) for r in rr]
            pairs = [(x, y) for x, y in pairs if x and y]
            if len(pairs) < 2:
                continue
            xs = [x for x, _ in pairs] + [y for _, y in pairs]
            import numpy as np

            proc_sd = float(np.std(np.log(xs), ddof=1))
            est = stats.ratio_ci([x for x, _ in pairs], [y for _, y in pairs], True, confidence)
            det = stats.power_detectable(est.sd_log, affordable, rule.floor, confidence)
            t.add_row(escape(key), rule.name, f"{100 * proc_sd:.1f}%", f"{100 * est.sd_log:.1f}%",
                      escape(stats.describe(est, rule.words)),
                      f"{100 * det:.1f}% in {affordable} rounds" if math.isfinite(det) else "-")
    console.print(t)
    console.print("process sd: spread of per-process medians; round log-ratio sd: spread of head/base within a round "
                  "(what the check's interval is built from); detectable: the smallest slowdown whose interval clears "
                  "the floor with 95% probability in the rounds the budget allows (normal model)")
    return 0


def cmd_overhead(args: argparse.Namespace) -> int:
    from rich.table import Table

    from . import overhead

    fws = _split(args.framework) or tuple(registry.FRAMEWORKS)
    _check_names(fws, list(registry.FRAMEWORKS), "framework")
    if args.model not in ("lstm128", "lstm512", "lstm3x256"):
        raise UsageError(f"overhead covers lstm128, lstm512, lstm3x256 (bare loops exist for those), not {args.model!r}")
    for fw in fws:  # the bare loops are fixed code: TF's is XLA, so `--variant xla` compares like with like
        registry.check_variant(fw, args.variant)
    if args.batch_size <= 0 or args.rounds <= 0 or args.steps <= 0 or args.processes < 2:
        raise UsageError("--batch-size, --rounds and --steps must be > 0, --processes >= 2 "
                         "(the interval is over processes)")
    threads = args.threads or measure.cpu_threads_default()
    console = _console()
    console.print(f"harness ({args.variant}) vs bare loop: {args.model} b{args.batch_size}, {threads} threads, "
                  f"{args.processes} processes per framework, each {args.rounds} interleaved rounds x {args.steps} steps")

    def progress(fw: str, i: int, n: int) -> None:
        console.print(f"  {fw}: process {i + 1}/{n}", highlight=False)

    setup = overhead.Setup(args.model, args.batch_size, threads, args.rounds, args.steps, args.variant)
    res = overhead.run_all(fws, setup, Path(args.results_dir), processes=args.processes, progress=progress)
    t = Table(header_style="bold")
    for c in ("framework", "harness samples/s", "bare loop samples/s", "harness / bare (95% CI)",
              f">= {overhead.TARGET_RATIO}?", "harness / own step (95% CI)"):
        t.add_column(c, justify="left" if c == "framework" else "right")

    def ci(e: dict) -> str:
        return f"{e['ratio']:.3f} ({e['lo']:.3f}..{e['hi']:.3f})"

    for r in res:
        if "verdict" not in r:
            from rich.markup import escape

            t.add_row(r["framework"], "-", "-", escape((r.get("skipped") or r.get("failed", ""))[:100]), "-", "-")
            continue
        h, b = (measure.summarize([measure.summarize(p[k]).median for p in r["processes"]])
                for k in ("harness_samples_per_s", "bare_samples_per_s"))
        t.add_row(r["framework"], f"{h.median:,.0f} ({h.min:,.0f}..{h.max:,.0f})",
                  f"{b.median:,.0f} ({b.min:,.0f}..{b.max:,.0f})", ci(r["harness_over_bare"]), r["verdict"],
                  ci(r["harness_over_own_step"]))
    console.print(t)
    console.print("samples/s: median (min..max) of the per-process medians; ratios: paired over processes (each "
                  "process's median of its rounds), t interval. harness / bare compares with a hand-written loop "
                  "(implementation choices included); harness / own step isolates the timing machinery (the same "
                  "step function in a plain loop, an A/A comparison of the loop around it)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plot

    run_dir = results.resolve_run(args.run, Path(args.results_dir))
    out = Path(args.out) if args.out else run_dir / "plot.png"
    recs = results.read_records(run_dir)
    try:
        paths = [plot.plot_run(recs, out, f"lstm-bench {run_dir.name}")]
        paths += plot.plot_claim(recs, out.parent, f"lstm-bench {run_dir.name}")
        paths += plot.plot_accuracy(recs, out.parent, f"lstm-bench {run_dir.name}")
    except plot.PlotUnavailable as e:
        raise UsageError(str(e)) from None
    for p in paths:
        print(p)
    return 0


def _selection_args(r: argparse.ArgumentParser, threads_default: str = "all cores") -> None:
    r.add_argument("--all", action="store_true", help="every framework x default model x available device")
    r.add_argument("--framework", "-f", action="append", help="torch, tf, jax (repeatable or comma-separated)")
    r.add_argument("--model", "-m", action="append", help="zoo model(s), see `list`")
    r.add_argument("--device", "-d", action="append", help="cpu, gpu (default: cpu; --all: every device present)")
    r.add_argument("--variant", action="append", help="framework variant(s), or 'all' (default: default)")
    r.add_argument("--batch-size", "--batch-sizes", "-b", action="append",
                   help="override the profile's batch size: one or a sweep, e.g. 16,64,256,1024 (repeatable)")
    r.add_argument("--profile", default="quick", help=f"{', '.join(PROFILES)} (default: quick; check: ci)")
    r.add_argument("--rounds", type=int, default=1,
                   help="fresh processes per cell: run: full measurements, round-robin over the cells, tables show "
                        "the median of per-process medians (default 1); check: rounds before adaptive stopping "
                        "(default 6)")
    r.add_argument("--steps", type=int, help="override the profile's training steps")
    r.add_argument("--warmup", type=int, help="warm-up steps before timing, the first reported as compile_s")
    r.add_argument("--repeats", type=int, help="timed repeats (median and IQR are over these)")
    r.add_argument("--repeat-steps", type=int, help="training steps per timed repeat")
    r.add_argument("--threads", type=int, default=0, help=f"CPU threads for every framework (default: {threads_default})")
    r.add_argument("--precision", default="fp32", help="fp32 (default), tf32 (GPU), bf16")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seeds", metavar="N|LIST", help="every cell once per seed: a count (3 = seeds 0,1,2) or a "
                   "list (0,1,2); accuracy is then reported as mean +- sd and checked across frameworks")
    r.add_argument("--target-accuracy", type=float, metavar="FRACTION",
                   help="time to accuracy: training seconds and steps until the test accuracy first reaches "
                        "this (e.g. 0.97), evaluated every --eval-every steps outside the timed region")
    r.add_argument("--eval-every", type=int, metavar="STEPS",
                   help="test-set evaluations every STEPS training steps (default with --target-accuracy: "
                        "about 20 over the run)")
    r.add_argument("--strict", action="store_true", help="fail a cell whose expected fast path (e.g. cuDNN) did not run")
    r.add_argument("--timeout", type=float, help="seconds per cell (default: by profile)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------
def build_parser() -> Parser:
    p = Parser(prog="python -m bench", description="lstm-bench: LSTM vs CNN on MNIST in torch, TF/Keras and JAX")
    p.add_argument("--results-dir", default="results", help="where runs are stored (default: ./results)")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)

    r = sub.add_parser("run", help="measure cells (each in its own process) and save records")
    _selection_args(r)
    r.add_argument("--data", help="MNIST as .npz (keys x_train, y_train, x_test, y_test) or a directory of IDX files")
    r.add_argument("--run-id", help="name the run (default: time + profile)")
    r.add_argument("--resume", metavar="RUN_ID", help="run only the cells of RUN_ID that have no record yet")
    r.add_argument("--retry-failed", action="store_true", help="with --resume: also rerun failed/oom/timeout cells")
    r.add_argument("--dry-run", action="store_true", help="plan and print the cells, run nothing")
    r.add_argument("--memory-rounds", type=int, default=3,
                   help="processes per cell that sample RSS (memory-only processes make up the number; default 3)")
    r.add_argument("--config", metavar="FILE.toml",
                   help="models and sweeps from a TOML file (see examples/sweep.toml) instead of the selection flags")
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
    # Unset rather than quick/fp32, so --config can tell that they were given (see _selection).
    r.set_defaults(func=cmd_run, profile=None, precision=None)

    ls = sub.add_parser("list", help="frameworks (available or not, and why), models, devices, profiles")
    ls.set_defaults(func=cmd_list)

    s = sub.add_parser("show", help="print a run's table, or export runs as one tidy table (csv, parquet, json)")
    s.add_argument("run", nargs="*", help="run id(s) (under --results-dir) or run directories; the tidy formats "
                                          "concatenate several runs into one table with run_id and node columns")
    s.add_argument("--format", default="table", choices=("table", "markdown", "csv", "parquet", "json", "records"),
                   help="table (default), markdown (the published tables), csv / parquet / json (one flat row per "
                        "cell with every metric), records (the pooled JSON records, nested)")
    s.add_argument("--out", metavar="FILE", help="write the csv/parquet/json table to FILE (atomically)")
    s.add_argument("--explain", action="store_true", help="say what each table column means")
    s.set_defaults(func=cmd_show)

    rules_help = ("effect floors, e.g. 'train:3%%,infer:3%%,memory:1%%,rss:10%%,accuracy:0.02' (the defaults): "
                  "regressed = the whole confidence interval is past the floor, unchanged = inside +- the floor")
    for name, func, text in (("compare", cmd_compare, "compare two runs cell by cell"),
                             ("check", cmd_check, "exit 0 unchanged/improved, 1 regressed, 3 inconclusive (for CI)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("base", nargs="?" if name == "check" else None, help="baseline run id or directory")
        c.add_argument("head", nargs="?" if name == "check" else None, help="run id or directory to judge")
        c.add_argument("--fail-on", "--floor", dest="fail_on", help=rules_help)
        c.add_argument("--gate", help="metrics that decide the exit code (default: train,memory,accuracy; "
                                      "infer and rss are reported as advisory)")
        c.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
        c.add_argument("--force", action="store_true",
                       help="compare sets that differ in machine, framework versions, threads, precision or device")
        c.set_defaults(func=func)
        if name == "check":
            c.add_argument("--against", metavar="GIT_REF",
                           help="run the selection below with GIT_REF's code and this checkout's, in rounds of fresh "
                                "processes interleaved in this job, then judge (the trustworthy mode on shared runners)")
            c.add_argument("--budget-s", type=float, default=180.0,
                           help="seconds per cell for adaptive rounds (default 180)")
            c.add_argument("--max-rounds", type=int, default=40, help="rounds per cell at most (default 40)")
            c.add_argument("--sequential", action="store_true",
                           help="run base and head one after the other (default: side by side, each pinned to "
                                "half the CPUs, when the machine has 2 x --threads CPUs)")
            c.add_argument("--calibrate", action="store_true",
                           help="A/A rounds of this checkout against itself: noise per metric and the smallest "
                                "slowdown detectable within --budget-s")
            c.add_argument("--summary-md", metavar="FILE", help="append the verdict table as markdown to FILE "
                                                                "(e.g. $GITHUB_STEP_SUMMARY)")
            _selection_args(c, threads_default="all cores but one, left to the OS: processes then vary less")
            c.set_defaults(profile="ci", rounds=6)

    pl = sub.add_parser("plot", help="bar charts of a run's throughput and memory (PNG)")
    pl.add_argument("run", help="run id or directory")
    pl.add_argument("--out", help="output file (default: RUN_DIR/plot.png)")
    pl.set_defaults(func=cmd_plot)

    from . import export

    export.add_parser(sub)

    o = sub.add_parser("overhead", help="harness timing vs a bare hand-written loop, side by side (CPU)")
    o.add_argument("--framework", "-f", action="append", help="default: all installed")
    o.add_argument("--model", "-m", default="lstm128")
    o.add_argument("--batch-size", "-b", type=int, default=128)
    o.add_argument("--threads", type=int, default=0)
    o.add_argument("--rounds", type=int, default=6, help="interleaved rounds (A B, B A, ...)")
    o.add_argument("--steps", type=int, default=40, help="steps per timed window")
    o.add_argument("--processes", type=int, default=5, help="fresh processes per framework: the unit of the interval")
    o.add_argument("--variant", default="default", help="the harness variant to time (the bare loops are fixed: "
                   "torch eager, TF tf.function(jit_compile=True), JAX jit)")
    o.set_defaults(func=cmd_overhead)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.cmd is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args) or 0)
    except (UsageError, SpecError, data.DataError, results.ResultsError, registry.UnknownFramework) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
