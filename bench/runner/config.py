"""`run --config FILE.toml`: your own models and sweeps, checked before anything runs.

A config is read whole and every mistake in it is collected, each as one line that names the
file and the table ("my.toml: [models.lstm64x2]: unknown key 'hiden' (did you mean 'hidden'?)"),
so one pass fixes them all. Unknown keys are errors, not ignored: a misspelt `hiden` silently
left at its default would measure another network under the name you gave it. The format is in
docs/configs.md; examples/sweep.toml is a working one.
Nothing here imports a framework.
"""
from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject pulls in tomli there)
    import tomli as tomllib

from .. import registry
from .plan import Selection, plan
from ..spec import DEVICES, PRECISIONS, PROFILES, ZOO, Cell, ModelSpec, Profile, ProfileEntry, Protocol, SpecError

# Value kinds a key may have, and how an error names them.
_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "ints": "a list of integers", "strs": "a list of strings", "table": "a table"}

# [models.NAME]: the ModelSpec fields a user may set. timesteps, features, classes and
# flatten_order are fixed by MNIST (28 rows of 28 pixels, 10 digits) and the canonical weight
# layout; the name is the table's.
MODEL_KEYS = {"family": "str", "cell": "str", "hidden": "int", "layers": "int", "bidirectional": "bool",
              "dropout": "float", "forget_bias": "float", "variable_length": "bool",
              "conv_channels": "ints", "conv_kernel": "int", "fc_hidden": "int"}
# ModelSpec ignores the other family's fields, but they would still enter the spec (and the
# cell key) while changing nothing: a setting that does nothing is an error, like a typo.
_RNN_ONLY = ("cell", "hidden", "layers", "bidirectional", "forget_bias", "variable_length")
_CNN_ONLY = ("conv_channels", "conv_kernel", "fc_hidden")
_FIXED = ("name", "timesteps", "features", "classes", "flatten_order")
# Names go into cell keys (dot-separated) and record file names.
_NAME = re.compile(r"[A-Za-z0-9_-]+")

SWEEP_KEYS = {"frameworks": "strs", "models": "strs", "batch_sizes": "ints", "devices": "strs",
              "precisions": "strs", "variants": "strs", "threads": "ints", "seeds": "ints", "strict": "bool",
              "profile": "str", "protocol": "table", "envs": "strs"}
# [envs.NAME]: a package environment (bench/runner/envs.py) a sweep's cells may run in.
ENV_KEYS = {"packages": "strs", "extras": "strs", "cache_dir": "str"}
# [sweep.protocol]: training steps and the Protocol fields, by their names in the record.
PROTOCOL_KEYS = {"steps": "int", "warmup_steps": "int", "repeats": "int", "steps_per_repeat": "int",
                 "infer_repeats": "int", "memory_steps": "int", "test_samples": "int", "eval_every_steps": "int",
                 "target_accuracy": "float"}
# Time to accuracy goes through plan.Selection, which picks ~20 evaluations when only a
# target is given (as run --target-accuracy does); the rest rewrite the profile's entries.
_VIA_SELECTION = ("eval_every_steps", "target_accuracy")


class ConfigError(SpecError):
    """Everything wrong with a config: `errors` holds one line per mistake."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(errors))


@dataclass(frozen=True)
class Sweep:
    """One [[sweep]]: every combination of its lists is a cell (x seeds)."""

    frameworks: tuple[str, ...]
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...] = ()  # empty: the profile's batch size per model
    devices: tuple[str, ...] = ("cpu",)
    precisions: tuple[str, ...] = ("fp32",)
    variants: tuple[str, ...] = ("default",)
    threads: tuple[int, ...] = (0,)  # 0 = every core this process may use
    seeds: tuple[int, ...] = (0,)
    strict: bool = False
    profile: str | None = None
    protocol: Mapping[str, Any] = field(default_factory=dict)
    # Environment names ([envs.NAME]); empty = every environment the config defines, or the
    # harness's own interpreter where it defines none.
    envs: tuple[str, ...] = ()

    def recipe(self) -> Profile:
        """The profile this sweep trains by: the named one with the protocol's overrides applied
        to each of its entries, or (no profile) one fallback entry made of the protocol alone."""
        over = {k: v for k, v in self.protocol.items() if k not in _VIA_SELECTION and k != "steps"}
        steps = self.protocol.get("steps")

        def entry(e: ProfileEntry, own_steps: bool) -> ProfileEntry:
            proto = replace(e.protocol, **over)
            # Without a profile and without `steps`, train what the timing needs and no more.
            return ProfileEntry(e.batch_size, steps or (e.steps if own_steps else proto.measured_steps), proto)

        if self.profile is None:
            return Profile("custom", "from a config", {}, entry(ProfileEntry(128, 0, Protocol()), False))
        base = PROFILES[self.profile]
        if not self.protocol:
            return base
        return replace(base, entries={k: entry(e, True) for k, e in base.entries.items()},
                       fallback=entry(base.fallback, True))

    def selections(self, threads: int = 0) -> list[Selection]:
        """One Selection per precision x thread count (a Selection has one of each);
        `threads` (run --threads) replaces the sweep's."""
        return [Selection(frameworks=self.frameworks, models=self.models, devices=self.devices,
                          profile=self.profile or "custom", variants=self.variants,
                          batch_sizes=self.batch_sizes, threads=t, precision=p, seeds=self.seeds,
                          strict=self.strict, eval_every_steps=self.protocol.get("eval_every_steps", 0),
                          target_accuracy=self.protocol.get("target_accuracy", 0.0), envs=self.envs)
                for p in self.precisions for t in ((threads,) if threads else self.threads)]


