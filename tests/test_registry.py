"""The registry: frameworks by import string, why a missing one is unavailable, the variables a
worker needs before its framework's import, and the test double listed only when switched on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import registry

ROOT = Path(__file__).resolve().parent.parent


def _frameworks_in_a_child(**env: str) -> dict:
    code = ("import json; from bench import registry; "
            "print(json.dumps({n: [i.module, registry.unavailable_reason(n)] for n, i in registry.FRAMEWORKS.items()}))")
    e = {k: v for k, v in os.environ.items() if k != registry.TEST_FRAMEWORKS_VARIABLE}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**e, "PYTHONPATH": str(ROOT), **env})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_test_double_is_listed_only_when_switched_on():
    assert list(_frameworks_in_a_child()) == ["torch", "tf", "jax"]
    assert list(_frameworks_in_a_child(**{registry.TEST_FRAMEWORKS_VARIABLE: "0"})) == ["torch", "tf", "jax"]
    on = _frameworks_in_a_child(**{registry.TEST_FRAMEWORKS_VARIABLE: "1"})
    assert list(on) == ["torch", "tf", "jax", "fake"] and on["fake"] == ["tests.fake_impl", None]  # importable
    assert "fake" not in registry.FRAMEWORKS  # nor in this process, which did not switch it on


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(registry.UnknownFramework, match=r"unknown framework 'caffe' \(choose from torch, tf, jax\)"):
        registry.get("caffe")
    with pytest.raises(registry.UnknownFramework, match=r"unknown variant 'turbo' for tf \(choose from default, "
                                                        r"xla, graph, or 'all'\)"):
        registry.check_variant("tf", "turbo")
    registry.check_variant("tf", "xla")  # known: no error
    assert registry.variants("tf") == ("default", "xla", "graph")


def test_a_missing_package_or_module_says_what_to_do(monkeypatch):
    monkeypatch.setitem(registry.FRAMEWORKS, "ghost", registry.FrameworkInfo(
        "ghost", "impls.ghost_impl", ("no_such_package_xyz", "numpy"), "ghost", "Ghost", (("default", "-"),)))
    assert registry.unavailable_reason("ghost") == "no_such_package_xyz not installed: pip install 'lstm-bench[ghost]'"
    monkeypatch.setitem(registry.FRAMEWORKS, "ghost", registry.FrameworkInfo(
        "ghost", "impls.ghost_impl", ("numpy",), "ghost", "Ghost", (("default", "-"),)))
    assert registry.unavailable_reason("ghost") == "implementation module impls.ghost_impl not found"


def test_framework_env_holds_what_each_framework_reads_at_import():
    assert registry.framework_env("torch", 4, "cpu") == {}
    assert registry.framework_env("tf", 4, "cpu") == {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    assert registry.framework_env("jax", 4, "cpu") == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PJRT_NPROC": "4"}
    assert registry.framework_env("jax", 0, "gpu") == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
