"""Named package environments for cells (`run --env NAME=SPEC`, a config's `[envs.NAME]`,
`check --base-env own`): each a virtual environment built with uv, cached by the hash of its
resolved pins, whose interpreter runs the cell's worker.

What goes into an environment: the packages named, together with the code root's own declared
dependencies (its pyproject's `dependencies`, plus extras when asked), resolved as one set
(`uv pip compile`), then installed exactly (`uv pip sync`). The project's *code* is not installed:
every worker imports bench and impls from its code root through PYTHONPATH
(bench.workers.process.worker_env), as `check --against` already relies on. A copy of the code
inside a cached environment would go stale with every commit (the cache key is the pins, not the
code), and an editable install would tie one shared cache entry to one checkout.

uv does not read pip's configuration, so the package sources pip is told about on this machine
(`pip config list` of the running interpreter, and PIP_* variables) are passed on as uv flags:
the environments see the wheels pip would see (a local CPU torch wheel, local indexes, pip's
constraints file). pip merges all its indexes and takes the best version; uv's default takes the
first index that has a package, so the builder asks uv for pip's behaviour (`unsafe-best-match`).

Building is atomic: into a temporary directory beside the cache entry, renamed into place when
complete; a failed build leaves nothing and says the resolver's reason in one line (EnvError).
uv is imported lazily (`uv` on PyPI ships the binary): bench stays importable without it.
"""
from __future__ import annotations

import calendar
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..workers import owned

UV_PIN = "uv==0.13.8"
MARKER = "lstm-bench-env.json"  # written last, inside the temporary directory: an entry without it is not built
LAST_USE = "last-use"  # touched on every use (envs lists and prunes by it)
CACHE_VARIABLE = "LSTM_BENCH_ENV_CACHE"
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,39}")
BUILD_PREFIX = ".build-"
RUNNER_ONLY = frozenset({"uv"})  # the project's dependencies left out of an environment


class EnvError(ValueError):
    """An environment that cannot be named or built here: one line (the CLI exits 2)."""


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """LSTM_BENCH_ENV_CACHE, else $XDG_CACHE_HOME/lstm-bench/envs (~/.cache/...). Not under a
    results directory: environments are GB each, shared by every checkout and results directory,
    and results are committed."""
    if environ.get(CACHE_VARIABLE):
        return Path(environ[CACHE_VARIABLE]).expanduser()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lstm-bench" / "envs"


@dataclass(frozen=True)
class EnvSpec:
    """A named package set. `packages`: requirement strings ("jax==0.9.2"); `extras`: the code
    root's pyproject extras installed with them (check --base-env own: the extras a cell needs);
    `cache_dir`: this environment's own cache (None: the run's), so an A/A can build two
    environments of identical pins separately."""

    name: str
    packages: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name or ""):
            raise EnvError(f"bad environment name {self.name!r}: letters, digits, _ and - (up to 40)")
        for p in self.packages:
            if not p.strip() or p.strip().startswith("-") or "\n" in p:
                raise EnvError(f"environment {self.name}: bad package {p!r} (a requirement like jax==0.9.2)")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"packages": list(self.packages)}
        if self.extras:
            d["extras"] = list(self.extras)
        if self.cache_dir:
            d["cache_dir"] = self.cache_dir
        return d

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> EnvSpec:
        return cls(name, tuple(d.get("packages") or ()), tuple(d.get("extras") or ()), d.get("cache_dir"))


def parse_env_arg(text: str) -> EnvSpec:
    """`--env NAME=SPEC`, SPEC a comma-separated package list ("jax==0.9.2,optax==0.2.8")."""
    name, sep, spec = text.partition("=")
    if not sep or not spec.strip():
        raise EnvError(f"--env {text!r}: use NAME=PKG[,PKG...], e.g. --env jax09=jax==0.9.2,optax==0.2.8")
    return EnvSpec(name.strip(), tuple(p.strip() for p in _split_packages(spec) if p.strip()))


def _split_packages(spec: str) -> list[str]:
    # A comma also separates version clauses ("numpy>=1.26,<3"): a piece that starts with a
    # comparison operator belongs to the package before it.
    out: list[str] = []
    for piece in spec.split(","):
        if out and re.match(r"\s*(==|!=|<=|>=|<|>|~=)", piece):
            out[-1] += "," + piece.strip()
        else:
            out.append(piece.strip())
    return out