@dataclass(frozen=True)
class Config:
    source: str  # the path as given, for messages
    text: str  # kept whole in the run's manifest: the run describes itself, --resume needs no file
    models: Mapping[str, ModelSpec]  # the file's own models (zoo models are looked up by name)
    sweeps: tuple[Sweep, ...]
    env_specs: tuple[Any, ...] = ()  # bench.runner.envs.EnvSpec of each [envs.NAME]

    @property
    def envs(self) -> list[Any]:
        """The environments some sweep's cells run in (those to build)."""
        used = {e for sw in self.sweeps for e in sw.envs}
        return [e for e in self.env_specs if e.name in used]

    @property
    def label(self) -> str:
        """The run id's middle part (where a profile name goes otherwise)."""
        return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(self.source).stem) or "config"

    def plan(self, threads: int = 0) -> list[Cell]:
        cells, errors = _plan(self.source, self.sweeps, self.models, threads)
        if errors:
            raise ConfigError(errors)
        return cells

    def manifest_entry(self) -> dict[str, Any]:
        return {"path": self.source, "text": self.text}


def load(path: str | Path) -> Config:
    """Read, parse and check a config (planning included, so a bad variant or too few steps
    is reported now, not when the run reaches that cell). Raises ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such config file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text (a TOML file is)"]) from None
    except OSError as e:
        raise ConfigError([f"{source}: cannot read it: {e.strerror or e}"]) from None
    return parse(text, source)


def parse(text: str, source: str = "<config>") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line L, column C)"
        raise ConfigError([f"{source}: TOML syntax error: {e}"]) from None
    errors: list[str] = []

    def at(where: str) -> Callable[[str], None]:
        return lambda msg: errors.append(f"{source}: {where}: {msg}")

    for key in doc:
        if key not in ("models", "sweep", "envs"):
            at("top level")(_unknown(key, ("models", "sweep", "envs")))
    env_specs = _envs(doc.get("envs", {}), at)
    models: dict[str, ModelSpec] = {}
    tables = doc.get("models", {})
    if not isinstance(tables, dict):
        at("top level")("models must be tables: [models.NAME]")
        tables = {}
    for name, table in tables.items():
        spec = _model(name, table, at(f"[models.{name}]"))
        if spec is not None:
            models[name] = spec
    known = set(models) | set(ZOO)
    sweeps: list[tuple[int, Sweep]] = []
    raw = doc.get("sweep")
    if raw is None:
        at("top level")("no [[sweep]]: nothing to run")
    elif not isinstance(raw, list):
        at("[sweep]")("write [[sweep]] (double brackets: a list of sweeps), not [sweep]")
    else:
        for i, table in enumerate(raw, 1):
            sw = _sweep(table, known, tables, at(f"[[sweep]] #{i}"))
            if sw is not None:
                names = [e.name for e in env_specs]
                unknown_envs = [e for e in sw.envs if e not in names]
                for e in unknown_envs:
                    at(f"[[sweep]] #{i}")(f"unknown environment {e!r}: no [envs.{e}] table"
                                          + (f" (defined: {', '.join(names)})" if names else ""))
                if unknown_envs:
                    continue
                if not sw.envs and names:
                    sw = replace(sw, envs=tuple(names))
                sweeps.append((i, sw))
    # Sweeps that parsed are planned even when others did not: every error shows at once.
    _, plan_errors = _plan(source, tuple(s for _, s in sweeps), models, 0, [i for i, _ in sweeps])
    errors += plan_errors
    if errors:
        raise ConfigError(errors)
    return Config(source, text, models, tuple(s for _, s in sweeps), tuple(env_specs))


def _envs(tables: Any, at: Callable[[str], Callable[[str], None]]) -> list[Any]:
    """[envs.NAME] tables -> environment specs (bench/runner/envs.py); mistakes reported."""
    from . import envs

    if not isinstance(tables, dict):
        at("top level")("envs must be tables: [envs.NAME] with packages = [...]")
        return []
    out = []
    for name, table in tables.items():
        report = at(f"[envs.{name}]")
        if not isinstance(table, dict):
            report("an environment is a table: packages = [...]")
            continue
        err = _Errors(report)
        values = _keys(table, ENV_KEYS, err)
        if "packages" not in table:
            err('packages is required (a list, e.g. packages = ["jax==0.9.2", "optax==0.2.8"])')
        if err.count:
            continue
        try:
            out.append(envs.EnvSpec(name, tuple(values.get("packages", ())), tuple(values.get("extras", ())),
                                    values.get("cache_dir")))
        except envs.EnvError as e:
            report(str(e))
    return out


# ---------------------------------------------------------------------------------------------
def _show(v: Any) -> str:
    """A value as the user wrote it in TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a table"
    return repr(v)


