"""run --executor ray on a real two-node Ray cluster on this machine's loopback: a head and a
worker node, each its own `ray start` with one CPU and token authentication on, as docs/ray.md
sets one up. The cells spread over both nodes; a node killed mid-run leaves its cell `failed`,
`lost`, which --resume finishes on the node left; `--address` errors name what is missing.

Loopback only, but not 127.0.0.1: Ray 2.60 rewrites 127.0.0.1 (and localhost, ::1) to the
machine's network address in --node-ip-address and --address, and its switch that keeps
127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses `ray start --address`. Any other address
of 127.0.0.0/8 is taken as given, so the head is 127.0.0.2 and the worker node 127.0.0.3 (two
addresses, as two hosts would have); every connection between them is checked to stay on the
loopback. Ray's servers still listen on every interface for such a node (on 127.0.0.1 only for
a node that is 127.0.0.1, as a local instance is: test_ray_executor).

The cluster is started and stopped here, each node by its `ray start --block` process and what
it started (process ids), torn down even when a test fails. 50-65 s on the 2-vCPU development VM.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import cli
from bench.records import results
from test_cli import ROOT

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
SMOKE = ("run", "-f", "torch", "-m", "lstm128,cnn_small", "--profile", "smoke", "--threads", "1", "--memory-rounds",
         "0", "-q")
START_TIMEOUT_S = 120


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tree(pid: int) -> set[int]:
    import psutil

    try:
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone already
            pass


@dataclass
class Node:
    proc: subprocess.Popen
    ip: str
    log: Path

    def pids(self) -> set[int]:
        """The node's processes: its `ray start --block`, what that started (GCS, raylet, agents),
        the Ray workers and the cells' bench.worker processes below them. None once it has been
        reaped: its pid may be another process's by then."""
        return _tree(self.proc.pid) if self.proc.returncode is None else set()

    def kill(self) -> None:
        if self.proc.returncode is None:  # not reaped: its pid, so its group's id, is still ours
            _kill(self.pids())
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its session: anything the tree walk missed
            except OSError:
                pass
        self.proc.wait(timeout=30)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # for every process of it and every driver: token mode, the token's file
    tmp: Path
    token_path: Path
    head: Node | None = None
    worker: Node | None = None

    def bench(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout, cwd=ROOT)

    def nodes(self) -> list[dict]:
        """ray.nodes() as a driver on the head sees them, with the GCS address it joined."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
                "print(json.dumps({'gcs': ray.get_runtime_context().gcs_address, 'nodes': [{k: n[k] for k in "
                "('NodeID', 'NodeManagerAddress', 'Alive', 'Resources')} for n in ray.nodes()]}))" % self.address)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120,
                           cwd=self.tmp)
        assert p.returncode == 0, p.stderr[-2000:]
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["gcs"] == self.address
        return out["nodes"]

    def all_pids(self) -> set[int]:
        """Every process of the cluster: both nodes' trees, and any that names its temp dir."""
        import psutil

        pids = set().union(*(n.pids() for n in (self.head, self.worker) if n))
        for p in psutil.process_iter(["cmdline"]):
            if str(self.tmp) in " ".join(p.info["cmdline"] or []):
                pids.add(p.pid)
        return pids - {os.getpid()}


