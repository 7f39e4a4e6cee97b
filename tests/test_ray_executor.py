"""run --executor ray, on a real local Ray instance: the same records as the local runner, a
task lost with its Ray worker recorded and rerun by --resume, a clear line without Ray, and the
harness's own local instance on the loopback only (several nodes: test_ray_cluster.py).
The node-aware tables and the refusal to compare across nodes are checked on fabricated records."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bench.decide import claim, compare
from bench import cli
from bench.workers import process
from bench.show import report
from bench.records import results
from bench.runner import schedule
from bench.workers.job import Job
from bench.runner.plan import Selection, plan
from helpers import new_run
from test_cli import ROOT, _workers, bench
from test_compare import proc, write_run
from test_report import rec as report_rec

SMOKE = ("-f", "torch", "-m", "lstm128,cnn_small", "--profile", "smoke", "--threads", "1", "--memory-rounds", "1",
         "-q")


@pytest.fixture(scope="module")
def address():
    """A local Ray instance for the module, on the loopback as the harness starts one; the CLI
    runs join it with --address 127.0.0.1:PORT."""
    try:
        import ray
    except ImportError:
        if os.environ.get("LSTM_BENCH_REQUIRE_ALL") == "1":
            pytest.fail("ray is required in CI but not installed")
        pytest.skip("ray not installed: pip install 'lstm-bench[ray]'")
    from bench.runner import ray_connect

    ray_connect.init_local(num_cpus=2, include_dashboard=False)
    try:
        addr = ray.get_runtime_context().gcs_address
        assert addr.startswith("127.0.0.1:"), addr
        yield addr
    finally:
        ray.shutdown()


@pytest.fixture
def rdir(tmp_path):
    return tmp_path / "results"


@pytest.mark.slow
def test_ray_records_match_the_local_runners(address, rdir):
    base = ("--results-dir", str(rdir), "run", *SMOKE)
    p = bench(*base, "--run-id", "loc")
    assert p.returncode == 0, p.stderr
    p = bench(*base, "--run-id", "ray", "--executor", "ray", "--address", address)
    assert p.returncode == 0, p.stderr
    loc = {r["key"]: r for r in results.read_rounds(rdir / "loc")}
    ray = {r["key"]: r for r in results.read_rounds(rdir / "ray")}
    assert len(loc) == 2 and loc.keys() == ray.keys()
    for key, a in loc.items():
        b = ray[key]
        assert a["status"] == b["status"] == "ok", (a.get("reason"), b.get("reason"))
        # same seed, same batches, one thread: the same numbers to the bit
        assert a["metrics"]["test_accuracy"] == b["metrics"]["test_accuracy"]
        assert a["losses"] == b["losses"] and a["cell"] == b["cell"]
        assert (a["round"], a["mode"]) == (b["round"], b["mode"])
        assert "node" not in a
        assert b["node"]["hostname"] == socket.gethostname() and len(b["node"]["node_id"]) >= 32
        assert len(b["env"]["git"]["commit"] or "") == 40  # the upload has no .git: the driver's checkout says
    m = results.read_manifest(rdir / "ray")
    assert m["executor"] == "ray" and m["status"] == "complete"
    assert [n["hostname"] for n in m["ray"]["nodes"]] == [socket.gethostname()]
    assert results.read_manifest(rdir / "loc")["executor"] == "local"


def _bench_workers(run_id: str) -> list[int]:
    """Live `bench.worker` processes of a Ray run (their job file lies in lstm-bench-<run_id>-*)."""
    return _workers(f"lstm-bench-{run_id}-")  # type: ignore[arg-type]  # any text of the command line


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_a_task_lost_with_its_ray_worker_is_recorded_and_rerun_by_resume(address, rdir):
    run_id = f"lost-{uuid.uuid4().hex[:6]}"
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    driver = subprocess.Popen([sys.executable, "-m", "bench", "--results-dir", str(rdir), "run", "-f", "torch", "-m",
                               "lstm128", "--profile", "smoke", "--threads", "1", "--memory-rounds", "1", "-q",
                               "--run-id", run_id, "--executor", "ray", "--address", address],
                              cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    workers: list[int] = []
    while time.time() < deadline and driver.poll() is None and not workers:
        workers = _bench_workers(run_id)
        time.sleep(0.05)
    assert workers, "no bench.worker ran for the task"
    task_proc = _parent(workers[0])  # the Ray worker process running the task (it started the worker)
    assert task_proc != driver.pid and "bench.worker" not in Path(f"/proc/{task_proc}/cmdline").read_text()
    os.kill(task_proc, signal.SIGKILL)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1, err  # a failed (lost) process: kept, and said in the exit status
    (rec,) = results.read_rounds(rdir / run_id)
    assert rec["status"] == "failed" and rec["lost"] is True
    assert "Ray task lost" in rec["reason"] and "worker process died" in rec["reason"], rec["reason"]
    deadline = time.time() + 15  # the cell's own worker does not outlive the task that ran it
    while time.time() < deadline and _bench_workers(run_id):
        time.sleep(0.2)
    assert not _bench_workers(run_id), "the bench.worker of a lost task is still running"

    p = bench("--results-dir", str(rdir), "run", "--resume", run_id, "-q", "--executor", "ray", "--address", address)
    assert p.returncode == 0, p.stderr
    assert "0 of 1 cells already done" in p.stdout
    (rec,) = results.read_rounds(rdir / run_id)
    assert rec["status"] == "ok" and "lost" not in rec and rec["node"]["hostname"] == socket.gethostname()


LOCAL_INSTANCE = """
import json, psutil, ray
from bench.runner import ray_executor
cluster = ray_executor.connect(None, "installed")
mine = [psutil.Process(), *psutil.Process().children(recursive=True)]
conns = [c for p in mine for c in getattr(p, "net_connections", p.connections)("inet")]
listening = sorted({c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN})
task_ip = ray.get(ray.remote(lambda: ray.util.get_node_ip_address()).remote())
print(json.dumps({"address": cluster.address, "nodes": [n["NodeManagerAddress"] for n in ray.nodes()],
                  "listening": listening, "task_ip": task_ip, "cpus": [n["cpus"] for n in cluster.nodes]}))
