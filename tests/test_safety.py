"""Nothing outside the results directory is ever touched and nothing measured is lost: run ids are
names (never paths), one runner per run, one-line errors for a full or read-only disk, readers
that refuse a record missing what they rely on, and checks that clean up after a dead predecessor.
Runs go through the real CLI; cells run on the numpy test double (tests/fake_impl.py)."""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli, measure, registry
from bench.runner import gitref, limits
from bench.workers import owned
from bench.records import results, runlock
from bench.spec import ModelSpec, TrainSpec

ROOT = Path(__file__).resolve().parent.parent
FAKE_INFO = registry.FrameworkInfo("fake", "tests.fake_impl", ("numpy",), "fake", "numpy test double",
                                   (("default", "numpy test double"),))
FAKE_ENV = {registry.TEST_FRAMEWORKS_VARIABLE: "1"}
SMOKE = ["-f", "fake", "-m", "lstm128", "--profile", "smoke", "-q", "--memory-rounds", "0"]


@pytest.fixture
def fake(monkeypatch):
    """The test double listed in this process, and the sgemm calibration skipped (it only scales
    the estimate): these tests are about files, not speed."""
    monkeypatch.setitem(registry.FRAMEWORKS, "fake", FAKE_INFO)
    monkeypatch.setenv(registry.TEST_FRAMEWORKS_VARIABLE, "1")  # the workers list it too
    monkeypatch.setattr(measure, "calibrate_matmul_gflops", lambda threads, *a, **k: 100.0)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size and modification time: what 'untouched' means."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size if not p.is_dir() else 0, st.st_mtime_ns)
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


# --- 1. run ids are names ----------------------------------------------------------------------

HOSTILE = ["..", ".", "../victim", "../../x", "a/../../victim", "/tmp", "victim/..", "~", "", " ", ".hidden",
           "x" * 129, "a\x00b", "run\nid", "C:\\x", "..\\x"]


@pytest.mark.parametrize("rid", HOSTILE, ids=repr)
def test_a_path_is_never_a_run_id(rid):
    with pytest.raises(results.ResultsError, match="bad run id"):
        results.check_run_id(rid)


def test_generated_ids_either_are_refused_or_name_a_directory_directly_inside_the_results_dir(tmp_path):
    """Property over 3,000 seeded random ids built from the characters that make paths: no id is
    accepted that resolves anywhere but one level inside the results directory."""
    root = tmp_path / "results"
    root.mkdir()
    rng = random.Random(39)
    atoms = ["..", ".", "/", "\\", "~", "a", "Z", "0", "_", "-", " ", "\x00", "é", "run", "$HOME", "*", "\n"]
    accepted = 0
    for _ in range(3000):
        rid = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 8)))
        try:
            path = results.run_dir(root, rid)
        except results.ResultsError:
            assert not results.RUN_ID_RE.fullmatch(rid)
            continue
        accepted += 1
        assert path.parent == root.resolve() and path.name == rid
        assert "/" not in rid and not rid.startswith(".")
    assert 100 < accepted < 3000  # the generator reaches both sides


def test_a_link_named_like_a_run_that_points_outside_is_refused(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "results" / "evil").symlink_to(tmp_path / "victim")
    with pytest.raises(results.ResultsError, match="outside the results directory"):
        results.run_dir(tmp_path / "results", "evil")


@pytest.fixture
def sandbox(tmp_path):
    """tmp/results holding one finished run ('keep'), and tmp/victim beside it."""
    rdir = tmp_path / "results"
    results.write_manifest(rdir / "keep", {"run_id": "keep", "cells": [], "status": "complete"})
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "precious.txt").write_text("do not delete")
    (rdir / "evil").symlink_to(victim)
    return tmp_path


def test_hostile_run_ids_touch_nothing_in_or_outside_the_results_dir(sandbox, fake, capsys):
    rdir = str(sandbox / "results")
    before = snapshot(sandbox)
    ids = ["..", ".", "../victim", "../../x", "a/../../victim", str(sandbox / "victim"), "evil", "~", "keep/.."]
    for rid in ids:
        for argv in (["run", "--dry-run", "--run-id", rid, *SMOKE], ["run", "--run-id", rid, *SMOKE],
                     ["run", "--resume", rid], ["run", "--resume", rid, "--retry-failed", "--dry-run"],
                     ["export", rid], ["show", rid]):
            code, err = run_cli(["--results-dir", rdir, *argv], capsys)
            assert code == 2, (argv, err)
            assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)
    assert snapshot(sandbox) == before


