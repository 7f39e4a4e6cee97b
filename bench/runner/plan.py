"""Selection -> cells: which frameworks, variants, models, devices, batch sizes and seeds a run
measures, each as a Cell with its training recipe and timing protocol. Names are checked here
(an unknown framework, variant or model is one line and exit 2, before anything runs)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from .. import envinfo, measure, registry
from ..spec import DEFAULT_MODELS, Cell, ModelSpec, Profile, Protocol, SpecError, TrainSpec, get_model, get_profile


@dataclass(frozen=True)
class Selection:
    frameworks: tuple[str, ...]
    models: tuple[str, ...]
    devices: tuple[str, ...]
    profile: str = "quick"
    variants: tuple[str, ...] = ("default",)
    batch_sizes: tuple[int, ...] = ()  # empty = the profile's batch size per model
    steps: int | None = None  # overrides the profile (also scales nothing else)
    threads: int = 0  # 0 = every core this process may use
    precision: str = "fp32"
    seed: int = 0
    strict: bool = False
    # Timing-protocol overrides (None = the profile's): warm-up steps, repeats, steps per repeat.
    warmup_steps: int | None = None
    repeats: int | None = None
    steps_per_repeat: int | None = None
    seeds: tuple[int, ...] = ()  # several seeds: every cell once per seed (empty = (seed,))
    # Time to accuracy: evaluate every K steps (0 = off; with a target and no K, ~20 evaluations).
    eval_every_steps: int = 0
    target_accuracy: float = 0.0
    # Package environments (bench/runner/envs.py) by name: every cell once per environment
    # (empty = the interpreter the harness runs in).
    envs: tuple[str, ...] = ()


def _protocol(sel: Selection, base: Protocol, steps: int) -> Protocol:
    over = {k: v for k, v in (("warmup_steps", sel.warmup_steps), ("repeats", sel.repeats),
                              ("steps_per_repeat", sel.steps_per_repeat)) if v is not None}
    every = sel.eval_every_steps or (max(1, -(-steps // 20)) if sel.target_accuracy else 0)
    if every:
        over.update(eval_every_steps=every, target_accuracy=sel.target_accuracy)
    return replace(base, **over) if over else base


def plan(sel: Selection, models: Mapping[str, ModelSpec] | None = None, profile: Profile | None = None) -> list[Cell]:
    """The cells of a selection. `models` resolves names the zoo does not know (a config's own
    models: the worker builds whatever spec the cell carries, so nothing downstream looks a
    name up again); `profile` replaces the named one (a config's protocol overrides)."""
    prof = profile or get_profile(sel.profile)
    threads = sel.threads or measure.cpu_threads_default()
    cells: list[Cell] = []
    for fw in sel.frameworks:
        registry.get(fw)
        variants = registry.variants(fw) if sel.variants == ("all",) else sel.variants
        for variant in variants:
            registry.check_variant(fw, variant)
            for name in sel.models:
                model = models[name] if models and name in models else get_model(name)
                entry = prof.entry(name)
                for device in sel.devices:
                    for bs in sel.batch_sizes or prof.batch_sizes or (entry.batch_size,):
                        steps = sel.steps if sel.steps is not None else entry.steps
                        protocol = _protocol(sel, entry.protocol, steps)
                        if steps < protocol.measured_steps:
                            raise SpecError(f"{steps} training steps is fewer than the timing protocol needs for "
                                            f"{name} ({protocol.measured_steps}: warm-up + repeats x steps)")
                        for seed in sel.seeds or (sel.seed,):
                            train = TrainSpec(batch_size=bs, steps=steps, seed=seed)
                            for env in sel.envs or ("",):
                                cells.append(Cell(framework=fw, variant=variant, model=model, train=train,
                                                  device=device, precision=sel.precision,
                                                  threads=threads if device == "cpu" else 0, protocol=protocol,
                                                  profile=sel.profile, strict=sel.strict, env=env))
    keys = [c.key for c in cells]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise SpecError(f"the selection names the same cell twice: {sorted(dup)[0]}")
    return cells


def default_selection(profile: str) -> Selection:
    devices = ("cpu",) if envinfo.gpu_absent_reason() else ("cpu", "gpu")
    return Selection(frameworks=tuple(registry.FRAMEWORKS), models=DEFAULT_MODELS, devices=devices, profile=profile)
