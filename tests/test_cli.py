"""The CLI and runner: bad input is one line + exit 2; crashes, timeouts and Ctrl-C lose nothing.
The runner's tests run real workers on the numpy test double (tests/fake_impl.py, listed by the
registry under LSTM_BENCH_TEST_FRAMEWORKS=1): what they test is the runner, not a framework."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench import cli, envinfo, registry
from bench.records import results

ROOT = Path(__file__).resolve().parent.parent
FAKE = {registry.TEST_FRAMEWORKS_VARIABLE: "1"}  # a child `bench` lists the `fake` framework


def bench(*argv: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture
def rdir(tmp_path):
    return tmp_path / "results"


BAD = [
    (["run", "--framework", "pytorch", "-m", "lstm128"], "unknown framework 'pytorch'"),
    (["run", "-f", "torch", "--model", "lstm9"], "unknown model 'lstm9'"),
    (["run", "-f", "torch", "-m", "lstm128", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "-f", "torch", "-m", "lstm128", "--profile", "fast"], "unknown profile 'fast'"),
    (["run", "-f", "torch", "-m", "lstm128", "-b", "0"], "batch size must be > 0"),
    (["run", "-f", "torch", "-m", "lstm128", "-b", "many"], "--batch-size takes integers"),
    (["run", "-f", "torch", "-m", "lstm128", "--variant", "turbo"], "unknown variant 'turbo'"),
    (["run", "-f", "torch", "-m", "lstm128", "--steps", "3"], "fewer than the timing protocol needs"),
    (["run", "-f", "torch", "-m", "lstm128", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["run", "-f", "torch", "-m", "lstm128", "--data", "/no/such/file.npz"], "does not exist"),
    (["run", "-f", "torch", "-m", "lstm128", "--repeats", "0"], "repeats and steps_per_repeat must be >= 1"),
    (["run", "-f", "torch", "-m", "lstm128", "--threads", "-1"], "threads must be >= 0"),
    (["run", "-f", "torch", "-m", "lstm128", "--memory-jobs", "0"], "--memory-jobs must be >= 1, got 0"),
    (["run"], "say what to run"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["show", "no-such-run"], "no run 'no-such-run'"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, msg", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, msg, rdir, capsys):
    code = cli.main(["--results-dir", str(rdir), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and msg in err, err
    assert not rdir.exists() or not any(rdir.iterdir())  # nothing half-written


def test_exit_code_2_from_a_real_process(rdir):
    p = bench("--results-dir", str(rdir), "run", "-f", "torch", "-m", "nope")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in p.stderr


def test_corrupt_data_file_is_rejected_before_any_cell(tmp_path, rdir, capsys):
    bad = tmp_path / "m.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert cli.main(["--results-dir", str(rdir), "run", "-f", "torch", "-m", "lstm128", "--data", str(bad)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err and not rdir.exists()


def test_corrupt_results_file_is_a_clear_error(rdir, capsys):
    run = rdir / "r1"
    results.write_manifest(run, {"run_id": "r1", "cells": []})
    (run / "cells").mkdir()
    (run / "cells" / "x.json").write_text('{"schema": "lstm-bench/record", "schema_vers')
    assert cli.main(["--results-dir", str(rdir), "show", "r1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt results file" in err


@pytest.mark.skipif(envinfo.gpus() != (), reason="this machine has a GPU")
def test_gpu_cell_on_a_cpu_machine_is_skipped_with_the_reason(rdir, capsys):
    code = cli.main(["--results-dir", str(rdir), "run", "-f", "torch", "-m", "cnn_small", "-d", "gpu",
                     "--profile", "smoke", "-q", "--run-id", "g"])
    assert code == 0
    (rec,) = results.read_records(rdir / "g")
    assert rec["status"] == "skipped" and "no GPU on this machine" in rec["reason"]


def test_missing_framework_is_skipped_with_the_install_hint(rdir, monkeypatch, capsys):
    ghost = registry.FrameworkInfo("ghost", "impls.ghost_impl", ("no_such_package_xyz",), "ghost", "Ghost",
                                   (("default", "never installed"),))
    monkeypatch.setitem(registry.FRAMEWORKS, "ghost", ghost)
    assert cli.main(["--results-dir", str(rdir), "run", "-f", "ghost", "-m", "lstm128", "--profile", "smoke",
                     "-q", "--run-id", "h"]) == 0
    (rec,) = results.read_records(rdir / "h")
    assert rec["status"] == "skipped"
    assert rec["reason"] == "no_such_package_xyz not installed: pip install 'lstm-bench[ghost]'"


@pytest.mark.slow
def test_crash_is_recorded_others_survive_and_resume_runs_only_what_is_missing(rdir):
    base = ["--results-dir", str(rdir)]
    p = bench(*base, "run", "-f", "fake", "-m", "lstm128,cnn_small", "--profile", "smoke", "-q", "--run-id", "c",
              env={**FAKE, "LSTM_BENCH_FAULT": "crash:cnn_small"})
    # A cell that crashed: its record kept, and the exit status says the run is not all measured.
    assert p.returncode == 1, p.stderr
    assert "1 process(es) of 1 cell(s) did not measure (1 failed): exit 1" in " ".join(p.stdout.split())
    run = rdir / "c"
    recs = {r["model"]: r for r in results.read_records(run)}
    assert recs["lstm128"]["status"] == "ok"
    assert recs["cnn_small"]["status"] == "failed" and "without a record" in recs["cnn_small"]["reason"]
    assert any("injected crash" in ln for ln in recs["cnn_small"]["error_tail"])
    ok_path = results.cell_path(run, recs["lstm128"]["key"])
    ok_bytes = ok_path.read_bytes()

    p = bench(*base, "run", "--resume", "c", "-q", env=FAKE)  # a failed cell has its record: nothing to do
    assert p.returncode == 1 and "2 of 2 cells already done" in p.stdout  # and the run still holds a failure

    p = bench(*base, "run", "--resume", "c", "--retry-failed", "-q", env=FAKE)
    assert p.returncode == 0 and "1 of 2 cells already done" in p.stdout
    assert ok_path.read_bytes() == ok_bytes  # the finished cell was not rerun
    assert {r["model"]: r["status"] for r in results.read_records(run)} == {"lstm128": "ok", "cnn_small": "ok"}

    ok_path.unlink()
    p = bench(*base, "run", "--resume", "c", "-q", env=FAKE)
    assert p.returncode == 0 and "1 of 2 cells already done" in p.stdout
    assert [r["status"] for r in results.read_records(run)] == ["ok", "ok"]
    assert results.read_manifest(run)["status"] == "complete"
    assert not (run / "staging").exists()  # emptied as records were filed, then removed


@pytest.mark.slow
def test_a_cell_past_its_timeout_is_recorded_as_timeout(rdir):
    # Each step sleeps 1 s: the worker cannot finish within the timeout, however fast the machine.
    p = bench("--results-dir", str(rdir), "run", "-f", "fake", "-m", "lstm128", "--profile", "smoke", "-q",
              "--timeout", "0.5", "--run-id", "t", env={**FAKE, "LSTM_BENCH_FAULT": "slow:lstm128:1"})
    assert p.returncode == 1, p.stderr  # recorded, and said in the exit status
    (rec,) = results.read_records(rdir / "t")
    assert rec["status"] == "timeout" and "cell timeout" in rec["reason"]


def _workers(rdir: Path) -> list[int]:
    """PIDs of live bench.worker processes working on jobs under rdir."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except (OSError, ValueError):
            continue
        if "bench.worker" in cmd and str(rdir) in cmd and "zombie" not in state:
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_finished_cells(rdir):
    # lstm128's worker sleeps 4 s per step (quiet, like a long real step), so it is mid-step
    # when the signal lands and would not die of a closed pipe on its own.
    e = dict(os.environ, PYTHONPATH=str(ROOT), LSTM_BENCH_FAULT="slow:lstm128:4", **FAKE)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--results-dir", str(rdir), "run", "-f", "fake", "-m",
                             "cnn_small,lstm128,lstm512", "--profile", "smoke", "-q", "--run-id", "i"],
                            cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A test suite started in the background (`cmd &` without job control)
                            # passes SIGINT down ignored, and Python then installs no Ctrl-C handler:
                            # give the runner the terminal's default, which is what is under test.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cells = rdir / "i" / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and not (cells.is_dir() and any(cells.glob("*.json")) and _workers(rdir)):
        time.sleep(0.2)
    assert _workers(rdir), "no worker running when the signal was sent"
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        # Say where the runner is stuck (bench/__main__.py dumps its stacks on SIGUSR1), and stop
        # it and its worker, so the tests after this one do not share the cores with them.
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        for pid in _workers(rdir):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the runner did not stop within 120 s of SIGINT; its stacks:\n{err[-4000:]}")
    assert proc.returncode == 130, err
    # The worker runs in its own session (a terminal's Ctrl-C reaches only the runner): the
    # runner must stop it, or it goes on using the cores after the run says it stopped.
    deadline = time.time() + 1
    while time.time() < deadline and _workers(rdir):
        time.sleep(0.1)
    assert not _workers(rdir), "a worker outlived the interrupted run"
    manifest = results.read_manifest(rdir / "i")
    assert manifest["status"] == "interrupted"
    kept = results.read_records(rdir / "i")
    assert 1 <= len(kept) < 3 and kept[0]["model"] == "cnn_small" and kept[0]["status"] == "ok"
    assert "resume with: python -m bench run --resume i" in out
    assert not list((rdir / "i" / "cells").glob(".*.tmp"))  # no half-written record


@pytest.mark.slow
def test_show_formats_agree(rdir):
    p = bench("--results-dir", str(rdir), "run", "-f", "fake", "-m", "cnn_small", "--profile", "smoke", "-q",
              "--run-id", "s", env=FAKE)
    assert p.returncode == 0, p.stderr
    md = bench("--results-dir", str(rdir), "show", "s", "--format", "markdown").stdout
    (rec,) = json.loads(bench("--results-dir", str(rdir), "show", "s", "--format", "records").stdout)
    (flat,) = json.loads(bench("--results-dir", str(rdir), "show", "s", "--format", "json").stdout)
    csv = bench("--results-dir", str(rdir), "show", "s", "--format", "csv").stdout
    rate = rec["metrics"]["train_samples_per_s"]["median"]
    assert f"{rate:,.0f}" in md and "cnn_small" in csv.splitlines()[1]
    assert flat["metrics.train_samples_per_s.median"] == rate and flat["run_id"] == "s"
    assert rec["status"] == "ok" and rec["schema_version"] == results.SCHEMA_VERSION
    assert np.isfinite(rec["metrics"]["final_train_loss"])
