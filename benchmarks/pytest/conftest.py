"""pytest-benchmark suite: each framework's training step through the Trainer protocol.

Not part of the default test run (pyproject's testpaths = ["tests"]); run it by path:

    pytest benchmarks/pytest --benchmark-only --benchmark-autosave          # save a baseline
    pytest benchmarks/pytest --benchmark-only --benchmark-compare --benchmark-compare-fail=min:10%

pyproject's addopts carry `--benchmark-disable` (the test suite runs any benchmark once, untimed),
and pytest-benchmark refuses `--benchmark-only` together with `--benchmark-disable` (a UsageError)
unless `--benchmark-enable` is also given. Asking for `--benchmark-only` on this suite is asking
for timings, so the hook below adds `--benchmark-enable` when the disable came from the ini
file's addopts; a `--benchmark-disable` typed on the command line is left to the plugin's error.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench/ and impls/ without an install, like tests/conftest.py

from bench import registry  # noqa: E402  (imports no framework)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lstm-bench", "lstm-bench training-step benchmarks (benchmarks/pytest)")
    g.addoption("--lstm-threads", type=int, default=0,
                help="CPU threads for every framework (default 0: each framework's own default, all cores). "
                     "A non-zero value becomes part of the benchmark names")
    g.addoption("--lstm-steps", type=int, default=10,
                help="training steps per timed round, synced at the round's end (default 10)")
    g.addoption("--lstm-rounds", type=int, default=10, help="timed rounds per benchmark (default 10)")
    g.addoption("--lstm-device", default="cpu", choices=("cpu", "gpu"), help="device (default cpu)")
    g.addoption("--lstm-counts", action="store_true",
                help="also count instructions per training step under valgrind (one thread; minutes per case: "
                     "docs/counts.md) into extra_info['instructions_per_step']")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own pytest_configure (trylast) reads the options
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    if (getattr(opt, "benchmark_only", False) and getattr(opt, "benchmark_disable", False)
            and "--benchmark-disable" not in config.invocation_params.args):
        opt.benchmark_enable = True
    if opt.lstm_threads < 0 or opt.lstm_steps < 1 or opt.lstm_rounds < 1:
        raise pytest.UsageError("--lstm-threads must be >= 0, --lstm-steps and --lstm-rounds >= 1")
    # Variables the frameworks read once, at import (JAX's CPU thread pool size, TF's log level,
    # JAX's GPU preallocation): set before any test imports a framework, as the runner does for
    # its workers. setdefault: a value the user exported wins.
    for name in registry.FRAMEWORKS:
        for k, v in registry.framework_env(name, opt.lstm_threads, opt.lstm_device).items():
            os.environ.setdefault(k, v)


@pytest.fixture(scope="session")
def mnist():
    from bench import data

    return data.load(None)