# --- pip's package sources, passed on to uv -------------------------------------------------------
@dataclass(frozen=True)
class Sources:
    """What pip is configured to install from, in uv's terms."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    no_index: bool = False
    cert: str | None = None
    timeout_s: str | None = None
    offline: bool = False  # no network at all: local find-links and file:// indexes only (the tests)

    def uv_args(self) -> list[str]:
        args: list[str] = ["--index-strategy", "unsafe-best-match"]  # pip's rule: best version over all indexes
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        for u in self.extra_index_urls:
            args += ["--extra-index-url", u]
        for f in self.find_links:
            args += ["--find-links", f]
        for c in self.constraints:
            args += ["--constraints", c]
        if self.offline:
            args.append("--offline")
        return args

    def uv_env(self) -> dict[str, str]:
        env: dict[str, str] = {"NO_COLOR": "1"}
        if self.cert:
            env["SSL_CERT_FILE"] = self.cert
        if self.timeout_s:
            env["UV_HTTP_TIMEOUT"] = self.timeout_s
        return env

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


_SECTION_ORDER = ("global", "install", ":env:")  # later wins: pip's own precedence


def parse_pip_config(text: str) -> dict[str, str]:
    """`pip config list` lines (`section.key='value'`) -> key -> value, by pip's precedence."""
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        m = re.match(r"^(:env:|[A-Za-z_-]+)\.([A-Za-z0-9_-]+)=(.*)$", line.strip())
        if not m:
            continue
        value = m.group(3).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found.setdefault(m.group(1), {})[m.group(2)] = value
    merged: dict[str, str] = {}
    for section in _SECTION_ORDER:
        merged.update(found.get(section, {}))
    return merged


def sources_from(config: Mapping[str, str], environ: Mapping[str, str]) -> Sources:
    """pip's effective settings (its config merged, then PIP_* variables, which pip reads last)."""
    settings = dict(config)
    for k, v in environ.items():
        if k.startswith("PIP_") and v:
            settings[k[4:].lower().replace("_", "-")] = v
    split = lambda key: tuple(settings.get(key, "").split())  # noqa: E731  pip: whitespace-separated lists
    truthy = settings.get("no-index", "").lower() in ("1", "true", "yes", "on")
    return Sources(index_url=settings.get("index-url") or None, extra_index_urls=split("extra-index-url"),
                   find_links=split("find-links"), constraints=split("constraint"), no_index=truthy,
                   cert=settings.get("cert") or None, timeout_s=settings.get("default-timeout") or settings.get("timeout"))


def pip_sources(python: str = sys.executable, environ: Mapping[str, str] = os.environ) -> Sources:
    """The package sources pip of `python` is configured with here (config files and PIP_*)."""
    try:
        out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60,
                             env=dict(environ))
        text = out.stdout if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        text = ""  # no pip: its variables still count
    return sources_from(parse_pip_config(text), environ)


# --- uv --------------------------------------------------------------------------------------------
def uv_binary() -> str:
    """The uv executable (the `uv` package's binary; else one on PATH)."""
    try:
        from uv import find_uv_bin  # the PyPI package ships the binary

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvError(f"environments are built with uv, which is not installed: pip install {UV_PIN}")


