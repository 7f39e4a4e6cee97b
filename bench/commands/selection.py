"""The selection flags shared by `run`, `check --against` and `check --calibrate`: what to run
(frameworks, models, devices, variants, batch sizes), the recipe and protocol overrides, and
their conversion into a plan.Selection, every bad value a usage error."""
from __future__ import annotations

import argparse
from typing import Sequence

from .. import registry
from ..runner.plan import Selection, default_selection
from ..spec import DEVICES, PRECISIONS, PROFILES, ZOO
from .usage import UsageError


def split_values(values: Sequence[str] | None) -> tuple[str, ...]:
    """Repeatable and comma-separated: --model a,b --model c -> (a, b, c)."""
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return tuple(dict.fromkeys(out))


def ints(values: Sequence[str] | None, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in split_values(values))
    except ValueError:
        raise UsageError(f"{flag} takes integers, got {', '.join(values or [])}") from None


def check_names(given: tuple[str, ...], allowed: Sequence[str], what: str) -> None:
    for g in given:
        if g not in allowed:
            raise UsageError(f"unknown {what} {g!r} (choose from {', '.join(allowed)})")


def from_args(args: argparse.Namespace) -> Selection:
    fws, models, devices = split_values(args.framework), split_values(args.model), split_values(args.device)
    variants = split_values(args.variant) or ("default",)
    check_names(fws, list(registry.FRAMEWORKS), "framework")
    check_names(models, list(ZOO), "model")
    check_names(devices, DEVICES, "device")
    # run's parser leaves --profile and --precision unset (so --config can tell they were given)
    profile, precision = args.profile or "quick", args.precision or "fp32"
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    base = default_selection(profile)
    if not args.all and not (fws or models):
        raise UsageError(f"say what to run: --all, --framework/--model or --config FILE "
                         f"(see: {getattr(args, 'prog', 'lstm-bench')} run -h)")
    return Selection(
        frameworks=fws or base.frameworks, models=models or base.models,
        devices=(devices or base.devices) if (args.all or devices) else ("cpu",),
        profile=profile, variants=variants, batch_sizes=ints(args.batch_size, "--batch-size"),
        steps=args.steps, threads=args.threads, precision=precision, seed=args.seed, strict=args.strict,
        warmup_steps=args.warmup, repeats=args.repeats, steps_per_repeat=args.repeat_steps,
        seeds=parse_seeds(getattr(args, "seeds", None), args.seed),
        eval_every_steps=eval_every(getattr(args, "eval_every", None)),
        target_accuracy=target_accuracy(getattr(args, "target_accuracy", None)),
    )


def parse_seeds(text: str | None, seed: int) -> tuple[int, ...]:
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


def eval_every(v: int | None) -> int:
    if v is not None and v < 1:
        raise UsageError(f"--eval-every must be >= 1 step, got {v}")
    return v or 0


def target_accuracy(v: float | None) -> float:
    if v is None:
        return 0.0
    if not 0.0 < v < 1.0:
        raise UsageError(f"--target-accuracy is a fraction of the test set in (0, 1), e.g. 0.97; got {v}")
    return v


def add_selection_args(r: argparse.ArgumentParser, threads_default: str = "all cores") -> None:
    r.add_argument("--all", action="store_true", help="every framework x default model x available device")
    r.add_argument("--framework", "-f", action="append", help="torch, tf, jax (repeatable or comma-separated)")
    r.add_argument("--model", "-m", action="append", help="zoo model(s), see `list`")
    r.add_argument("--device", "-d", action="append", help="cpu, gpu (default: cpu; --all: every device present)")
    r.add_argument("--variant", action="append", help="framework variant(s), or 'all' (default: default)")
    r.add_argument("--batch-size", "--batch-sizes", "-b", action="append",
                   help="override the profile's batch size: one or a sweep, e.g. 16,64,256,1024 (repeatable)")
    r.add_argument("--profile", default="quick", metavar="{" + ",".join(PROFILES) + "}",
                   help="how long each cell trains and is timed, and at which batch sizes (default: quick; check: "
                        "ci); `list` says what each profile does")
    r.add_argument("--rounds", type=int, default=1,
                   help="fresh processes per cell: run: full measurements, round-robin over the cells, tables show "
                        "the median of per-process medians (default 1); check: rounds before adaptive stopping "
                        "(default 6)")
    r.add_argument("--steps", type=int, help="override the profile's training steps")
    r.add_argument("--warmup", type=int, help="warm-up steps before timing, the first reported as compile_s")
    r.add_argument("--repeats", type=int, help="timed repeats (median and IQR are over these)")
    r.add_argument("--repeat-steps", type=int, help="training steps per timed repeat")
    r.add_argument("--threads", type=int, default=0, help=f"CPU threads for every framework (default: {threads_default})")
    r.add_argument("--precision", default="fp32", metavar="{" + ",".join(PRECISIONS) + "}",
                   help="fp32 (default), tf32 (GPU matmuls in TF32), bf16")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights (drawn once in numpy, the same in every framework) and of the "
                        "batch order (default 0)")
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
    r.add_argument("--start", choices=("spawn", "fork"), default="spawn",
                   help="how each cell's process starts: a cold interpreter (spawn, default), or forked from a "
                        "warm parent that has imported the framework (fork; the record says which)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
