"""The one child protocol (bench/workers/job.py): a versioned job of a kind in, one result out, for
the cell worker, the overhead child and the counts child; a job of another version or kind is
refused in one line and measures nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner.plan import Selection, plan
from bench.workers import job as jobs

ROOT = Path(__file__).resolve().parent.parent


def test_a_child_job_round_trips_and_a_foreign_version_or_kind_is_refused(tmp_path):
    p, out = tmp_path / "job.json", tmp_path / "out.json"
    jobs.write_child_job(p, "overhead", {"framework": "torch", "batch_size": 64}, out)
    d = jobs.read_child_job(p, "overhead")
    assert (d["job_version"], d["kind"], d["out"], d["batch_size"]) == (jobs.JOB_VERSION, "overhead", str(out), 64)
    with pytest.raises(jobs.JobRefused, match="a 'overhead' job given to the counts child"):
        jobs.read_child_job(p, "counts")
    p.write_text(json.dumps({**d, "job_version": 99}))
    with pytest.raises(jobs.JobRefused, match="job version 99 is unknown"):
        jobs.read_child_job(p, "overhead")
    assert jobs.read_result(out) is None  # a child that died first left none
    jobs.write_result(d, {"x": 1.5})
    assert jobs.read_result(out) == {"x": 1.5}


def test_a_cell_job_says_its_kind_and_still_reads_without_one():
    (cell,) = plan(Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=1))
    d = jobs.Job(cell, run_dir="x", run_id="r").to_dict()
    assert d["kind"] == "cell" and d["job_version"] == jobs.JOB_VERSION
    d.pop("kind")  # a job from a runner before kinds: the worker reads it as before
    assert jobs.Job.from_dict(d).cell == cell


def test_the_overhead_child_refuses_a_foreign_job_and_writes_nothing(tmp_path):
    p, out = tmp_path / "job.json", tmp_path / "out.json"
    p.write_text(json.dumps({"job_version": 1, "kind": "counts", "out": str(out)}))
    r = subprocess.run([sys.executable, "-m", "bench.overhead", str(p)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == jobs.EXIT_REFUSED and f"{jobs.REFUSED} a 'counts' job given to the overhead child" in r.stderr
    assert not out.exists()


def test_the_counts_child_refuses_a_foreign_job_in_its_result(tmp_path):
    p, out = tmp_path / "job.json", tmp_path / "out.json"
    p.write_text(json.dumps({"job_version": 1, "kind": "overhead", "out": str(out)}))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "counts" / "child.py"), str(p)], capture_output=True,
                       text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    res = jobs.read_result(out)
    assert res["status"] == "failed" and "is not a counts job this child reads" in res["reason"]