def _start_node(cluster: Cluster, name: str, args: list[str]) -> Node:
    log = cluster.tmp / f"{name}.log"
    # The node's own session: its process group is the one to kill, and a Ctrl-C of pytest does not
    # reach it half-way (the fixture's teardown stops it).
    proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
                             "--object-store-memory", str(100 << 20), "--disable-usage-stats",
                             "--dashboard-agent-listen-port", str(_free_port("127.0.0.1")), *args],
                            env=cluster.env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=cluster.tmp,
                            start_new_session=True)
    return Node(proc, args[args.index("--node-ip-address") + 1], log)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def _wait(what: str, ready, nodes: list[Node]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if ready():
                return
        except AssertionError:  # a driver that could not join yet
            pass
        for n in nodes:
            if n.proc.poll() is not None:
                pytest.fail(f"`ray start` for {n.ip} exited {n.proc.returncode}: {n.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the Ray cluster did not come up ({what}) in {START_TIMEOUT_S} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    try:
        import psutil  # noqa: F401  (Ray's own dependency)
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("LSTM_BENCH_REQUIRE_ALL") == "1":
            pytest.fail("ray is required in CI but not installed")
        pytest.skip("ray not installed: pip install 'lstm-bench[ray]'")
    if not sys.platform.startswith("linux"):
        pytest.skip("a multi-node Ray cluster on one machine's loopback needs Linux (127.0.0.0/8 on lo)")
    for ip in (HEAD_IP, WORKER_IP):
        try:
            _free_port(ip)
        except OSError as e:
            pytest.skip(f"cannot bind {ip}: {e}")
    # Short: Ray's unix sockets live under it, and a socket path has at most 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="lbr-", dir="/tmp"))
    token_path = tmp / "auth_token"
    token_path.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    token_path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path), RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(ROOT),
               # The GCS checks each node every second and calls it dead after 3 refused checks (Ray's
               # default: 3 s, 5), so the killed node is gone ~3 s later rather than ~11 s; a node
               # that answers late is still judged by Ray's own timeout.
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    port = _free_port(HEAD_IP)
    c = Cluster(f"{HEAD_IP}:{port}", env, tmp, token_path)
    try:
        c.head = _start_node(c, "head", ["--head", "--node-ip-address", HEAD_IP, "--port", str(port),
                                         "--temp-dir", str(tmp), "--include-dashboard", "false",
                                         "--ray-client-server-port", str(_free_port("127.0.0.1"))])
        _wait("the head's GCS", lambda: _listening(HEAD_IP, port), [c.head])
        c.worker = _start_node(c, "worker", ["--address", c.address, "--node-ip-address", WORKER_IP])
        _wait("two nodes alive", lambda: sum(n["Alive"] for n in c.nodes()) == 2, [c.head, c.worker])
        yield c
    finally:
        for n in (c.worker, c.head):
            if n is not None:
                n.kill()
        _kill(c.all_pids())  # a GCS or raylet whose `ray start` died first names the temp dir
        shutil.rmtree(tmp, ignore_errors=True)


def _by_ip(cluster: Cluster) -> dict[str, dict]:
    return {n["NodeManagerAddress"]: n for n in cluster.nodes() if n["Alive"]}


def _loopback(ip: str) -> bool:
    a = ipaddress.ip_address(ip)
    return (a.ipv4_mapped or a).is_loopback if isinstance(a, ipaddress.IPv6Address) else a.is_loopback


@pytest.mark.slow
def test_cells_spread_over_two_nodes_on_the_loopback(cluster, tmp_path):
    nodes = _by_ip(cluster)
    assert sorted(nodes) == [HEAD_IP, WORKER_IP]  # the node addresses given, not the network's
    assert [nodes[ip]["Resources"]["CPU"] for ip in (HEAD_IP, WORKER_IP)] == [1.0, 1.0]
    rdir = tmp_path / "results"
    p = cluster.bench("--results-dir", str(rdir), *SMOKE, "--run-id", "two", "--executor", "ray",
                      "--address", cluster.address)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = results.read_rounds(rdir / "two")
    assert len(recs) == 2 and [r["status"] for r in recs] == ["ok", "ok"], [r.get("reason") for r in recs]
    # one CPU a node, one thread a cell: the two cells ran at once, one on each node
    assert {r["node"]["node_id"] for r in recs} == {nodes[HEAD_IP]["NodeID"], nodes[WORKER_IP]["NodeID"]}
    assert {r["node"]["hostname"] for r in recs} == {socket.gethostname()}
    m = results.read_manifest(rdir / "two")
    assert m["ray"]["address"] == cluster.address
    assert sorted(n["node_id"] for n in m["ray"]["nodes"]) == sorted(n["NodeID"] for n in nodes.values())
    # Nothing of the cluster talks to another address than the loopback.
    import psutil

    conns = []
    for pid in cluster.all_pids():
        try:
            proc = psutil.Process(pid)
            conns += [c for c in getattr(proc, "net_connections", proc.connections)("inet") if c.raddr]
        except psutil.Error:
            pass
    assert len(conns) >= 4  # the worker node's raylet and agents hold connections to the head's GCS
    off = [(c.laddr, c.raddr) for c in conns if not (_loopback(c.laddr.ip) and _loopback(c.raddr.ip))]
    assert off == []


@pytest.mark.slow
def test_address_errors_name_what_is_missing(cluster, tmp_path, monkeypatch, capsys):
    import ray

    def no_init(*a, **k):
        raise AssertionError("ray.init was reached: the preflight let it through")

    monkeypatch.setattr(ray, "init", no_init)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    rdir = tmp_path / "results"
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    cases = [
        ({}, "wants its token and RAY_AUTH_MODE is unset here, so none is sent: export RAY_AUTH_MODE=token"),
        ({"RAY_AUTH_MODE": "disabled"}, "wants its token and RAY_AUTH_MODE=disabled here"),
        ({"RAY_AUTH_MODE": "token"}, f"wants its token and there is none here ({tmp_path}/.ray/auth_token: "),
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)},
         f"refused the token from RAY_AUTH_TOKEN_PATH ({wrong}): it is not the cluster's"),
    ]
    for env, said in cases:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            code = cli.main(["--results-dir", str(rdir), *SMOKE, "--executor", "ray", "--address", cluster.address])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, (env, err)
        assert err.startswith("error: the Ray cluster at " + cluster.address) and said in err, (env, err)
        assert "`ray get-auth-token` on the head" in err
    assert not results.list_runs(rdir)  # nothing written
    # The right token, in the variable or the file: nothing to say, on to ray.init.
    from bench.runner import ray_connect

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(cluster.token_path))
    assert ray_connect.preflight(cluster.address) is None
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.token_path.read_text())
    assert ray_connect.preflight(cluster.address) is None


