"""The command line keeps its ecosystem's conventions (issue 28): `lstm-bench` and
`python -m bench` behave alike, name themselves as called, clean up on SIGTERM and dump their
stacks on SIGUSR1; --version answers without importing a framework; --results-dir goes anywhere
and LSTM_BENCH_RESULTS sets it; every option says what it does; a missing optional package is
named with the smallest extra that installs it."""
from __future__ import annotations

import argparse
import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli
from bench.records import results
from bench.commands import parser as cli_parser
from test_cli import FAKE, ROOT
from test_compare import base_worktrees

CONSOLE_SCRIPT = Path(sys.executable).parent / "lstm-bench"
ENTRY_POINTS = {"lstm-bench": [str(CONSOLE_SCRIPT)], "python -m bench": [sys.executable, "-m", "bench"]}


def entry_point(name: str) -> list[str]:
    if name == "lstm-bench" and not CONSOLE_SCRIPT.exists():
        pytest.skip(f"no console script beside {sys.executable} (pip install -e . installs it)")
    return ENTRY_POINTS[name]


def call(name: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([*entry_point(name), *argv], capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)


def all_actions(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, action) for every action of the parser and of every subcommand's parser."""
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            helped = {c.dest for c in a._choices_actions}
            for name, sub in a.choices.items():
                yield (*path, name), argparse.Action([], dest=name, help=None if name not in helped else "yes")
                yield from all_actions(sub, (*path, name))
        else:
            yield path, a


def test_the_walk_sees_every_subcommand_and_option():
    seen = list(all_actions(cli_parser.build_parser()))
    commands = {path[0] for path, _ in seen if path}
    assert commands == {"run", "list", "runs", "show", "compare", "check", "plot", "export", "overhead", "envs",
                        "trend"}
    assert len(seen) > 100  # run and check alone have ~30 options each


def test_every_option_has_help():
    missing = [f"{' '.join(path) or '(top)'} {'/'.join(a.option_strings) or a.dest}"
               for path, a in all_actions(cli_parser.build_parser()) if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"options without help: {missing}"


def test_every_default_is_said_and_true():
    """An option with a default names it in its help (choices show in the usage line), and a
    number or word given as the default appears there as given."""
    wrong = []
    for path, a in all_actions(cli_parser.build_parser()):
        if not a.option_strings or a.default in (None, False, argparse.SUPPRESS) or a.nargs == 0 or a.choices:
            continue
        text = (a.help or "") % {"default": a.default}
        if "default" not in text.lower():
            wrong.append(f"{' '.join(path)} {a.option_strings[0]}: no default in {text!r}")
        elif a.default and (f"{a.default:g}" if isinstance(a.default, float) else str(a.default)) not in text:
            # (0 means "automatic" and is said in words)
            wrong.append(f"{' '.join(path)} {a.option_strings[0]}: default {a.default!r} not in {text!r}")
    assert not wrong, "\n".join(wrong)


def test_profile_and_precision_list_their_choices():
    from bench.spec import PRECISIONS, PROFILES

    for cmd in ("run", "check"):
        text = call("python -m bench", cmd, "-h").stdout
        assert "{" + ",".join(PROFILES) + "}" in text and "{" + ",".join(PRECISIONS) + "}" in text


def test_plot_out_says_what_it_writes():
    text = " ".join(call("python -m bench", "plot", "-h").stdout.split())
    for png in ("plot.png", "claim-memory.png", "claim-ratios.png", "accuracy-vs-time.png"):
        assert png in text


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_the_program_names_itself_as_called(name):
    p = call(name, "run", "--bogus")
    assert p.returncode == 2 and p.stderr == f"error: {name}: unrecognized arguments: --bogus\n"
    assert call(name, "-h").stdout.startswith(f"usage: {name} [-h]")


def test_version_names_package_commit_and_frameworks_without_importing_them():
    code = ("import sys\nfrom bench import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "loaded = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'optax') if m in sys.modules]\n"
            "assert not loaded, loaded")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("lstm-bench ") and ("commit " in lines[0] or "no git checkout" in lines[0])
    for fw, package in (("torch", "torch"), ("tf", "tensorflow"), ("tf", "keras"), ("jax", "jax"), ("jax", "optax")):
        line = next(ln for ln in lines if ln.startswith(f"{fw}: "))
        assert f"{package} " in line  # its version, or "not installed" with the extra that installs it


def test_version_reads_the_installed_metadata(monkeypatch):
    from importlib import metadata

    versions = {"lstm-bench": "9.9.9", "torch": "2.13.0+cpu", "jax": "0.10.2"}

    def version(name: str) -> str:
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "version", version)
    text = cli_parser.version_text()
    assert text.splitlines()[0].startswith("lstm-bench 9.9.9, ")
    assert "torch: torch 2.13.0+cpu\n" in text + "\n"
    assert "tf: tensorflow not installed, keras not installed (pip install 'lstm-bench[tf]')" in text
    assert "jax: jax 0.10.2, optax not installed (pip install 'lstm-bench[jax]')" in text


