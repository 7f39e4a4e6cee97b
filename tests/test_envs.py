"""Package environments (bench/runner/envs.py): built for real with uv from two versions of a tiny
pure-Python package written as wheels here (no download: uv runs offline, the project's own
dependencies come from this machine's local package sources that pip is configured with)."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from bench import registry
from bench.cli import main
from bench.decide import compare
from bench.records.run import Run
from bench.runner import config, envs, ray_executor
from bench.runner.side import Side
from bench.spec import Cell, ModelSpec, Protocol, TrainSpec, key_without_env
from bench.workers import process
from bench.workers.job import Job

ROOT = Path(__file__).resolve().parent.parent


def _have_uv() -> bool:
    try:
        envs.uv_binary()
        return True
    except envs.EnvError:
        return False


needs_uv = pytest.mark.skipif(not _have_uv(), reason=f"uv not installed ({envs.UV_PIN})")


def wheel(out: Path, name: str, version: str) -> Path:
    """A real pure-Python wheel: `name` whose __version__ is `version`."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f'__version__ = "{version}"\n',
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: lstm-bench-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for p, t in files.items()] + [f"{dist}/RECORD,,"]
    path = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wheels")
    wheel(d, "lbtiny", "1.0")
    wheel(d, "lbtiny", "2.0")
    return d


def offline_sources(wheels: Path) -> envs.Sources:
    """pip's sources on this machine plus the test's wheels, offline."""
    pip = envs.pip_sources()
    return envs.Sources(index_url=pip.index_url, extra_index_urls=pip.extra_index_urls,
                        find_links=(str(wheels), *pip.find_links), constraints=pip.constraints, offline=True)


@pytest.fixture(scope="module")
def built(wheels, tmp_path_factory):
    """Two environments (lbtiny 1.0 and 2.0) in one cache, built once for the module."""
    cache = tmp_path_factory.mktemp("envcache")
    b = envs.Builder(cache_dir=cache, sources=offline_sources(wheels))
    return b, b.build(envs.EnvSpec("old", ("lbtiny==1.0",)), ROOT), b.build(envs.EnvSpec("new", ("lbtiny==2.0",)), ROOT)


# --- specs and pip's settings (no uv) --------------------------------------------------------------
def test_env_arg_splits_packages_and_keeps_version_clauses_together():
    spec = envs.parse_env_arg("jax09=jax==0.9.2, optax==0.2.8,numpy>=1.26,<3")
    assert spec.name == "jax09" and spec.packages == ("jax==0.9.2", "optax==0.2.8", "numpy>=1.26,<3")
    for bad in ("noequals", "x=", "bad.name=jax", "a=--index-url=http://x"):
        with pytest.raises(envs.EnvError):
            envs.parse_env_arg(bad)


def test_pip_settings_follow_pips_precedence_and_become_uv_flags():
    listing = ("global.find-links='/opt/wheels'\nglobal.extra-index-url='file:///a/simple file:///b/simple'\n"
               "global.constraint='/etc/c.txt'\ninstall.index-url='https://mirror/simple'\n"
               ":env:.default-timeout='180'\nglobal.cert='/etc/ca.crt'\n")
    src = envs.sources_from(envs.parse_pip_config(listing), {"PIP_FIND_LINKS": "/w1 /w2", "HOME": "/root"})
    assert src.find_links == ("/w1", "/w2")  # the variable beats the file, as in pip
    assert src.extra_index_urls == ("file:///a/simple", "file:///b/simple")
    assert src.index_url == "https://mirror/simple" and src.constraints == ("/etc/c.txt",)
    args = src.uv_args()
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]  # pip's: the best version over every index
    assert args.count("--extra-index-url") == 2 and args.count("--find-links") == 2
    assert ["--constraints", "/etc/c.txt"] == args[args.index("--constraints"):args.index("--constraints") + 2]
    assert src.uv_env() == {"NO_COLOR": "1", "SSL_CERT_FILE": "/etc/ca.crt", "UV_HTTP_TIMEOUT": "180"}
    assert "--no-index" in envs.sources_from({}, {"PIP_NO_INDEX": "1"}).uv_args()


def test_uv_error_becomes_one_line_with_the_resolvers_reason():
    text = ("  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no version of lbtiny==3.0 and "
            "you require lbtiny==3.0, we can conclude that your requirements are unsatisfiable.\n")
    line = envs.uv_reason(text)
    assert "\n" not in line and line.startswith("No solution found") and "lbtiny==3.0" in line


