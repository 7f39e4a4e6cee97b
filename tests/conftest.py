"""Shared fixtures. Frameworks that are not installed are skipped, except under
LSTM_BENCH_REQUIRE_ALL=1 (set by .ci/run), where a missing framework fails the run: CI must
never go green by skipping the equivalence tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # `import helpers`: what the tests share

from bench import registry  # noqa: E402

FRAMEWORKS = tuple(registry.FRAMEWORKS)


def load_impl(name: str):
    why = registry.unavailable_reason(name)
    if why:
        if os.environ.get("LSTM_BENCH_REQUIRE_ALL") == "1":
            pytest.fail(f"{name} is required in CI but unavailable: {why}")
        pytest.skip(why)
    return registry.load(name)


@pytest.fixture(scope="session")
def mnist():
    from bench import data

    return data.load()


@pytest.fixture(params=FRAMEWORKS)
def impl(request):
    return load_impl(request.param)