def _typed(v: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)  # TOML true is a Python int too
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "table":
        return isinstance(v, dict)
    return isinstance(v, list) and all(_typed(x, kind[:-1]) for x in v)  # ints, strs


def _unknown(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                     f" (known: {', '.join(allowed)})")


def _keys(table: dict[str, Any], allowed: Mapping[str, str], err: Callable[[str], None]) -> dict[str, Any]:
    """Reports unknown keys and wrong types; returns the rest, which are checked further (so
    one typo does not hide the other mistakes of its table)."""
    good = {}
    for key, v in table.items():
        if key not in allowed:
            err(_unknown(key, allowed))
        elif not _typed(v, allowed[key]):
            err(f"{key} must be {_KIND_WORDS[allowed[key]]}, got {_show(v)}")
        else:
            good[key] = v
    return good


class _Errors:
    """An error sink for one table that remembers whether it was used."""

    def __init__(self, err: Callable[[str], None]) -> None:
        self.err, self.count = err, 0

    def __call__(self, msg: str) -> None:
        self.count += 1
        self.err(msg)


def _model(name: str, table: Any, report: Callable[[str], None]) -> ModelSpec | None:
    if not isinstance(table, dict):
        report(f"a model is a table of its fields ([models.{name}] then hidden = 64, ...), got {_show(table)}")
        return None
    err = _Errors(report)
    if _NAME.fullmatch(name) is None:
        err(f"model name {name!r} may hold letters, digits, '_' and '-' only (it goes into cell keys and file names)")
    for key in _FIXED:
        if key in table:
            err(f"{key} cannot be set here ({'the table names the model' if key == 'name' else 'fixed by MNIST'})")
    values = _keys({k: v for k, v in table.items() if k not in _FIXED}, MODEL_KEYS, err)
    family = values.get("family", "rnn")
    off = _CNN_ONLY if family == "rnn" else _RNN_ONLY if family == "cnn" else ()
    for key in (k for k in values if k in off):
        err(f"{key} does not apply to a {family} model" + (' (set family = "cnn")' if family == "rnn" else ""))
    if family == "rnn" and values.get("cell", "lstm") != "lstm" and "forget_bias" in values:
        err("forget_bias applies to an lstm cell only")
    # Floats as floats: `dropout = 0` and `dropout = 0.0` must give one cell key.
    values = {k: float(v) if MODEL_KEYS[k] == "float" else v for k, v in values.items() if k not in off}
    try:  # the spec's own checks (ranges, family, cell), on the values that passed the above
        spec = ModelSpec(name=name, **values)
    except SpecError as e:
        err(str(e))
        return None
    if err.count:
        return None
    zoo = ZOO.get(name)
    if zoo is not None and spec != zoo:
        diff = ", ".join(f"{k}: zoo {_show(zv)}, here {_show(v)}" for k, zv in zoo.to_dict().items()
                         if (v := spec.to_dict()[k]) != zv)
        err(f"{name!r} is a zoo model ({zoo.describe()}) and this spec differs from it ({diff}): give your model "
            f"another name (zoo names select per-model framework defaults and join published tables)")
        return None
    return zoo or spec