def test_a_dry_run_writes_nothing_and_an_existing_run_stays_whole(sandbox, fake, capsys):
    rdir = sandbox / "results"
    before = snapshot(sandbox)
    code, err = run_cli(["--results-dir", str(rdir), "run", "--dry-run", "--run-id", "fresh", *SMOKE], capsys)
    assert code == 0, err
    code, err = run_cli(["--results-dir", str(rdir), "run", "--dry-run", "--run-id", "keep", *SMOKE], capsys)
    assert code == 2 and "already exists" in err
    code, err = run_cli(["--results-dir", str(sandbox / "new-results"), "run", "--dry-run", *SMOKE], capsys)
    assert code == 0, err
    assert snapshot(sandbox) == before  # not even the results directory of the third was made


def test_resume_writes_only_into_runs_inside_the_results_dir(sandbox, fake, capsys):
    other = sandbox / "elsewhere"
    results.write_manifest(other / "r", {"run_id": "r", "cells": [], "status": "complete"})
    before = snapshot(sandbox)
    code, err = run_cli(["--results-dir", str(sandbox / "results"), "run", "--resume", str(other / "r")], capsys)
    assert code == 2 and "is not a run in the results directory" in err
    assert snapshot(sandbox) == before
    # ...while reading it from there is fine
    code, err = run_cli(["--results-dir", str(sandbox / "results"), "show", str(other / "r")], capsys)
    assert code == 0, err


# --- 3. one runner per run ---------------------------------------------------------------------