ray.shutdown()
"""


@pytest.mark.slow
def test_a_local_instance_is_on_the_loopback_only(tmp_path):
    """No --address and no cluster on this machine: the harness's own instance has its node at
    127.0.0.1, so Ray listens on 127.0.0.1 only and its tasks see that address."""
    pytest.importorskip("ray")
    short = Path(tempfile.mkdtemp(prefix="lbl-", dir="/tmp"))  # Ray's unix socket paths: at most 107 bytes
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # A temp dir of its own: no cluster `ray start` left here is found; a HOME of its own: the
        # token a local instance writes goes there.
        env.update(RAY_TMPDIR=str(short), HOME=str(tmp_path), PYTHONPATH=str(ROOT))
        p = subprocess.run([sys.executable, "-c", LOCAL_INSTANCE], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=180)
        assert p.returncode == 0, p.stderr[-3000:]
        out = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert out["address"].startswith("127.0.0.1:") and out["nodes"] == ["127.0.0.1"]
    assert out["task_ip"] == "127.0.0.1" and len(out["cpus"]) == 1
    assert out["listening"] and set(out["listening"]) <= {"127.0.0.1", "::ffff:127.0.0.1"}, out["listening"]


def test_without_ray_it_is_one_line_and_exit_2(rdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = cli.main(["--results-dir", str(rdir), "run", "-f", "torch", "-m", "lstm128", "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: --executor ray needs Ray: pip install 'lstm-bench[ray]'\n"
    assert not rdir.exists()  # nothing written


def test_an_unreachable_address_is_one_line_exit_2_and_leaves_no_run(rdir, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli.main(["--results-dir", str(rdir), "run", "-f", "torch", "-m", "lstm128", "--profile", "smoke", "-q",
                     "--executor", "ray", "--address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"cannot reach Ray at 127.0.0.1:{port}" in err
    assert not results.list_runs(rdir)


def test_an_authentication_error_inside_rays_connection_error_is_said_as_one():
    ray = pytest.importorskip("ray")
    from bench.runner import ray_connect

    try:
        try:
            raise ray.exceptions.AuthenticationError(
                "RPC error: InvalidAuthToken: Authentication token is missing or incorrect")
        except ray.exceptions.AuthenticationError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from inner
    except ConnectionError as e:
        line = ray_connect.failure_line(e)
    # (Ray appends a note on the mode in force, which depends on what this process did before)
    assert line.startswith("InvalidAuthToken: Authentication token is missing or incorrect")
    assert line.endswith("(token authentication: RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, "
                         "a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token on every node and here)")
    assert "\n" not in line and "Ensure" not in line
    assert ray_connect.failure_line(RuntimeError("first\nsecond")) == "first"


def test_address_without_the_ray_executor_is_a_usage_error(rdir, capsys):
    assert cli.main(["--results-dir", str(rdir), "run", "-f", "torch", "-m", "lstm128", "--address", "h:6379"]) == 2
    assert "go with --executor ray" in capsys.readouterr().err


def test_a_lost_record_reruns_on_plain_resume_a_failed_one_does_not(tmp_path):
    run = tmp_path / "r"
    cells = plan(Selection(frameworks=("torch",), models=("lstm128", "cnn_small"), devices=("cpu",),
                           profile="smoke", threads=1))
    r = new_run(run, cells)
    for cell, extra in zip(cells, ({"lost": True}, {})):
        job = Job(cell, run_dir=str(run), run_id="r", round=0, mode="full")
        r.file({**process.outcome_record(job, "failed", "x"), **extra}, 0, "full")
    assert [c.key for c in schedule.remaining(r, cells, retry_failed=False)] == [cells[0].key]
    assert not results.cell_path(run, cells[0].key).exists()  # removed, so the rerun files a fresh one
    assert [c.key for c in schedule.remaining(r, cells, retry_failed=True)] == [c.key for c in cells]


def _on(recs, host):
    return [{**r, "node": {"hostname": host, "node_id": host * 8}} for r in recs]


def test_compare_and_check_refuse_cells_measured_on_different_nodes(tmp_path, capsys):
    base = _on([proc("c1", i, 1000) for i in range(3)], "hostA")
    assert compare.differences(base, _on([proc("c1", i, 1000) for i in range(3)], "hostA")) == []
    head = _on([proc("c1", i, 1000) for i in range(3)], "hostB")
    (line,) = compare.differences(base, head)
    assert line.startswith("node differs") and "hostA" in line and "hostB" in line
    rd = tmp_path / "results"
    write_run(rd, "a", base)
    write_run(rd, "b", head)
    assert cli.main(["--results-dir", str(rd), "check", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "node differs" in err and "--force" in err
    assert cli.main(["--results-dir", str(rd), "compare", "a", "b", "--force"]) == 0
    assert "node differs" in capsys.readouterr().out


def test_run_table_names_the_node_when_records_come_from_several():
    one = [{**report_rec("lstm128", "rnn", 1000.0, 10e6), "node": {"hostname": "hostA"}},
           {**report_rec("cnn_tutorial", "cnn", 500.0, 20e6), "node": {"hostname": "hostA"}}]
    assert "hostA" not in report.to_markdown(one)  # one node: the table as ever
    two = [one[0], {**one[1], "node": {"hostname": "hostB"}}]
    md = report.to_markdown(two)
    assert "| hostA: torch lstm128 cpu b128 |" in md and "| hostB: torch cnn_tutorial cpu b128 |" in md
    # the RNN-vs-CNN speed ratio is not taken across two machines
    assert claim.claim_rows(two) == [] and len(claim.claim_rows(one)) == 1
