"""Counts (bench.counts, check/run --counts): the comparison on synthetic counts, the skip when
valgrind is missing, reading callgrind's dump, and real cells of the numpy test double under
valgrind (skipped, with the reason, where valgrind is absent)."""
from __future__ import annotations

import json
import shutil

import pytest

from bench.decide import compare
from bench import counts
from bench.records import results
from bench.runner.side import Side
from bench.spec import ZOO, Cell, TrainSpec
from test_cli import FAKE, ROOT, bench


def proc(round_: int, instructions: float | None, key: str = "c1", steps: list[float] | None = None) -> dict:
    """A process record of a check --counts side: the cell, and its instruction count."""
    rec = {"key": key, "round": round_, "mode": "full", "status": "ok", "framework": "torch", "variant": "default",
           "model": "m", "device": "cpu", "batch_size": 128, "threads": 1, "precision": "fp32",
           "env": {"machine_id": "m1", "cpu_model": "cpu", "cpu_logical_cores": 2},
           "framework_versions": {"torch": "2.13.0"}, "cell": {"model": {"dropout": 0.0, "name": "m"},
                                                               "train": {"steps": 10, "seed": 0}}}
    if instructions is not None:
        rec["counts"] = {"status": "ok", "instructions_per_step": float(instructions)}
        if steps is not None:
            rec["counts"]["instructions_by_step"] = steps
    return rec


def counts_finding(base: float, head: float, floor: str | None = None):
    rules = compare.parse_rules(floor)
    cmp = compare.compare([proc(0, base)], [proc(0, head)], rules, paired=True, gate=("counts",))
    (f,) = [f for f in cmp.findings if f.rule == "counts"]
    return f, cmp.exit_code()


def test_a_two_percent_rise_in_instructions_is_regressed_and_exits_1():
    f, code = counts_finding(268e6, 268e6 * 1.02)
    assert f.verdict == "regressed" and "more instructions by 2.00%" in f.why and code == 1


def test_an_identical_count_is_unchanged_and_exits_0():
    f, code = counts_finding(268e6, 268e6)
    assert f.verdict == "unchanged" and code == 0


def test_a_two_percent_drop_is_improved():
    f, code = counts_finding(268e6, 268e6 / 1.02)
    assert f.verdict == "improved" and "fewer instructions" in f.why and code == 0


def test_the_floor_is_honoured():
    assert counts_finding(268e6, 268e6 * 1.004)[0].verdict == "unchanged"  # inside the default 0.5%
    assert counts_finding(268e6, 268e6 * 1.006)[0].verdict == "regressed"
    assert counts_finding(268e6, 268e6 * 1.02, "counts:3%")[0].verdict == "unchanged"
    assert counts_finding(268e6, 268e6 * 1.004, "counts:0.3%")[0].verdict == "regressed"


def test_records_without_counts_give_no_counts_decision():
    cmp = compare.compare([proc(0, None)], [proc(0, None)], paired=True)
    assert not [f for f in cmp.findings if f.rule == "counts"]


def test_processes_that_disagree_are_not_called_deterministic():
    """They are judged by the one-sided gate on their range (issue 41): a head whose every process
    is within the floor of every base process passes ("not regressed"); one that straddles the
    floor is inconclusive; the message says they were not deterministic either way."""
    def finding(base, head):
        cmp = compare.compare([proc(i, v) for i, v in enumerate(base)], [proc(i, v) for i, v in enumerate(head)],
                              paired=True)
        (f,) = [f for f in cmp.findings if f.rule == "counts"]
        return f

    f = finding((100e6, 103e6), (100e6, 100e6))
    assert f.verdict == "not regressed" and "not deterministic" in f.why
    f = finding((100e6, 100e6), (100e6, 103e6))
    assert f.verdict == "inconclusive" and "not deterministic" in f.why


def test_the_self_check_fires_on_one_process_whose_two_steps_disagree():
    """One process a side, two counted steps each, step i of base matched with step i of head:
    matched steps whose head/base ratios agree (as measured) are the deterministic figure; ratios
    that differ past the counts tolerance (0.05%) make the check say "not deterministic" and judge
    their range, never a bare direct comparison."""
    def finding(base_steps, head_steps, floor=None):
        cmp = compare.compare([proc(0, sum(base_steps) / 2, steps=base_steps)],
                              [proc(0, sum(head_steps) / 2, steps=head_steps)], compare.parse_rules(floor),
                              paired=True, gate=("counts",))
        (f,) = [f for f in cmp.findings if f.rule == "counts"]
        return f, cmp.exit_code()

    same = [267_625_733.0, 267_645_943.0]  # a published process's two steps (0.0076% apart)
    f, code = finding(same, same)
    assert f.verdict == "unchanged" and "deterministic figure: 2 matched readings agree" in f.why and code == 0
    f, code = finding(same, [v * 1.01 for v in same])
    assert f.verdict == "regressed" and code == 1
    # Steps that differ from each other, the same way in every process (torch cnn_tutorial b16:
    # 1.2% apart), are deterministic: a +0.74% change reads +0.74%, regressed at the 0.5% floor.
    cnn = [265_500_564.0, 262_370_260.0]
    f, code = finding(cnn, [267_461_638.0, 264_326_153.0])
    assert f.verdict == "regressed" and "not deterministic" not in f.why and "0.74%" in f.why and code == 1
    f, code = finding(cnn, cnn)
    assert f.verdict == "unchanged" and code == 0
    # A synthetic non-deterministic count: the head's steps 1.001 and 1.006 of the base's.
    f, code = finding(same, [same[0] * 1.001, same[1] * 1.006])
    assert "not deterministic" in f.why and "1.0010..1.0060" in f.why and "tolerance 0.05%" in f.why
    assert f.verdict == "inconclusive" and code == 3  # the matched ratios straddle the 0.5% floor
    f, _ = finding(same, [same[0] * 1.0002, same[1] * 1.0008])  # 0.06% apart: past the tolerance
    assert "not deterministic" in f.why and f.verdict == "not regressed"
    f, _ = finding(same, [same[0] * 1.006, same[1] * 1.0075])  # both past the floor: regressed anyway
    assert "not deterministic" in f.why and f.verdict == "regressed"
    f, _ = finding(same, [same[0] * 1.0001, same[1] * 1.0004])  # 0.03% apart: inside it
    assert "not deterministic" not in f.why and f.verdict == "unchanged"
    # A record without per-step readings (made before they were kept) is one reading.
    cmp = compare.compare([proc(0, 100e6)], [proc(0, 100e6)], paired=True, gate=("counts",))
    assert [f.verdict for f in cmp.findings if f.rule == "counts"] == ["unchanged"]


def test_the_counts_tolerance_comes_from_the_measured_spread():
    rule = compare.RULES_BY_NAME["counts"]
    assert rule.tolerance == compare.COUNTS_TOLERANCE == 0.0005 < compare.DETERMINISTIC_TOLERANCE
    assert compare.RULES_BY_NAME["memory"].tolerance == compare.DETERMINISTIC_TOLERANCE
    assert counts.COUNTED_STEPS == 2  # the self-check needs two readings a process


# ------------------------------------------------------------------------ callgrind's dump
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python bench/counts/child.py job.json
part: 1

desc: I1 cache:
desc: Timerange: Basic block 1000 - 2000
desc: Trigger: Client Request: lstm-bench-steps

positions: line
events: Ir

summary: 535200123

ob=(1) /usr/lib/libc.so.6
fl=(1) ???
fn=(1) memcpy
0 12