def _bench_worker_on(node: Node, run_id: str) -> int | None:
    """The pid of a bench.worker of `run_id` running on `node` (below its Ray worker), if any."""
    for pid in node.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "bench.worker" in cmd and f"lstm-bench-{run_id}-" in cmd:
            return pid
    return None


@pytest.mark.slow
def test_a_node_killed_mid_run_loses_its_cell_and_resume_finishes_it_on_the_other(cluster, tmp_path):
    # Runs last: it kills the worker node.
    head_id = _by_ip(cluster)[HEAD_IP]["NodeID"]
    rdir = tmp_path / "results"
    run_id = f"kill-{uuid.uuid4().hex[:6]}"
    driver = subprocess.Popen([sys.executable, "-m", "bench", "--results-dir", str(rdir), *SMOKE, "--run-id", run_id,
                               "--executor", "ray", "--address", cluster.address],
                              env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and driver.poll() is None and time.monotonic() < deadline:
            victim = _bench_worker_on(cluster.worker, run_id)
            time.sleep(0.05)
        assert victim, "no cell started on the worker node"
        cluster.worker.kill()  # every process of the node, the cell's own worker among them
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err[-3000:]  # a lost cell: kept, and said in the exit status
    recs = {r["status"]: r for r in results.read_rounds(rdir / run_id)}
    assert sorted(recs) == ["failed", "ok"]
    lost, done = recs["failed"], recs["ok"]
    assert lost["lost"] is True and "Ray task lost" in lost["reason"] and "--resume reruns it" in lost["reason"]
    assert "node" not in lost and done["node"]["node_id"] == head_id
    # The run learnt of the loss before the GCS calls the node dead by its health checks (~3 s with
    # the settings above, ~11 s at Ray's defaults): a run started before that lists it among its nodes.
    deadline = time.monotonic() + 60
    while [n["NodeManagerAddress"] for n in cluster.nodes() if n["Alive"]] != [HEAD_IP]:
        assert time.monotonic() < deadline, "the GCS still has the killed node alive"
        time.sleep(1)

    p = cluster.bench("--results-dir", str(rdir), "run", "--resume", run_id, "-q", "--executor", "ray",
                      "--address", cluster.address)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "1 of 2 cells already done" in p.stdout
    recs = results.read_rounds(rdir / run_id)
    assert len(recs) == 2 and len({r["key"] for r in recs}) == 2  # nothing recorded twice
    assert {r["key"] for r in recs} == {lost["key"], done["key"]}
    assert [r["status"] for r in recs] == ["ok", "ok"] and not any("lost" in r for r in recs)
    assert {r["node"]["node_id"] for r in recs} == {head_id}
    assert len(list((rdir / run_id / "cells").glob("*.json"))) == 2
    assert [n["node_id"] for n in results.read_manifest(rdir / run_id)["ray"]["nodes"]] == [head_id]
