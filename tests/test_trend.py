"""Creep over the default branch's pushes (bench.decide.trend, bench.show.history, `lstm-bench
trend`): synthetic histories (flat, one step, successive small steps, a slow ramp, noise) and the
committed counts processes read as a history; the store's schema and the CLI's exit codes."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench import cli
from bench.decide import trend
from bench.records import results
from bench.show import history

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "results" / "published" / "counts-cpu-2core-2026-12-02-pairs.jsonl"
FLOOR = 3.0  # percent: the default, the check's train floor


def flags_by_push(values: list[float], floor: float = FLOOR, bigger: bool = False, window: int = 10) -> list[bool]:
    """Whether the history up to and including each push is flagged: what each push's job would say."""
    return [trend.judge(values[:i + 1], bigger, floor, window).flagged for i in range(len(values))]


def test_flat_history_of_20_identical_pushes_is_never_flagged():
    assert flags_by_push([1234.5] * 20) == [False] * 20
    t = trend.judge([1234.5] * 20)
    assert len(t.segments) == 1 and t.cumulative_pct == 0 and t.step_pct is None


def test_five_successive_1pct_slowdowns_are_flagged_by_the_cumulative_rule():
    ys = [100.0] * 15
    for _ in range(5):
        ys.append(ys[-1] * 1.01)
    flags = flags_by_push(ys)
    # Each 1% step is under the 3% floor; their sum passes it at the third (3.03%) and stays past it.
    assert flags[:15] == [False] * 15
    assert flags[15:] == [False, False, True, True, True]
    t = trend.judge(ys)
    assert not t.step_flagged and t.cumulative_flagged
    assert t.cumulative_pct == pytest.approx(5.101, abs=1e-3)
    assert [s.start for s in t.segments] == [0, 15, 16, 17, 18, 19]  # every step found, none invented
    # With a floor of 5% the fifth is the first flagged (5.10%), the fourth (4.06%) is not.
    assert flags_by_push(ys, floor=5.0)[15:] == [False, False, False, False, True]


def test_a_single_3pct_step_is_flagged_at_the_push_that_makes_it():
    ys = [100.0] * 12 + [103.0]
    assert flags_by_push(ys) == [False] * 12 + [True]
    t = trend.judge(ys)
    assert t.step_flagged and t.step_at == 12 and t.step_pct == pytest.approx(3.0)
    # Just under the floor is not; the same step as an improvement is not.
    assert not trend.judge([100.0] * 12 + [102.9]).flagged
    assert not trend.judge([100.0] * 12 + [97.0]).flagged
    # Throughput: bigger is better, so a 3% drop is the regression.
    assert trend.judge([100.0] * 12 + [100 / 1.03], bigger_is_better=True).step_flagged
    assert not trend.judge([100.0] * 12 + [103.0], bigger_is_better=True).flagged


def test_a_step_stays_flagged_for_the_window_then_becomes_the_new_level():
    ys = [100.0] * 10 + [104.0] * 15
    flags = flags_by_push(ys)
    assert flags[10:20] == [True] * 10  # the step's push and the 9 after it (a window of 10 pushes)
    assert flags[20:] == [False] * 5  # then the level it set is the baseline


def test_a_slow_ramp_is_flagged_when_its_change_over_the_window_passes_the_floor():
    for rate in (0.3, 0.5):
        ys = [100.0] * 20
        for _ in range(20):
            ys.append(ys[-1] * (1 + rate / 100))
        flags = flags_by_push(ys)
        true_change = [(ys[i] / ys[max(0, i - 10)] - 1) * 100 for i in range(len(ys))]
        first_true = next(i for i, c in enumerate(true_change) if c >= FLOOR)
        assert flags.index(True) == first_true, rate
    # The same ramp in noise (sd 0.2%): flagged within 3 pushes of its true change passing 3%.
    rng = random.Random(11)
    ys = [100.0 * (1 + 0.005 * max(0, i - 20)) + rng.gauss(0, 0.2) for i in range(40)]
    first_true = 20 + 6  # 0.5% a push: 3% over 6 pushes
    assert first_true <= flags_by_push(ys).index(True) <= first_true + 3
    assert not any(flags_by_push(ys)[:20])


def test_one_outlier_that_comes_back_is_not_a_change():
    ys = [100.0] * 10 + [106.0] + [100.0] * 5
    assert flags_by_push(ys)[11:] == [False] * 5