def test_project_dependencies_expand_self_referencing_extras(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "lstm-bench"\ndependencies = ["numpy>=1"]\n[project.optional-dependencies]\n'
        'jax = ["jax==0.9.2"]\nall = ["lstm-bench[jax]"]\n')
    assert envs.project_dependencies(tmp_path, ("all",)) == ["numpy>=1", "jax==0.9.2"]
    with pytest.raises(envs.EnvError, match="no extra 'tf'"):
        envs.project_dependencies(tmp_path, ("tf",))


def test_config_envs_become_a_dimension_of_the_sweeps_cells(tmp_path):
    text = ('[envs.old]\npackages = ["lbtiny==1.0"]\n[envs.new]\npackages = ["lbtiny==2.0"]\n'
            '[[sweep]]\nframeworks = ["torch"]\nmodels = ["lstm128"]\nprofile = "smoke"\n')
    conf = config.parse(text, "e.toml")
    cells = conf.plan(2)
    assert sorted(c.env for c in cells) == ["new", "old"]
    assert [e.name for e in conf.envs] == ["old", "new"]
    keys = {c.key for c in cells}
    assert len(keys) == 2 and len({key_without_env(k) for k in keys}) == 1  # one cell, two environments
    with pytest.raises(config.ConfigError, match="unknown environment 'newer'"):
        config.parse(text + 'envs = ["newer"]\n', "e.toml")
    with pytest.raises(config.ConfigError, match=r"\[envs.x\]: packages is required"):
        config.parse('[envs.x]\nextras = ["jax"]\n' + text.split("\n", 4)[4], "e.toml")


def rec(env: str, pins: list[str], fw_versions: dict[str, str], value: float, round_: int = 0) -> dict:
    cell = Cell("jax", ModelSpec("lstm128"), TrainSpec(steps=12), threads=2, protocol=Protocol(1, 1, 1), env=env)
    return {"key": cell.key, "cell": cell.to_dict(), "framework": "jax", "variant": "default", "model": "lstm128",
            "device": "cpu", "batch_size": 128, "threads": 2, "precision": "fp32", "status": "ok", "round": round_,
            "mode": "full", "framework_versions": fw_versions, "metrics": {"train_samples_per_s": {"median": value}},
            "environment": {"name": env, "pin_hash": env * 2, "pins": pins}}


def test_compare_joins_one_cell_across_two_environments_and_says_which_packages_differ():
    base = [rec("jax09", ["jax==0.9.2", "numpy==2.4.6"], {"jax": "0.9.2"}, 1000 + i, i) for i in range(3)]
    head = [rec("jax10", ["jax==0.10.2", "numpy==2.4.6", "ml-dtypes==0.5"], {"jax": "0.10.2"}, 1500 + i, i)
            for i in range(3)]
    assert compare.differences(base, head) == []  # the versions differ on purpose: nothing to refuse
    cmp = compare.compare(base, head)
    assert not cmp.only_base and not cmp.only_head  # joined, though the keys name different environments
    train = next(f for f in cmp.findings if f.rule == "train")
    assert train.verdict == "improved"
    assert cmp.packages == ("packages differ between environment jax09 (base) and jax10 (head): "
                            "jax 0.9.2 -> 0.10.2; only in head: ml-dtypes 0.5",)
    # Within one run the two environments' cells stay apart; the same environments on both sides: nothing to say.
    both = base + head
    assert len({r["key"] for r in both}) == 2 and compare.package_differences(both, both) == []
    moved = [rec("jax09", ["jax==0.9.1", "numpy==2.4.6"], {"jax": "0.9.1"}, 1000)]
    assert compare.package_differences(base, moved) == [
        "packages differ between environment jax09 (base) and jax09 (head): jax 0.9.2 -> 0.9.1"]


def test_a_ray_cell_of_an_environment_runs_in_rays_uv_runtime_env_from_its_pins():
    cell = Cell("fake", ModelSpec("lstm128"), TrainSpec(steps=12), threads=2, protocol=Protocol(1, 1, 1), env="old")
    built = envs.BuiltEnv("old", "abc", Path("/nowhere"), ("lbtiny==1.0", "numpy==2.4.6"))
    src = envs.Sources(find_links=("/w",), constraints=("/c.txt",))
    opts = ray_executor.task_options(cell, built, src)
    assert opts["num_cpus"] == 2
    assert opts["runtime_env"] == {"uv": {"packages": ["lbtiny==1.0", "numpy==2.4.6"],
                                          "uv_pip_install_options": src.uv_args()}}
    assert "runtime_env" not in ray_executor.task_options(cell, None, src)