def test_results_dir_goes_before_or_after_the_subcommand_and_the_variable_sets_it(monkeypatch):
    monkeypatch.delenv(cli_parser.RESULTS_VARIABLE, raising=False)
    parse = lambda *argv: cli_parser.build_parser().parse_args(argv).results_dir  # noqa: E731
    assert parse("show", "r") == "results"
    assert parse("--results-dir", "/a", "show", "r") == "/a"
    assert parse("show", "r", "--results-dir", "/b") == "/b"
    assert parse("check", "--against", "HEAD", "-m", "lstm128", "--results-dir", "/c") == "/c"
    monkeypatch.setenv(cli_parser.RESULTS_VARIABLE, "/from-env")
    assert parse("show", "r") == "/from-env"
    assert parse("--results-dir", "/a", "show", "r") == "/a"  # the flag wins
    assert parse("show", "r", "--results-dir", "/b") == "/b"
    monkeypatch.setenv(cli_parser.RESULTS_VARIABLE, "")
    assert parse("show", "r") == "results"  # set but empty: as unset


def test_the_variable_reaches_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(cli_parser.RESULTS_VARIABLE, str(tmp_path / "env-results"))
    assert cli.main(["show", "nope"]) == 2
    assert str(tmp_path / "env-results") in capsys.readouterr().err
    assert cli.main(["show", "nope", "--results-dir", str(tmp_path / "flag-results")]) == 2
    assert str(tmp_path / "flag-results") in capsys.readouterr().err


def test_main_leaves_the_callers_signal_handlers_as_it_found_them():
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["--results-dir", "/nonexistent", "show", "nope"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


def refuse_import(monkeypatch, package: str) -> None:
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == package or name.startswith(package + "."):
            raise ImportError(f"no {package}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_plot_without_matplotlib_names_the_plot_extra(tmp_path, capsys, monkeypatch):
    run = tmp_path / "r"
    results.write_manifest(run, {"run_id": "r", "cells": []})
    refuse_import(monkeypatch, "matplotlib")
    assert cli.main(["plot", str(run)]) == 2
    assert "pip install 'lstm-bench[plot]'" in capsys.readouterr().err


def test_parquet_without_pyarrow_names_the_parquet_extra(monkeypatch):
    import pandas as pd

    from bench.show import tidy

    refuse_import(monkeypatch, "pyarrow")
    with pytest.raises(results.ResultsError, match=r"pip install 'lstm-bench\[parquet\]'"):
        tidy.encode(pd.DataFrame({"a": [1]}), "parquet")


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.2)
    assert condition(), f"{what} within {seconds:.0f} s"


def worker_running(rdir: Path) -> bool:
    return subprocess.run(["pgrep", "-f", f"bench.worker .*{rdir}"], capture_output=True).returncode == 0


def start(name: str, rdir: Path, *argv: str) -> subprocess.Popen:
    # lstm128's steps sleep 1 s each: a cell lasts long enough to be signalled mid-step.
    e = dict(os.environ, PYTHONPATH=str(ROOT), LSTM_BENCH_FAULT="slow:lstm128:1", **FAKE)
    return subprocess.Popen([*entry_point(name), "--results-dir", str(rdir), *argv], cwd=ROOT, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 90 s after SIGTERM; its stacks:\n{err[-4000:]}")


@pytest.mark.slow
def test_sigterm_to_the_console_script_interrupts_a_run_and_sigusr1_dumps_its_stacks(tmp_path):
    rdir = tmp_path / "results"
    proc = start("lstm-bench", rdir, "run", "-f", "fake", "-m", "lstm128", "--profile", "smoke", "-q",
                 "--run-id", "s")
    wait_for(lambda: worker_running(rdir), 60, "a worker started")
    proc.send_signal(signal.SIGUSR1)  # a stack dump; the run goes on
    time.sleep(1.0)
    assert proc.poll() is None, "SIGUSR1 stopped the run"
    proc.send_signal(signal.SIGTERM)
    out, err = stop(proc)
    assert "most recent call first" in err, err[-2000:]
    assert proc.returncode == cli.EXIT_INTERRUPTED, err[-2000:]
    assert results.read_manifest(rdir / "s")["status"] == "interrupted"
    assert "resume with:" in out
    wait_for(lambda: not worker_running(rdir), 5, "the worker stopped")


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_sigterm_to_check_against_removes_its_worktree(name, tmp_path):
    """CI cancels a job with SIGTERM: both entry points clean up as on Ctrl-C, with one exit code."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    rdir = tmp_path / "results"
    before = base_worktrees()
    proc = start(name, rdir, "check", "--against", "HEAD", "-f", "fake", "-m", "lstm128", "--profile", "smoke",
                 "-q", "--rounds", "2", "--max-rounds", "2", "--sequential")
    wait_for(lambda: base_worktrees() - before, 60, "the check made its worktree")
    wait_for(lambda: worker_running(rdir), 60, "a worker started")
    proc.send_signal(signal.SIGTERM)
    out, err = stop(proc)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err[-2000:]
    assert "interrupted" in err
    assert base_worktrees() <= before, "the check left its worktree behind"
    sides = [json.loads((d / "manifest.json").read_text()) for d in rdir.iterdir() if (d / "manifest.json").exists()]
    assert sides and all(m["status"] == "interrupted" for m in sides), [m.get("status") for m in sides]