def test_false_alarm_rate_on_flat_noisy_histories_is_small():
    """Seeded: 400 flat histories of 30 pushes, Gaussian noise with sd 1/3 of the floor (1%); a
    false alarm is the last push flagged. Measured 0 of 1000 at sd 1% and 3 of 1000 at sd 1.5%
    (docs/ci.md)."""
    rng = random.Random(7)
    flagged = sum(trend.judge([100 + rng.gauss(0, 1.0) for _ in range(30)]).flagged for _ in range(400))
    assert flagged <= 4  # <= 1%


def test_noise_sigma_is_robust_to_a_step_and_floored_for_deterministic_series():
    assert trend.noise_sigma([5e8] * 20) == pytest.approx(5e8 * trend.NOISE_FLOOR_REL)
    rng = random.Random(3)
    noisy = [100 + rng.gauss(0, 1.0) for _ in range(200)]
    assert 0.8 < trend.noise_sigma(noisy) < 1.2
    assert 0.8 < trend.noise_sigma(noisy[:100] + [v + 10 for v in noisy[100:]]) < 1.2


def test_bad_series_are_refused():
    with pytest.raises(ValueError):
        trend.judge([])
    with pytest.raises(ValueError):
        trend.judge([1.0, float("nan")])
    with pytest.raises(ValueError):
        trend.judge([1.0, 2.0], window=0)


def committed_counts() -> dict[str, list[float]]:
    """The published counts processes of torch lstm128 in time order, by injected level: 72
    processes of identical code over three sessions (with their 0.004% session-to-session moves)
    and the +1%, +2% and +5% processes."""
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: (r["t_start"], r["side"]))
    out: dict[str, list[float]] = {}
    for r in rows:
        level = "0" if r["side"] == "A" else r["level"]
        out.setdefault(level, []).append(r["instructions_per_step"])
    return out


def test_the_committed_counts_as_a_history_flag_only_the_injected_change():
    by_level = committed_counts()
    same = by_level["0"]
    assert len(same) >= 70
    # Identical code, three sessions, drift of 0.004%: never flagged at the counts floor of 0.5%.
    assert not any(flags_by_push(same, floor=0.5))
    t = trend.judge(same, floor_pct=0.5)
    assert abs(t.cumulative_pct) < 0.01
    # A push that adds the +1% extra work: flagged at once as a step, measured at +1.07..1.08%.
    t = trend.judge(same + [by_level["1"][0]], floor_pct=0.5)
    assert t.step_flagged and t.step_at == len(same) and 1.06 < t.step_pct < 1.09
    # Then +2% and +5% on top: the cumulative change over the window reads the whole creep.
    creep = same + [by_level["1"][0], by_level["2"][0], by_level["5"][0]]
    t = trend.judge(creep, floor_pct=0.5)
    assert t.cumulative_flagged and 5.0 < t.cumulative_pct < 5.1


# ------------------------------------------------------------------------------------------------
# The store and the CLI.
def point(commit: str, step_ms: float, samples: float = 1000.0) -> dict:
    return {"commit": commit, "added": "2026-12-08T00:00:00Z", "run_id": None,
            "figures": [{"name": "torch lstm128 cpu b128 step ms", "unit": "ms", "value": step_ms,
                         "bigger_is_better": False},
                        {"name": "torch lstm128 cpu b128 train samples/s", "unit": "samples/s", "value": samples,
                         "bigger_is_better": True}]}


def write_history(path: Path, step_ms: list[float]) -> None:
    path.write_text(json.dumps({"schema": history.SCHEMA, "version": 1,
                                "points": [point(f"c{i:03d}", v) for i, v in enumerate(step_ms)]}))


def test_history_round_trips_and_keeps_series_apart(tmp_path):
    p = tmp_path / "h.json"
    write_history(p, [10.0, 10.0, 10.3])
    h = history.read(p)
    series = {s.name: s for s in h.series()}
    assert series["torch lstm128 cpu b128 step ms"].values == (10.0, 10.0, 10.3)
    assert series["torch lstm128 cpu b128 train samples/s"].bigger_is_better
    history.write(tmp_path / "again.json", h)
    assert history.read(tmp_path / "again.json") == h
    assert not list(tmp_path.glob(".*.tmp"))
    # The same name in another unit is another series, never spliced into the first.
    d = json.loads(p.read_text())
    d["points"][2]["figures"][0]["unit"] = "s"
    p.write_text(json.dumps(d))
    assert len(history.read(p).series()) == 3


@pytest.mark.parametrize("content, why", [
    ("not json", "not JSON"),
    ('{"schema": "other", "version": 1, "points": []}', "schema"),
    ('{"schema": "lstm-bench-history", "version": 99, "points": []}', "version 99"),
    ('{"schema": "lstm-bench-history", "version": 1, "points": [{"commit": "a"}]}', "commit or its figures"),
    ('{"schema": "lstm-bench-history", "version": 1, "points": [{"commit": "a", "figures": '
     '[{"name": "x", "value": NaN, "bigger_is_better": false}]}]}', "finite"),
])
def test_a_bad_history_file_is_one_line(tmp_path, content, why):
    p = tmp_path / "h.json"
    p.write_text(content)
    with pytest.raises(results.ResultsError, match=why):
        history.read(p)


def test_cli_exit_codes_and_flags(tmp_path, capsys):
    p = tmp_path / "h.json"
    write_history(p, [10.0] * 20)
    assert cli.main(["trend", str(p)]) == 0
    out = capsys.readouterr().out
    assert "torch lstm128 cpu b128 step ms" in out and "FLAGGED" not in out
    write_history(p, [10.0] * 15 + [10.1, 10.201, 10.30301])
    md = tmp_path / "summary.md"
    assert cli.main(["trend", str(p), "--summary-md", str(md)]) == 1
    out = capsys.readouterr().out
    assert "FLAGGED (+3.03% over 10 pushes)" in out
    assert "| torch lstm128 cpu b128 step ms | 18 |" in md.read_text()
    assert cli.main(["trend", str(p), "--floor", "4%", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    step = next(s for s in doc["series"] if s["series"].endswith("step ms"))
    assert step["change_points"] == ["c015", "c016", "c017"] and not step["flagged"]
    assert cli.main(["trend", str(p), "--series", "samples/s"]) == 0


def test_cli_bad_input_is_exit_2_and_writes_nothing(tmp_path, capsys):
    p = tmp_path / "h.json"
    assert cli.main(["trend", str(p)]) == 2  # missing, and not --add
    assert "no such history file" in capsys.readouterr().err
    write_history(p, [10.0] * 3)
    before = p.read_text()
    for argv in (["--floor", "x"], ["--floor", "0"], ["--window", "0"], ["--series", "nothing-like-it"],
                 ["--add", "no-such-run", "--results-dir", str(tmp_path)], ["--add", "a", "--pending", "b"]):
        assert cli.main(["trend", str(p), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, (argv, err)
    assert p.read_text() == before


def _run_with(rd: Path, run_id: str, step_ms: float, commit: str) -> None:
    from tests.test_export import record, stats

    rec = record()
    rec["metrics"]["step_ms"] = stats(step_ms, 0.2)
    rec["env"]["git"]["commit"] = commit
    results.write_manifest(rd / run_id, {"run_id": run_id, "cells": []})
    results.write_record(rd / run_id, rec)


def test_cli_add_grows_the_file_and_pending_does_not(tmp_path, capsys):
    rd, p = tmp_path / "results", tmp_path / "data" / "history.json"
    p.parent.mkdir()
    for i in range(12):
        _run_with(rd, f"r{i}", 12.8, f"{i:040x}")
        assert cli.main(["--results-dir", str(rd), "trend", str(p), "--add", f"r{i}"]) == 0
    h = history.read(p)
    assert len(h.points) == 12 and h.points[-1].commit == f"{11:040x}" and h.points[-1].run_id == "r11"
    # A re-run of a push's job replaces its point: one point per push.
    assert cli.main(["--results-dir", str(rd), "trend", str(p), "--add", "r11"]) == 0
    assert [pt.commit for pt in history.read(p).points] == [f"{i:040x}" for i in range(12)]
    _run_with(rd, "pr", 12.8 * 1.04, "f" * 40)
    before = p.read_text()
    assert cli.main(["--results-dir", str(rd), "trend", str(p), "--pending", "pr", "--series", "step ms"]) == 1
    assert "FLAGGED (step" in capsys.readouterr().out
    assert p.read_text() == before