def _uv(uv: str, args: list[str], sources: Sources, what: str, cache: str | None = None) -> str:
    env = {**os.environ, **sources.uv_env()}
    if cache:
        env["UV_CACHE_DIR"] = cache
    out = subprocess.run([uv, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise EnvError(f"{what}: {uv_reason(out.stderr or out.stdout)}")
    return out.stdout


def uv_reason(text: str) -> str:
    """uv's error, boxes and hints dropped, as one line: the resolver's reason."""
    lines = []
    for ln in text.splitlines():
        ln = re.sub(r"^[\s×╰─▶│├┬┴╭╮╯:]+", "", ln).strip()
        ln = re.sub(r"^(error|cause|caused by):\s*", "", ln, flags=re.I)
        if not ln or ln.startswith(("hint:", "help:", "Using ", "Resolved ", "Prepared ", "Installed ")):
            continue
        lines.append(ln)
    one = " ".join(lines) or "uv failed without saying why"
    return one if len(one) <= 400 else one[:397] + "..."


# --- building ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltEnv:
    """A built environment: its name in the run, the hash of its resolved pins, where it lies."""

    name: str
    pin_hash: str
    directory: Path
    pins: tuple[str, ...] = ()
    built_now: bool = False  # this call built it (False: found in the cache)
    build_s: float = 0.0

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    def describe(self) -> dict[str, Any]:
        """What a record says of the environment its worker ran in."""
        return {"name": self.name, "pin_hash": self.pin_hash, "pins": list(self.pins)}

    def versions(self) -> dict[str, str]:
        return pin_versions(self.pins)


def pin_versions(pins: list[str] | tuple[str, ...]) -> dict[str, str]:
    """"name==version" pins -> {name: version}."""
    out = {}
    for p in pins:
        name, sep, ver = p.partition("==")
        if sep:
            out[name.strip().lower()] = ver.split(";")[0].strip()
    return out


def project_dependencies(code_root: Path, extras: tuple[str, ...] = ()) -> list[str]:
    """The code root's declared dependencies (and the named extras' requirements, self-references
    like `lstm-bench[torch]` expanded), read from its pyproject.toml."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(code_root) / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except (OSError, ValueError) as e:
        raise EnvError(f"cannot read {path}: {e}") from None
    deps = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    name = re.sub(r"[-_.]+", "-", project.get("name", "")).lower()
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in optional:
            raise EnvError(f"{path}: no extra {extra!r} (it has {', '.join(optional) or 'none'})")
        seen.add(extra)
        for req in optional[extra]:
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*\[([^\]]+)\]\s*$", req)
            if m and re.sub(r"[-_.]+", "-", m.group(1)).lower() == name:
                for e in m.group(2).split(","):
                    add(e.strip())
            else:
                deps.append(req)

    for e in extras:
        add(e)
    # The runner's own tools: a worker never builds an environment.
    return [d for d in deps if re.split(r"[\s\[<>=!~;(]", d.strip(), maxsplit=1)[0].lower() not in RUNNER_ONLY]


def interpreter_tag(python: str) -> str:
    """What of the interpreter an environment depends on (its version and platform)."""
    out = subprocess.run([python, "-c", "import platform, sys; print(sys.implementation.name, platform.python_version(),"
                          " platform.machine(), platform.system())"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or platform.python_version()


def pin_hash(pins: tuple[str, ...], tag: str) -> str:
    body = json.dumps({"pins": sorted(pins), "interpreter": tag}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass
class Builder:
    """Resolves and builds environments for one run (one set of sources, one cache)."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    sources: Sources | None = None  # None: pip's, read when first needed
    python: str = sys.executable  # the base interpreter every environment is made from
    uv_cache: str | None = None  # uv's own download cache (None: uv's default, shared)

    def _sources(self) -> Sources:
        if self.sources is None:
            self.sources = pip_sources(self.python)
        return self.sources

    def resolve(self, spec: EnvSpec, code_root: Path) -> tuple[str, ...]:
        """The spec's packages with the code root's dependencies, resolved to exact pins."""
        uv = uv_binary()
        with tempfile.TemporaryDirectory(prefix="lstm-bench-resolve-") as tmp:
            req = Path(tmp) / "requirements.in"
            req.write_text("\n".join([*project_dependencies(code_root, spec.extras), *spec.packages]) + "\n")
            out = _uv(uv, ["pip", "compile", str(req), "--python", self.python, "--no-header", "--no-annotate",
                           "--quiet", *self._sources().uv_args()], self._sources(),
                      f"environment {spec.name}: cannot resolve {', '.join(spec.packages) or 'its packages'}",
                      self.uv_cache)
        pins = tuple(sorted(ln.strip() for ln in out.splitlines() if ln.strip() and not ln.lstrip().startswith("#")))
        if not pins:
            raise EnvError(f"environment {spec.name}: the resolver returned no packages")
        return pins

    def build(self, spec: EnvSpec, code_root: Path) -> BuiltEnv:
        """The environment of `spec` (resolved now; built unless its pins are in the cache)."""
        pins = self.resolve(spec, code_root)
        digest = pin_hash(pins, interpreter_tag(self.python))
        cache = Path(spec.cache_dir).expanduser() if spec.cache_dir else self.cache_dir
        target = cache / digest
        if (target / MARKER).is_file():
            touch(target)
            return BuiltEnv(spec.name, digest, target, pins)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"{BUILD_PREFIX}{digest}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        try:
            uv = uv_binary()
            what = f"environment {spec.name}: cannot build"
            _uv(uv, ["venv", "--quiet", "--relocatable", "--python", self.python, str(tmp)], self._sources(), what,
                self.uv_cache)
            (tmp / "pins.txt").write_text("\n".join(pins) + "\n")
            _uv(uv, ["pip", "sync", "--quiet", "--python", str(tmp / "bin" / "python"), str(tmp / "pins.txt"),
                     *self._sources().uv_args()], self._sources(), what, self.uv_cache)
            build_s = round(time.monotonic() - t0, 3)
            marker = {"pin_hash": digest, "pins": list(pins), "built_utc": _utc(), "build_s": build_s,
                      "base_python": self.python, "interpreter": interpreter_tag(self.python),
                      "sources": self._sources().to_dict()}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
            touch(tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / MARKER).is_file():  # not another build of the same pins winning the race
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return BuiltEnv(spec.name, digest, target, pins)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed or interrupted build leaves nothing
            raise
        return BuiltEnv(spec.name, digest, target, pins, built_now=True, build_s=build_s)


def ray_runtime_env(env: BuiltEnv, sources: Sources) -> dict[str, Any]:
    """The Ray runtime environment of an environment's cells (run --executor ray): Ray builds it on
    each node with uv, from the same resolved pins and the same package sources, and runs the task
    in it, so the task's worker (sys.executable there) imports those versions. Ray's uv
    environments are made on top of the Python Ray runs in (its site-packages stay visible below
    the pins): a package the pins do not name comes from there."""
    return {"uv": {"packages": list(env.pins), "uv_pip_install_options": sources.uv_args()}}


def touch(directory: Path) -> None:
    (directory / LAST_USE).write_text(_utc() + "\n")


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- the cache: listing and pruning -------------------------------------------------------------------
@dataclass(frozen=True)
class CachedEnv:
    pin_hash: str
    directory: Path
    size_bytes: int
    built_utc: str
    last_use_utc: str
    pins: tuple[str, ...]
    build_s: float | None


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def cached(cache_dir: Path) -> list[CachedEnv]:
    """The built environments in a cache, most recently used first."""
    out = []
    if not cache_dir.is_dir():
        return out
    for d in cache_dir.iterdir():
        marker = d / MARKER
        if d.name.startswith(".") or not marker.is_file():
            continue
        try:
            m = json.loads(marker.read_text())
            last = (d / LAST_USE).read_text().strip() if (d / LAST_USE).is_file() else m.get("built_utc", "")
        except (OSError, ValueError):
            continue
        out.append(CachedEnv(d.name, d, _size(d), m.get("built_utc", ""), last, tuple(m.get("pins", ())),
                             m.get("build_s")))
    return sorted(out, key=lambda e: e.last_use_utc, reverse=True)


def prune(cache_dir: Path, older_than_s: float | None, now: float | None = None) -> list[Path]:
    """Remove the environments not used for `older_than_s` seconds (None: all), and builds left
    half-done by a process that died; the directories removed."""
    now = time.time() if now is None else now
    removed = []
    for e in cached(cache_dir):
        try:
            used = calendar.timegm(time.strptime(e.last_use_utc, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            used = 0.0  # unreadable: as old as can be
        if older_than_s is None or now - used > older_than_s:
            shutil.rmtree(e.directory, ignore_errors=True)
            removed.append(e.directory)
    if cache_dir.is_dir():
        for d in cache_dir.glob(f"{BUILD_PREFIX}*"):
            pid = d.name[len(BUILD_PREFIX):].split("-")[1] if d.name.count("-") >= 3 else ""
            if pid.isdigit() and not owned.pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed

