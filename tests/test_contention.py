"""The contention guard: foreign CPU time on the cell's CPUs, judged against a stated threshold."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.workers import contention as ct

ROOT = Path(__file__).resolve().parent.parent


def stat_file(tmp_path, name: str, rows: dict[int, tuple[int, ...]]) -> str:
    p = tmp_path / name
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{c} " + " ".join(str(v) for v in vals) for c, vals in rows.items()]
    p.write_text("\n".join(lines) + "\nintr 0\n")
    return str(p)


def snap(wall: float, own: float, busy: int, steal: int = 0, cpus=(0, 1)) -> ct.Snapshot:
    return ct.Snapshot(wall, own, busy, steal, tuple(cpus), 0.5)


def test_ticks_sum_busy_fields_of_the_cells_cpus_only(tmp_path):
    # user nice system idle iowait irq softirq steal: busy = user+nice+system+irq+softirq
    path = stat_file(tmp_path, "stat", {0: (10, 1, 2, 500, 7, 3, 4, 9), 1: (100, 0, 0, 0, 0, 0, 0, 1)})
    assert ct.read_ticks((0,), path) == (10 + 1 + 2 + 3 + 4, 9)
    assert ct.read_ticks((0, 1), path) == (20 + 100, 10)
    assert ct.read_ticks((0, 2), path) is None  # a CPU missing from the file: no figure, not a wrong one
    assert ct.read_ticks((0,), str(tmp_path / "absent")) is None


def test_foreign_time_is_busy_minus_own():
    # 2 s window; the CPUs were busy 3.0 s (300 ticks of 10 ms); this process used 1.2 s of it.
    c = ct.between(snap(10.0, 5.0, 1000), snap(12.0, 6.2, 1300), tick_s=0.01)
    assert c.foreign_cpu_s == pytest.approx(1.8)
    assert c.foreign_cores == pytest.approx(0.9)
    assert c.resolution_cores == pytest.approx(2 * 2 * 0.01 / 2.0)
    assert c.busy() and "0.9 of a core" in c.reason()


def test_a_stated_threshold_decides_not_the_rounding_of_short_windows():
    quiet = ct.between(snap(0.0, 0.0, 0), snap(2.0, 1.9, 191), tick_s=0.01)  # 0.01 s foreign: 0.005 cores
    assert quiet.foreign_cores == pytest.approx(0.005) and not quiet.busy() and quiet.reason() is None
    # 0.14 cores over 2 s: past 0.10 by more than the 0.02-core resolution -> busy
    assert ct.between(snap(0.0, 0.0, 0), snap(2.0, 1.0, 128), tick_s=0.01).busy()
    # 0.11 cores over 2 s: within the resolution of the threshold -> not judged busy
    assert not ct.between(snap(0.0, 0.0, 0), snap(2.0, 1.0, 122), tick_s=0.01).busy()
    # the same 0.15 cores over a 0.1 s window cannot be told from rounding (resolution 0.4 cores)
    assert not ct.between(snap(0.0, 0.0, 0), snap(0.1, 0.0, 1.5), tick_s=0.01).busy()
    # and a stricter threshold catches what the default lets through
    assert ct.between(snap(0.0, 0.0, 0), snap(2.0, 1.9, 201), tick_s=0.01).busy(threshold_cores=0.02)


def test_windows_add_up_and_an_unreadable_proc_stat_judges_nothing():
    a = ct.between(snap(0.0, 0.0, 0), snap(1.0, 0.5, 100), tick_s=0.01)  # 0.5 foreign
    b = ct.between(snap(5.0, 0.5, 100), snap(7.0, 2.5, 300), tick_s=0.01)  # 0.0 foreign
    total = a + b
    assert total.window_s == pytest.approx(3.0) and total.foreign_cores == pytest.approx(0.5 / 3.0)
    blind = ct.between(ct.Snapshot(0.0, 0.0, None, None, (0,), None), snap(2.0, 1.0, 100, cpus=(0,)))
    assert blind.foreign_cores is None and not blind.busy() and blind.to_dict()["busy"] is False


def _spin(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/stat") or not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_a_process_burning_the_same_cpu_is_seen():
    """A real burner pinned to the CPU this test is pinned to: whatever else runs on the machine,
    the burner's share of that CPU (about half of it) is foreign time on the watched CPU."""
    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    burner = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
    try:
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.5)  # the burner is pinned and running
        w = ct.Watch()
        with w:
            _spin(2.0)
    finally:
        burner.kill()
        burner.wait()
        os.sched_setaffinity(0, old)
    c = w.total
    assert c.cpus == (cpu,)
    assert c.foreign_cores is not None and c.foreign_cores > 0.3, c.to_dict()
    assert c.busy() and c.reason().startswith("machine busy: other processes used")