# --- real builds --------------------------------------------------------------------------------------
@needs_uv
def test_environments_hold_their_own_versions_and_the_cache_is_reused(built, wheels):
    b, old, new = built
    assert old.pin_hash != new.pin_hash and "lbtiny==1.0" in old.pins and "lbtiny==2.0" in new.pins
    for env, version in ((old, "1.0"), (new, "2.0")):
        out = subprocess.run([str(env.python), "-c", "import lbtiny, numpy; print(lbtiny.__version__)"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == version
    # Nothing leaks in from the runner's interpreter (pytest is installed there, not here).
    assert subprocess.run([str(old.python), "-c", "import pytest"], capture_output=True).returncode != 0
    marker = json.loads((old.directory / envs.MARKER).read_text())
    again = b.build(envs.EnvSpec("other-name", ("lbtiny==1.0",)), ROOT)  # a name is the run's; the pins key the cache
    assert (again.directory, again.pin_hash, again.built_now) == (old.directory, old.pin_hash, False)
    assert json.loads((old.directory / envs.MARKER).read_text())["built_utc"] == marker["built_utc"]  # not rebuilt
    listed = envs.cached(b.cache_dir)
    assert {e.pin_hash for e in listed} == {old.pin_hash, new.pin_hash} and all(e.size_bytes > 1e6 for e in listed)


@needs_uv
@pytest.mark.parametrize("package, says", [("lbtiny==3.0", "lbtiny==3.0"), ("lbtiny-nosuch", "lbtiny-nosuch")])
def test_a_failed_build_is_one_line_and_leaves_nothing(built, package, says):
    b, old, new = built
    before = sorted(p.name for p in b.cache_dir.iterdir())
    with pytest.raises(envs.EnvError) as e:
        b.build(envs.EnvSpec("bad", (package,)), ROOT)
    assert "\n" not in str(e.value) and says in str(e.value) and str(e.value).startswith("environment bad: cannot")
    assert sorted(p.name for p in b.cache_dir.iterdir()) == before  # nothing half-built


@needs_uv
def test_prune_removes_environments_by_last_use(built, tmp_path, wheels):
    b = envs.Builder(cache_dir=tmp_path / "c", sources=offline_sources(wheels))
    e = b.build(envs.EnvSpec("x", ("lbtiny==1.0",)), ROOT)
    (e.directory / envs.LAST_USE).write_text("2020-01-01T00:00:00Z\n")
    (tmp_path / "c" / ".build-abc-999999999-ffffff").mkdir()  # a build whose process is gone
    assert envs.prune(tmp_path / "c", older_than_s=30 * 86400) == [e.directory, tmp_path / "c" / ".build-abc-999999999-ffffff"]
    assert list((tmp_path / "c").iterdir()) == []


@needs_uv
@pytest.mark.slow
def test_a_cells_worker_runs_in_its_environment_and_its_record_names_it(built, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    _, old, new = built
    side = Side("run", ROOT, Run.bare(tmp_path), envs=(("old", old), ("new", new)))
    for name, version, env in (("old", "1.0", old), ("new", "2.0", new)):
        cell = Cell("fake", ModelSpec("lstm128"), TrainSpec(batch_size=8, steps=4), threads=1,
                    protocol=Protocol(1, 2, 1), env=name)
        out = process.run_cell(Job(cell, run_dir=str(tmp_path), run_id="e"), side.run, ROOT, process.Watch(120),
                               side.env_for(name))
        assert out.status == "ok", out.reason
        r = side.run.record(cell.key)
        assert r["framework_versions"]["lbtiny"] == version  # the test double imported the environment's lbtiny
        assert r["imported_versions"]["lbtiny"] == version
        assert r["env"]["executable"] == str(env.python)
        assert r["environment"] == {"name": name, "pin_hash": env.pin_hash, "pins": list(env.pins)}
        assert r["cell"]["env"] == name and f".env={name}." in r["key"]


@needs_uv
def test_run_with_an_environment_that_cannot_be_built_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                                  wheels):
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", f"{wheels} " + " ".join(envs.pip_sources().find_links))
    monkeypatch.setitem(registry.FRAMEWORKS, "fake", registry.FrameworkInfo(
        "fake", "tests.fake_impl", ("numpy",), "fake", "numpy test double", (("default", "numpy test double"),)))
    cache = tmp_path / "cache"
    code = main(["run", "-f", "fake", "-m", "lstm128", "--profile", "smoke", "--results-dir", str(tmp_path / "res"),
                 "--env", "bad=lbtiny==3.0", "--env-cache", str(cache), "--run-id", "r", "--memory-rounds", "0"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "environment bad: cannot resolve lbtiny==3.0" in lines[0]
    assert not (tmp_path / "res" / "r").exists()
    assert not cache.exists() or list(cache.iterdir()) == []


def test_base_env_own_goes_with_against_only(tmp_path, capsys):
    code = main(["check", "--base-env", "own", "-f", "torch", "-m", "lstm128", "--results-dir", str(tmp_path)])
    assert code == 2 and "--base-env own goes with --against REF" in capsys.readouterr().err


def test_own_base_env_is_built_from_the_refs_pyproject_with_the_cells_extras(tmp_path, monkeypatch):
    from bench.commands import check, run as run_cmd

    seen = {}

    def fake_build(specs, args, console, code_root):
        seen.update(spec=specs[0], root=code_root)
        return (envs.BuiltEnv("own", "h", tmp_path, ("torch==2.13.0",)),)

    monkeypatch.setattr(run_cmd, "build_envs", fake_build)
    cells = [Cell(fw, ModelSpec("lstm128"), TrainSpec(steps=12), threads=2, protocol=Protocol(1, 1, 1))
             for fw in ("torch", "jax", "torch")]
    built = check.own_base_env(None, cells, tmp_path / "ref", None)
    assert built.pin_hash == "h" and seen["root"] == tmp_path / "ref"
    assert seen["spec"] == envs.EnvSpec("own", (), ("torch", "jax"))


def test_envs_lists_the_cache_and_prunes_by_age(tmp_path, capsys):
    cache = tmp_path / "c"
    for h, used in (("aaa", "2020-01-01T00:00:00Z"), ("bbb", "2999-01-01T00:00:00Z")):
        (cache / h).mkdir(parents=True)
        (cache / h / envs.MARKER).write_text(json.dumps({"pins": ["lbtiny==1.0"], "built_utc": used, "build_s": 1.5}))
        (cache / h / envs.LAST_USE).write_text(used + "\n")
        (cache / h / "blob").write_bytes(b"x" * 2_000_000)
    assert main(["envs", "--env-cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "aaa" in out and "bbb" in out and "2 environment(s), 4 MB" in out
    assert main(["envs", "--env-cache", str(cache), "--prune", "30d"]) == 0
    assert sorted(p.name for p in cache.iterdir()) == ["bbb"]
    assert main(["envs", "--env-cache", str(cache), "--prune", "all"]) == 0 and list(cache.iterdir()) == []
    assert main(["envs", "--env-cache", str(cache), "--prune", "soon"]) == 2


def test_the_environment_is_a_dimension_of_labels_exports_and_the_claim():
    from bench.decide import claim
    from bench.records.record import cell_label
    from bench.show import tidy

    r = rec("jax10", ["jax==0.10.2"], {"jax": "0.10.2"}, 1000)
    assert cell_label(r) == "jax@jax10 lstm128 cpu b128"
    row = tidy.row(r, "run1")
    assert row["env"] == "jax10" and row["env_pin_hash"] == "jax10jax10"
    assert not any(k.startswith(("imported_versions", "environment.pins")) for k in row)
    assert cell_label(rec("", [], {}, 1000)) == "jax lstm128 cpu b128"  # the harness's interpreter: no suffix

    def claim_rec(model: str, env: str, speed: float) -> dict:
        d = rec(env, [], {}, speed)
        family = "cnn" if model == "cnn_tutorial" else "rnn"
        d.update(model=model, cell={**d["cell"], "model": {"name": model, "family": family}},
                 analytic={"measured_memory_bytes": 1e6, "train_floor_bytes": 1e6})
        return d

    recs = [claim_rec("lstm128", "a", 100.0), claim_rec("cnn_tutorial", "a", 200.0),
            claim_rec("lstm128", "b", 100.0), claim_rec("cnn_tutorial", "b", 50.0)]
    rows = {r.group: r.speed_ratio for r in claim.claim_rows(recs)}
    assert rows == {"jax:default@a cpu b128": 0.5, "jax:default@b cpu b128": 2.0}  # each RNN with its own env's CNN