HOLDER = ("import sys, time; from pathlib import Path; from bench.records import runlock\n"
          "with runlock.hold(Path(sys.argv[1])):\n"
          "    print('held', flush=True); sys.stdin.read()\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_runner_is_refused_with_the_holders_pid_and_a_dead_holder_never_blocks(sandbox, fake, capsys):
    run = sandbox / "results" / "keep"
    p = _holder(run)
    try:
        with pytest.raises(runlock.RunBusy, match=f"in use by process {p.pid}"):
            with runlock.hold(run):
                pass
        assert runlock.is_held(run)
        code, err = run_cli(["--results-dir", str(sandbox / "results"), "run", "--resume", "keep"], capsys)
        assert code == 2 and f"in use by process {p.pid}" in err and err.count("\n") == 1
    finally:
        p.kill()  # SIGKILL: no cleanup of its own
        p.wait()
    assert not runlock.is_held(run)
    with runlock.hold(run):  # the kernel dropped the dead holder's lock
        assert runlock.holder(run) == os.getpid()


@pytest.mark.slow
def test_two_runners_of_one_run_at_once_lose_nothing(tmp_path):
    """A real run and a `--resume` of it started while it measures: the second is refused, the
    first ends complete with its record (before, both measured and both cells were lost)."""
    rdir = tmp_path / "results"
    env = {**os.environ, **FAKE_ENV, "PYTHONPATH": str(ROOT), "LSTM_BENCH_FAULT": "slow:lstm128:0.3"}
    cmd = [sys.executable, "-m", "bench", "--results-dir", str(rdir)]
    first = subprocess.Popen([*cmd, "run", "--run-id", "r", *SMOKE], env=env, cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (rdir / "r" / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run([*cmd, "run", "--resume", "r"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr, second.stderr
    assert first.returncode == 0, err
    (rec,) = results.read_records(rdir / "r")
    assert rec["status"] == "ok" and results.read_manifest(rdir / "r")["status"] == "complete"


# --- 4. OS errors are one line -----------------------------------------------------------------

def test_a_results_dir_that_is_a_file_is_one_line(tmp_path, fake, capsys):
    f = tmp_path / "results"
    f.write_text("not a directory")
    for argv in (["run", "--run-id", "x", *SMOKE], ["run", "--resume", "x"], ["show", "x"]):
        code, err = run_cli(["--results-dir", str(f), *argv], capsys)
        assert code == 2 and err.count("\n") == 1, (argv, err)
    assert f.read_text() == "not a directory"


ERRNOS = [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "quota"), (errno.EROFS, "read-only"),
          (errno.EACCES, "permission denied"), (errno.EPERM, "not permitted"), (errno.ENOTDIR, "not a directory"),
          (errno.ENAMETOOLONG, "too long")]


@pytest.mark.parametrize("err_no, words", ERRNOS)
def test_each_disk_error_is_one_line_with_the_path_and_exit_2(monkeypatch, capsys, err_no, words):
    def fails(args):
        raise OSError(err_no, os.strerror(err_no), "/r/x/manifest.json")

    monkeypatch.setattr(cli, "build_parser", lambda prog: _Parser(fails))
    code, err = run_cli(["list"], capsys)
    assert code == 2 and err.count("\n") == 1 and "/r/x/manifest.json" in err and words in err.lower(), err


class _Parser:
    def __init__(self, func):
        self.func = func

    def parse_args(self, argv):
        import argparse

        return argparse.Namespace(cmd="x", func=self.func)


def test_an_os_error_that_is_not_the_disk_stays_a_traceback(monkeypatch):
    def fails(args):
        raise OSError(errno.ECONNREFUSED, "refused")  # a bug or a network fault: its traceback is the report

    monkeypatch.setattr(cli, "build_parser", lambda prog: _Parser(fails))
    with pytest.raises(OSError):
        cli.main(["list"])


@pytest.mark.parametrize("err_no, words", ERRNOS[:1] + ERRNOS[2:3])
def test_a_disk_that_fails_mid_run_stops_it_in_one_line_and_keeps_what_was_filed(tmp_path, fake, capsys,
                                                                                  monkeypatch, err_no, words):
    """The second record's write fails as the disk would: exit 2 with the path and what to do,
    the first record kept, the manifest marked failed, no temporary file left, and --resume
    finishes the run once the disk is back."""
    rdir = tmp_path / "results"
    real = results.write_record
    calls = []

    def failing(run_dir, rec):
        calls.append(rec["key"])
        if len(calls) == 2:
            raise OSError(err_no, os.strerror(err_no), str(run_dir / "cells" / "x.json"))
        return real(run_dir, rec)

    monkeypatch.setattr(results, "write_record", failing)
    code, err = run_cli(["--results-dir", str(rdir), "run", "--run-id", "d", "-f", "fake", "-m", "lstm128,cnn_small",
                         "--profile", "smoke", "-q", "--memory-rounds", "0"], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err and "x.json" in err, err
    assert "run --resume d" in err
    m = results.read_manifest(rdir / "d")
    assert m["status"] == "failed"
    assert len(results.read_rounds(rdir / "d")) == 1
    assert not list((rdir / "d").rglob("*.tmp"))
    monkeypatch.setattr(results, "write_record", real)
    code, err = run_cli(["--results-dir", str(rdir), "run", "--resume", "d", "-q"], capsys)
    assert code == 0, err
    assert [r["status"] for r in results.read_records(rdir / "d")] == ["ok", "ok"]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted for the test (root only), unmounted after."""
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, "1m"):
        pytest.skip("mounting a tmpfs needs root (and a kernel that allows it here)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave_bytes: int) -> None:
    """Fill the tmpfs until about `leave_bytes` are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    (mnt / "filler").write_bytes(b"\0" * max(0, free - leave_bytes))


def test_a_full_disk_for_real_is_one_line_and_nothing_half_written(tmpfs, fake, capsys):
    rdir = tmpfs / "results"
    rdir.mkdir()
    _fill(tmpfs, 0)
    code, err = run_cli(["--results-dir", str(rdir), "run", "--run-id", "full", *SMOKE], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "disk is full" in err, err
    assert list(rdir.iterdir()) == []  # the run's directory was made by this call and removed with its lock


def test_a_disk_that_fills_during_the_run_leaves_whole_files_only(tmpfs, fake, capsys):
    rdir = tmpfs / "results"
    rdir.mkdir()
    _fill(tmpfs, 12 * 1024)  # room for the manifest, not for the record as well
    code, err = run_cli(["--results-dir", str(rdir), "run", "--run-id", "full", *SMOKE], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    for p in rdir.rglob("*"):
        assert not p.name.endswith(".tmp"), p
        if p.suffix == ".json":
            json.loads(p.read_text())  # whole, or not there


def test_a_read_only_results_dir_is_one_line(tmpfs, fake, capsys):
    rdir = tmpfs / "results"
    code, err = run_cli(["--results-dir", str(rdir), "run", "--run-id", "keep", *SMOKE], capsys)
    assert code == 0, err
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode == 0
    for argv in (["run", "--run-id", "x", *SMOKE], ["run", "--resume", "keep"], ["export", "keep"]):
        code, err = run_cli(["--results-dir", str(rdir), *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and "read-only" in err, (argv, err)


# --- 5. readers validate ------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [(lambda r: r.pop("key"), "'key'"),
                                           (lambda r: r.update(status=None), "'status'"),
                                           (lambda r: r.update(key="../../etc/x"), "'key'"),
                                           (lambda r: r.update(mode="turbo"), "'mode'")])
def test_a_record_missing_what_readers_need_is_corrupt_with_path_and_field(tmp_path, capsys, change, field):
    from bench.spec import Cell

    cell = Cell("torch", ModelSpec("lstm128"), TrainSpec())
    rdir = tmp_path / "results"
    results.write_manifest(rdir / "r", {"run_id": "r", "cells": [{"key": cell.key, "cell": cell.to_dict()}]})
    rec = {"schema": results.RECORD_SCHEMA, "schema_version": results.SCHEMA_VERSION, "key": cell.key, "status": "ok"}
    change(rec)
    path = results.cell_path(rdir / "r", cell.key)
    path.parent.mkdir()
    path.write_text(json.dumps(rec))
    for argv in (["show", "r"], ["export", "r"], ["run", "--resume", "r", "--dry-run"]):
        code, err = run_cli(["--results-dir", str(rdir), *argv], capsys)
        assert code == 2 and err.count("\n") == 1 and path.name in err and field in err and "corrupt" in err, err


def test_a_manifest_with_a_path_for_a_run_id_is_corrupt(tmp_path, capsys):
    rdir = tmp_path / "results"
    results.write_manifest(rdir / "r", {"run_id": "../../x", "cells": []})
    code, err = run_cli(["--results-dir", str(rdir), "run", "--resume", "r"], capsys)
    assert code == 2 and "field 'run_id'" in err


# --- 6. check cleans up after a predecessor's death ---------------------------------------------

KILLED_CHECK = ("import os; from bench.runner import gitref\n"
                "print(gitref.add_worktree('HEAD'), flush=True); os.kill(os.getpid(), 9)\n")


def test_a_dead_checks_worktree_is_pruned_and_a_live_ones_is_not(tmp_path):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    p = subprocess.run([sys.executable, "-c", KILLED_CHECK], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == -signal.SIGKILL
    tree = Path(p.stdout.strip())
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert tree.is_dir() and str(tree) in listed  # what a kill -9 leaves
    live = gitref.add_worktree("HEAD")  # this process's own: alive, never pruned
    try:
        gone = gitref.prune_stale()
        assert tree.parent in gone and live.parent not in gone
        assert not tree.parent.exists() and live.is_dir()
        listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
        assert str(tree) not in listed and str(live) in listed
    finally:
        gitref.remove_worktree(live)
    assert not live.parent.exists()


def test_a_directory_is_stale_only_when_its_owner_is_gone(tmp_path):
    mine = owned.make("lstm-bench-test-", tmp_path)
    foreign = tmp_path / "lstm-bench-test-foreign"
    foreign.mkdir()  # no owner file: not ours, never removed
    dead = owned.make("lstm-bench-test-", tmp_path)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead / owned.OWNER_FILE).write_text(json.dumps({"pid": int(child.stdout), "start_ticks": 1}))
    reused = owned.make("lstm-bench-test-", tmp_path)  # a live pid with another start time: a reused pid
    (reused / owned.OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "start_ticks": -5}))
    assert owned.stale("lstm-bench-test-", tmp_path) == sorted([dead, reused])
    assert mine.is_dir() and foreign.is_dir()
    assert owned.prune("lstm-bench-test-", tmp_path) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists() and mine.is_dir() and foreign.is_dir()


# --- 7. exit status and bounds -----------------------------------------------------------------

def test_a_batch_larger_than_the_training_set_is_refused_before_anything_starts(tmp_path, fake, capsys):
    rdir = tmp_path / "results"
    argv = ["--results-dir", str(rdir), "run", "-f", "fake", "-m", "lstm128", "--profile", "smoke", "-b", "60001"]
    code, err = run_cli([*argv, "--dry-run"], capsys)
    assert code == 2  # the dry run lists what the run would refuse
    code, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "larger than the training set (60,000 samples)" in err, err
    assert not rdir.exists()


def test_a_model_whose_memory_floor_exceeds_the_machine_is_flagged():
    from bench.spec import Cell

    huge = Cell("fake", ModelSpec("huge", hidden=10 ** 6), TrainSpec(batch_size=128))
    small = Cell("fake", ModelSpec("lstm128", hidden=128), TrainSpec(batch_size=128))
    lines = limits.refusals([huge, small], None, memory_bytes=24 * 10 ** 9, n_train=60_000)
    assert len(lines) == 1 and huge.key in lines[0] and "analytic memory floor" in lines[0]
    # params 4H(H+28+1) + head ~ 4.0e12 floats, x4 (weights, grads, Adam m and v) x 4 bytes: ~64,000 GB
    assert "64,088.0 GB" in lines[0] and "this machine has 24.0 GB" in lines[0]