def _run_fake_cell(rdir: Path, run_id: str) -> tuple[dict, str]:
    from bench import registry
    from bench.records import results

    env = dict(os.environ, PYTHONPATH=str(ROOT), **{registry.TEST_FRAMEWORKS_VARIABLE: "1"})
    p = subprocess.run([sys.executable, "-m", "bench", "--results-dir", str(rdir), "run", "-f", "fake", "-m", "lstm128",
                        "--profile", "smoke", "--memory-rounds", "0", "--run-id", run_id, "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    (rec,) = results.read_records(rdir / run_id)
    return rec, p.stdout


@pytest.mark.slow
def test_a_cell_timed_beside_a_burning_core_is_marked_busy_and_listed(tmp_path):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        rec, out = _run_fake_cell(tmp_path, "busy")
    finally:
        burner.kill()
        burner.wait()
    timed = rec["contention"]["timed"]
    assert timed["foreign_cores"] > 0.5 and timed["busy"], timed
    assert rec["suspect"] and any(r.startswith(ct.BUSY_PREFIX) for r in rec["self_check"]["reasons"])
    assert "machine busy while timing 1 cell(s)" in " ".join(out.split())


@pytest.mark.slow
def test_the_same_cell_on_a_quiet_machine_is_not_marked(tmp_path):
    # Whether the machine is quiet is itself measured: a test runner shared with another program
    # cannot show the quiet case, and says so instead of failing on someone else's load.
    w = ct.Watch()
    with w:
        time.sleep(1.0)
    if w.total.busy():
        pytest.skip(f"the machine is not quiet: {w.total.foreign_cores:.2f} cores used by other programs")
    rec, _ = _run_fake_cell(tmp_path, "quiet")
    timed = rec["contention"]["timed"]
    assert not timed["busy"], timed
    assert not any(r.startswith(ct.BUSY_PREFIX) for r in rec["self_check"]["reasons"])


def test_a_busy_record_is_logged_ok_question_mark_with_its_reason(tmp_path):
    # The per-cell log line says what the table says: "ok?" and the first failed self-check,
    # not a plain "ok" for a cell timed while another program held a core.
    import io

    from rich.console import Console

    from bench.workers import process
    from bench.commands.ui import RunUI
    from bench.workers.job import Job
    from bench.runner.plan import Selection, plan
    from bench.records.run import Run

    (cell,) = plan(Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=2))
    job = Job(cell=cell, run_id="r", round=0, mode="full", run_dir=str(tmp_path), data=None)
    busy = "machine busy: other processes used 1.0 of a core while timing (threshold 0.1)"
    rec = {"key": cell.key, "status": "ok", "self_check": {"passed": False, "reasons": [busy]}}
    run = Run.bare(tmp_path, "r")
    out = process.file_record(run, rec, job)
    assert out.status == "ok" and out.suspect == busy
    quiet = process.file_record(run, {**rec, "self_check": {"passed": True, "reasons": []}}, job)
    assert quiet.suspect == ""
    buf = io.StringIO()
    ui = RunUI(Console(file=buf, width=300, highlight=False), quiet=True)
    ui.start(1)
    ui.cell_finished(cell, out)
    ui.cell_finished(cell, quiet)
    ui.stop()
    lines = [ln for ln in buf.getvalue().splitlines() if "lstm128" in ln]
    assert "ok? torch:" in lines[0] and busy in lines[0]
    assert "ok torch:" in lines[1] and "busy" not in lines[1]


def test_windows_added_up_are_judged_on_their_summed_rounding():
    """An alternate round watches each timed repeat alone: six 0.2 s windows round their tick
    counts six times, so their sum is not read as finely as one 1.2 s window."""
    one = ct.between(snap(0.0, 0.0, 0), snap(0.2, 0.2, 22), tick_s=0.01)  # 0.02 s foreign in 0.2 s
    six = one + one + one + one + one + one
    assert six.windows == 6 and six.window_s == pytest.approx(1.2)
    assert six.foreign_cores == pytest.approx(0.1)
    assert six.resolution_cores == pytest.approx(2 * 2 * 0.01 * 6 / 1.2)
    assert not six.busy()  # 0.1 cores is inside six windows' rounding
    # a real program on the CPUs (0.9 cores) is still caught through the rounding
    hog = ct.between(snap(0.0, 0.0, 0), snap(0.2, 0.2, 38), tick_s=0.01)
    assert sum([hog] * 5, hog).busy()