totals: 535200123
"""


def test_instructions_are_read_from_the_dump(tmp_path):
    assert counts.parse_instructions(DUMP) == 535200123
    two = DUMP.replace("events: Ir", "events: Ir Dr").replace("totals: 535200123", "totals: 7 9")
    assert counts.parse_instructions(two) == 7
    with pytest.raises(counts.DumpError, match="not Ir"):
        counts.parse_instructions(DUMP.replace("events: Ir", "events: Dr"))
    with pytest.raises(counts.DumpError, match="not a callgrind dump"):
        counts.parse_instructions("hello")
    (tmp_path / "callgrind.out.4242").write_text(DUMP.replace("lstm-bench-steps", "program exit"))
    (tmp_path / "callgrind.out.4242.1").write_text(DUMP)
    (tmp_path / "callgrind.out.4242.10").write_text(DUMP)
    assert [p.name for p in counts.counted_dumps(tmp_path)] == ["callgrind.out.4242.1", "callgrind.out.4242.10"]


# ------------------------------------------------------------------------ what is skipped, and why
def cell(framework: str = "fake", model: str = "lstm128", device: str = "cpu", threads: int = 1,
         batch: int = 16) -> Cell:
    return Cell(framework, ZOO[model], TrainSpec(batch_size=batch, steps=100), device=device, threads=threads)


def test_missing_valgrind_is_a_skip_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = counts.unavailable_reason()
    assert "valgrind not found" in reason and "apt-get install valgrind" in reason
    with pytest.raises(counts.CountsUnavailable, match="apt-get install valgrind"):
        counts.shim_path()


def test_missing_gcc_is_named(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "gcc" else f"/usr/bin/{name}")
    assert "gcc not found" in counts.unavailable_reason()


def test_check_counts_without_valgrind_prints_one_line_and_exits_3(tmp_path):
    p = bench("--results-dir", str(tmp_path), "check", "--counts", "--against", "HEAD", "-f", "torch", "-m",
              "lstm128", env={"PATH": str(tmp_path)})  # a PATH with no valgrind on it
    assert p.returncode == 3, p.stdout + p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and "valgrind not found" in lines[0] and "apt-get install valgrind" in lines[0]


def test_cells_counts_cannot_serve_are_skipped_with_their_reason():
    assert "CPU only" in counts.skip_reason(cell("torch", device="gpu"), 1e9)
    assert "one thread" in counts.skip_reason(cell("torch", threads=2), 1e9)
    assert "past the counts budget" in counts.skip_reason(cell("torch", model="lstm128", batch=128), 10)
    assert counts.skip_reason(cell("torch", batch=128), counts.BUDGET_S) is None  # the target cell fits


def test_a_cell_past_the_budget_is_counted_at_the_largest_batch_that_fits():
    """The same layers at fewer rows, halving from the cell's batch: torch lstm512 b128 (~43 min
    estimated) is counted at b8, cnn_tutorial at b16, bilstm512 at b4; a cell that fits keeps its
    batch; below MIN_COUNTED_BATCH nothing is counted, and the reason says so."""
    budget = counts.BUDGET_S
    for model, batch in (("lstm512", 8), ("cnn_tutorial", 16), ("bilstm512", 4), ("gru128", 128)):
        c = cell("torch", model=model, batch=128)
        got = counts.fit_batch(c, budget)
        assert got is not None and got.train.batch_size == batch, model
        assert counts.estimate_s(got) <= budget and (got is c or counts.estimate_s(counts.with_batch(c, batch * 2)) > budget)
        assert got.model == c.model and got.threads == c.threads and got.train.steps == c.train.steps
        assert counts.skip_reason(c, budget, reduce=True) is None
    assert counts.skip_reason(cell("torch", model="lstm512", batch=128), budget) is not None  # --counts-full-batch
    assert counts.fit_batch(cell("torch", model="bilstm512", batch=128), 60) is None
    assert "even at batch 4" in counts.skip_reason(cell("torch", model="bilstm512", batch=128), 60, reduce=True)


@pytest.mark.parametrize("argv, message", [
    (["check", "--counts", "-f", "torch", "-m", "lstm128"], "needs --against"),
    (["check", "--counts", "--against", "HEAD", "--threads", "2", "-f", "torch", "-m", "lstm128"], "one thread"),
    (["check", "--counts", "--against", "HEAD", "--calibrate", "-f", "torch", "-m", "lstm128"], "no calibration"),
    (["run", "--counts", "--counts-budget-s", "0", "-f", "torch", "-m", "lstm128"], "--counts-budget-s must be"),
])
def test_bad_counts_flags_are_one_line_and_exit_2(argv, message, tmp_path):
    p = bench("--results-dir", str(tmp_path), *argv)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------ real cells under valgrind
needs_valgrind = pytest.mark.skipif(counts.unavailable_reason() is not None,
                                    reason=counts.unavailable_reason() or "")


@needs_valgrind
def test_a_fake_cell_counted_twice_gives_the_same_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_BENCH_TEST_FRAMEWORKS", "1")
    monkeypatch.setenv(counts.CACHE_VARIABLE, str(tmp_path / "cache"))  # the shim is compiled here
    c = cell()
    a, b = counts.count_pair(c, (Side(code_root=ROOT), Side(code_root=ROOT)), (tmp_path / "a", tmp_path / "b"), 120)
    for got in (a, b):
        assert got["status"] == "ok", got
        assert got["instructions_per_step"] > 1000 and got["counted_steps"] == counts.COUNTED_STEPS
        assert "avx512f" not in got["cpu_features_seen"]  # valgrind 3.19 emulates no AVX-512
        assert got["kernel"] == "fake-kernel" and got["valgrind_version"].startswith("valgrind")
    assert abs(a["instructions_per_step"] / b["instructions_per_step"] - 1) < counts.FLOOR


@needs_valgrind
def test_check_counts_and_run_counts_end_to_end(tmp_path):
    rdir = tmp_path / "results"
    p = bench("--results-dir", str(rdir), "check", "--counts", "--against", "HEAD", "-f", "fake", "-m", "lstm128",
              # the double's step is ~9k instructions, mostly the interpreter's: a floor of 5%
              "-b", "16", "--format", "json", "--fail-on", "counts:5%", env=FAKE, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    (d,) = [d for d in out["decisions"] if d["metric"] == "counts"]
    # The double's two counted steps, ~9k interpreter instructions each, differ by more than the
    # counts tolerance (0.05%): the self-check reads them as not deterministic and the gate judges
    # their range, which stays within 5%, a pass. (Real cells' steps agree to 0.008%.)
    assert d["gate"] == "pass" and d["base"] > 1000
    assert d["verdict"] == "unchanged" or "not deterministic" in d["why"], d
    # A cell past the budget at its batch is counted at the largest batch that fits, on both sides
    # (the double's lstm512 at b16 is estimated at ~5.5 min, at b4 at ~1.5 min: the budget's 100 s).
    p = bench("--results-dir", str(rdir), "check", "--counts", "--against", "HEAD", "-f", "fake", "-m", "lstm512",
              "-b", "16", "--format", "json", "--fail-on", "counts:5%", "--counts-budget-s", "100", env=FAKE,
              timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "at batch 4: batch 16 is estimated at" in p.stderr
    (d,) = [d for d in json.loads(p.stdout)["decisions"] if d["metric"] == "counts"]
    assert ".b4." in d["cell"] and d["gate"] == "pass"
    p = bench("--results-dir", str(rdir), "run", "--counts", "-f", "fake", "-m", "lstm128", "-b", "16", "--threads",
              "1", "--profile", "smoke", "-q", "--memory-rounds", "0", "--run-id", "r", env=FAKE, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    (rec,) = results.read_records(rdir / "r")
    assert rec["counts"]["instructions_per_step"] > 1000 and "avx2" in rec["counts"]["cpu_features_seen"]
    p = bench("--results-dir", str(rdir), "export", "r", "--out", str(tmp_path / "export"))
    assert p.returncode == 0, p.stderr
    names = [e["name"] for e in json.loads((tmp_path / "export" / "smaller.json").read_text())]
    assert any(n.endswith("instructions/step (callgrind)") for n in names)
