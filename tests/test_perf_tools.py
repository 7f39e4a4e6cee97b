"""The pytest-benchmark suite (benchmarks/pytest) stays runnable: testpaths keeps it out of this
test run, so without these checks it could break unnoticed. It runs in its own pytest process
(a framework imported here would be shared with every other test)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_impl

ROOT = Path(__file__).resolve().parent.parent
SUITE = "benchmarks/pytest"


def _pytest(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pytest", SUITE, "-p", "no:cacheprovider", *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


@pytest.mark.slow
def test_benchmark_suite_runs_disabled():
    """One framework x model, benchmarks disabled (one untimed round: build, compile, train, sync,
    finite loss). torch: the quickest framework to import; the others share the same test body."""
    load_impl("torch")  # skips (or fails under LSTM_BENCH_REQUIRE_ALL) when torch is missing
    p = _pytest("--benchmark-disable", "-k", "torch-cnn_small", "--lstm-steps", "2", "-q")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "1 passed" in p.stdout, p.stdout[-3000:]


def test_benchmark_only_overrides_the_ini_disable_and_names_are_stable():
    """pyproject's addopts say --benchmark-disable, which pytest-benchmark refuses together with
    --benchmark-only; the suite's conftest turns it into --benchmark-enable. Collection only: no
    framework is imported."""
    p = _pytest("--benchmark-only", "--collect-only", "-q")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ids = sorted(ln.split("[", 1)[1].rstrip("]") for ln in p.stdout.splitlines() if "test_train_step[" in ln)
    want = [f"{fw}-{m}-cpu-b128-10steps" for fw in ("torch", "tf", "jax") for m in ("lstm128", "cnn_small")]
    assert ids == sorted(want)
    # An explicit --benchmark-disable on the command line is still the plugin's usage error.
    bad = _pytest("--benchmark-only", "--benchmark-disable", "--collect-only", "-q")
    assert bad.returncode != 0 and "Can't have both --benchmark-only and --benchmark-disable" in bad.stderr