def _sweep(table: Any, known: set[str], model_tables: Mapping[str, Any],
           report: Callable[[str], None]) -> Sweep | None:
    if not isinstance(table, dict):
        report("a sweep is a table")
        return None
    err = _Errors(report)
    values = _keys(table, SWEEP_KEYS, err)
    proto = _keys(values.get("protocol", {}), PROTOCOL_KEYS, lambda m: err(f"[sweep.protocol]: {m}"))
    for key in ("frameworks", "models"):
        if key not in table:
            err(f"{key} is required (a list, e.g. {key} = {['torch'] if key == 'frameworks' else ['lstm128']})")
    for key in ("frameworks", "models", "batch_sizes", "devices", "precisions", "variants", "threads", "seeds"):
        if key in values and not values[key]:
            err(f"{key} must not be empty")
    choices = (("frameworks", "framework", list(registry.FRAMEWORKS)), ("devices", "device", DEVICES),
               ("precisions", "precision", PRECISIONS))
    for key, what, allowed in choices:
        for v in values.get(key, ()):
            if v not in allowed:
                err(f"unknown {what} {v!r} (choose from {', '.join(allowed)})")
    for m in values.get("models", ()):
        if m in known:
            continue
        if m in model_tables:  # its own table had errors, reported there
            err.count += 1
            continue
        close = difflib.get_close_matches(m, sorted(known), n=1)
        err(f"unknown model {m!r}: neither a [models.{m}] table nor a zoo model"
            + (f" (did you mean {close[0]!r}?)" if close else f" (zoo: {', '.join(ZOO)})"))
    for key, low, what in (("batch_sizes", 1, "batch sizes must be > 0"), ("threads", 0, "threads must be >= 0"),
                           ("seeds", 0, "seeds must be >= 0")):
        if any(v < low for v in values.get(key, ())):
            err(f"{what}, got {values[key]}")
    profile = values.get("profile")
    if profile is not None and profile not in PROFILES:
        err(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if "profile" not in table and "protocol" not in table:
        err(f'say how to train: profile = "smoke" (or {", ".join(p for p in PROFILES if p != "smoke")}) '
            f"or a [sweep.protocol] table")
    if "profile" not in table and "protocol" in table and "batch_sizes" not in table:
        err("batch_sizes is required without a profile (a profile gives one per model)")
    try:  # the protocol's own checks (ranges), on the values given
        Protocol(**{k: v for k, v in proto.items() if k != "steps"})
    except SpecError as e:
        err(f"[sweep.protocol]: {e}")
    if proto.get("steps", 1) < 1:
        err(f"[sweep.protocol]: steps must be > 0, got {proto['steps']}")
    if err.count:
        return None
    lists = {k: tuple(dict.fromkeys(v)) for k, v in values.items() if SWEEP_KEYS[k] in ("ints", "strs")}
    return Sweep(**lists, strict=values.get("strict", False), profile=profile,
                 protocol={k: float(v) if PROTOCOL_KEYS[k] == "float" else v for k, v in proto.items()})


def _plan(source: str, sweeps: tuple[Sweep, ...], models: Mapping[str, ModelSpec], threads: int,
          numbers: list[int] | None = None) -> tuple[list[Cell], list[str]]:
    """Every sweep's cells, and one error line per sweep that cannot be planned (the first
    thing plan.plan refuses) or that repeats a cell of an earlier sweep."""
    numbers = numbers or list(range(1, len(sweeps) + 1))
    cells: list[Cell] = []
    errors: list[str] = []
    first: dict[str, int] = {}
    for n, sw in zip(numbers, sweeps):
        try:
            mine = [c for sel in sw.selections(threads) for c in plan(sel, models, sw.recipe())]
        except (SpecError, registry.UnknownFramework) as e:
            errors.append(f"{source}: [[sweep]] #{n}: {e}")
            continue
        keys = [c.key for c in mine]
        again = [k for k in dict.fromkeys(keys) if keys.count(k) > 1 or k in first]
        if again:
            where = f"sweep #{first[again[0]]}" if again[0] in first else "this sweep"
            errors.append(f"{source}: [[sweep]] #{n}: cell {again[0]} is already in {where}"
                          + (f" (and {len(again) - 1} more)" if len(again) > 1 else ""))
            continue
        first.update((k, n) for k in keys)
        cells += mine
    return cells, errors
