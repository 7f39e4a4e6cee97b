"""`bench export --format github-action-benchmark`: names, values, units and directions the action
reads (customBiggerIsBetter / customSmallerIsBetter), on fabricated records and the committed
baseline; bad input is a ResultsError (one line, exit 2)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import cli
from bench.show import export
from bench.records import results
from bench.commands.usage import Parser, UsageError

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "results" / "baselines" / "cpu-2core-quick"


def stats(median: float, iqr: float, values: list[float] | None = None) -> dict:
    return {"median": median, "q1": median - iqr / 2, "q3": median + iqr / 2, "iqr": iqr,
            "min": median - iqr, "max": median + iqr, "values": values or [median] * 5}


def record(fw="torch", model="lstm128", status="ok", variant="default", tensor=None, source="RSS growth",
           mem=200e6, **extra) -> dict:
    rec = {"key": f"{fw}.{variant}.{model}.cpu.b128.fp32.t2.abc", "framework": fw, "variant": variant,
           "model": model, "device": "cpu", "batch_size": 128, "status": status, "threads": 2,
           "precision": "fp32", "precision_applied": "fp32", "kernel": "k", "suspect": False,
           "env": {"git": {"commit": "0123456789abcdef", "dirty": False}},
           "metrics": {"train_samples_per_s": stats(10000.0, 200.0), "infer_samples_per_s": stats(30000.0, 600.0),
                       "step_ms": stats(12.8, 0.25)},
           "memory": {"rss_delta_train_bytes": 200e6, **({"tensor_peak_bytes": tensor} if tensor else {})},
           "analytic": {"measured_memory_bytes": mem, "measured_memory_source": source, "train_floor_bytes": 50e6}}
    if status != "ok":
        rec = {k: rec[k] for k in ("key", "framework", "variant", "model", "device", "batch_size")}
        rec.update(status=status, reason="boom")
    rec.update(extra)
    return rec


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in entries}


def test_one_ok_cell_gives_throughput_bigger_and_time_and_memory_smaller():
    out = export.github_action_benchmark([record(tensor=8_000_000, source="tensor-level", mem=8_000_000)])
    big, small = by_name(out["bigger"]), by_name(out["smaller"])
    assert list(big) == ["torch lstm128 cpu b128 train samples/s", "torch lstm128 cpu b128 infer samples/s"]
    assert big["torch lstm128 cpu b128 train samples/s"] | {"extra": ""} == \
        {"name": "torch lstm128 cpu b128 train samples/s", "unit": "samples/s", "value": 10000.0, "range": "± 100",
         "extra": ""}
    assert big["torch lstm128 cpu b128 infer samples/s"]["range"] == "± 300"
    # The tensor-level figure is the judged one here: exported once, not twice.
    assert list(small) == ["torch lstm128 cpu b128 step ms", "torch lstm128 cpu b128 memory (tensor-level)"]
    assert small["torch lstm128 cpu b128 step ms"]["value"] == 12.8
    assert small["torch lstm128 cpu b128 step ms"]["unit"] == "ms"
    assert small["torch lstm128 cpu b128 step ms"]["range"] == "± 0.125"
    mem = small["torch lstm128 cpu b128 memory (tensor-level)"]
    assert (mem["unit"], mem["value"]) == ("MB", 8.0) and "range" not in mem
    assert "8,000,000 bytes, 0.16x the analytic floor" in mem["extra"]
    extra = big["torch lstm128 cpu b128 train samples/s"]["extra"]
    assert "median of 5 timed repeats" in extra and "commit 0123456789ab" in extra and "SUSPECT" not in extra
    for e in out["bigger"] + out["smaller"]:  # the action's BenchmarkResult: strings and a number
        assert isinstance(e["name"], str) and isinstance(e["unit"], str) and isinstance(e["value"], float)
        assert isinstance(e.get("range", ""), str) and isinstance(e["extra"], str)


def test_memory_is_named_by_its_source_and_tensor_level_is_added_when_not_judged():
    out = export.github_action_benchmark([
        record("tf", tensor=None, source="RSS growth", mem=250e6),
        record("jax", tensor=9e6, source="allocator peak", mem=12e6),
    ])
    names = [e["name"] for e in out["smaller"] if "memory" in e["name"]]
    assert names == ["tf lstm128 cpu b128 memory (RSS growth)", "jax lstm128 cpu b128 memory (allocator peak)",
                     "jax lstm128 cpu b128 memory (tensor-level)"]
    vals = {e["name"]: e["value"] for e in out["smaller"]}
    assert vals["jax lstm128 cpu b128 memory (allocator peak)"] == 12.0
    assert vals["jax lstm128 cpu b128 memory (tensor-level)"] == 9.0


def test_cells_not_ok_are_left_out_and_variants_and_suspects_are_named():
    recs = [record("torch", status="failed"), record("tf", status="skipped"), record("jax", status="oom"),
            record("tf", variant="xla", suspect=True, self_check={"passed": False, "reasons": ["loss rose"]})]
    out = export.github_action_benchmark(recs)
    assert [e["name"] for e in out["bigger"]] == ["tf:xla lstm128 cpu b128 train samples/s",
                                                 "tf:xla lstm128 cpu b128 infer samples/s"]
    assert all("SUSPECT: loss rose" in e["extra"] for e in out["bigger"] + out["smaller"])


def test_non_finite_figures_are_left_out_never_written_as_nan():
    rec = record()
    rec["metrics"]["infer_samples_per_s"] = stats(float("nan"), 1.0)
    rec["metrics"]["step_ms"]["iqr"] = float("inf")
    out = export.github_action_benchmark([rec])
    assert [e["name"] for e in out["bigger"]] == ["torch lstm128 cpu b128 train samples/s"]
    step = by_name(out["smaller"])["torch lstm128 cpu b128 step ms"]
    assert "range" not in step and step["value"] == 12.8


def test_pooled_records_say_they_are_over_processes():
    rec = record()
    rec["metrics"]["train_samples_per_s"] = {**stats(9000.0, 100.0, [8900.0, 9000.0, 9100.0]), "per_process": True}
    e = by_name(export.github_action_benchmark([rec])["bigger"])["torch lstm128 cpu b128 train samples/s"]
    assert "median of 3 processes (median of per-process medians)" in e["extra"]


@pytest.mark.parametrize("drop, msg", [
    ("metrics", "has no metrics.train_samples_per_s.median"),
    ("framework", "lacks framework/model/device/batch_size"),
])
def test_corrupt_ok_records_are_a_results_error(drop, msg):
    rec = record()
    del rec[drop]
    with pytest.raises(results.ResultsError, match=msg):
        export.github_action_benchmark([rec])
    with pytest.raises(results.ResultsError, match="not a JSON object"):
        export.github_action_benchmark([["not", "a", "record"]])
    with pytest.raises(results.ResultsError, match="malformed"):
        export.github_action_benchmark([record(memory=["not", "a", "dict"], analytic={})])


def test_duplicate_names_and_empty_runs_are_refused(tmp_path):
    with pytest.raises(results.ResultsError, match="same name"):
        export.github_action_benchmark([record(), record()])
    with pytest.raises(results.ResultsError, match="no ok cell"):
        export.write([record(status="failed")], tmp_path)
    assert not list(tmp_path.iterdir())


def test_baseline_run_exports_every_cell_and_writes_valid_json(tmp_path):
    recs = results.read_records(BASELINE)
    paths = export.write(recs, tmp_path / "out")
    assert [p.name for p in paths] == ["bigger.json", "smaller.json"]
    # json.loads with NaN refused, as the action's JSON.parse would.
    big, small = (json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in {p}")) for p in paths)
    assert len(big) == 2 * 18 and len(small) == 2 * 18  # 18 ok cells: train + infer; step + memory
    e = by_name(big)["torch lstm128 cpu b128 train samples/s"]
    assert math.isclose(e["value"], 9823.545899834151) and e["unit"] == "samples/s"
    e = by_name(small)["jax bilstm512 cpu b128 memory (RSS growth)"]
    assert math.isclose(e["value"], 479.080448) and e["unit"] == "MB"
    assert e["extra"].startswith("key jax.default.bilstm512.cpu.b128.fp32.t2.e239bc6a")
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temp file


def _mini_cli() -> Parser:
    """The top-level parser's --results-dir and an `export` subcommand from export.add_parser:
    what bench/commands/show.py builds once it calls export.add_parser(sub)."""
    p = Parser(prog="python -m bench")
    p.add_argument("--results-dir", default="results")
    export.add_parser(p.add_subparsers(dest="cmd", parser_class=Parser))
    return p


def test_export_subcommand_writes_both_files_by_default_under_the_run(tmp_path, capsys):
    rd = tmp_path / "results"
    results.write_manifest(rd / "r1", {"run_id": "r1", "cells": []})
    results.write_record(rd / "r1", record())
    args = _mini_cli().parse_args(["--results-dir", str(rd), "export", "r1", "--format", "github-action-benchmark"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "bigger.json  (github-action-benchmark tool: customBiggerIsBetter)" in out
    assert "smaller.json  (github-action-benchmark tool: customSmallerIsBetter)" in out
    assert len(json.loads((rd / "r1" / "export" / "bigger.json").read_text())) == 2
    args = _mini_cli().parse_args(["--results-dir", str(rd), "export", "r1", "--out", str(tmp_path / "x")])
    assert args.func(args) == 0 and (tmp_path / "x" / "smaller.json").is_file()
    with pytest.raises(UsageError, match="invalid choice"):
        _mini_cli().parse_args(["export", "r1", "--format", "csv"])


# WIRING: passes once the CLI's parser (bench/commands/) calls `export.add_parser(sub)`; until then
# `export` is an unknown subcommand (exit 2, "invalid choice"), and this test fails on purpose.
def test_cli_export_end_to_end_and_bad_input_is_one_line_exit_2(tmp_path, capsys):
    rd = tmp_path / "results"
    results.write_manifest(rd / "r1", {"run_id": "r1", "cells": []})
    results.write_record(rd / "r1", record())
    assert cli.main(["--results-dir", str(rd), "export", "r1"]) == 0
    assert (rd / "r1" / "export" / "bigger.json").is_file() and (rd / "r1" / "export" / "smaller.json").is_file()
    capsys.readouterr()
    assert cli.main(["--results-dir", str(rd), "export", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run 'no-such-run'" in err
    (rd / "r1" / "cells" / "torch.default.lstm128.cpu.b128.fp32.t2.abc.json").write_text("{not json")
    assert cli.main(["--results-dir", str(rd), "export", "r1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt results file" in err
    results.write_record(rd / "r1", record(status="failed"))
    assert cli.main(["--results-dir", str(rd), "export", "r1"]) == 2
    assert "nothing to export" in capsys.readouterr().err


def test_a_check_counts_record_exports_its_count_only():
    # `check --counts` files records with the count and no timing: exported as the count, not
    # refused as a corrupt file (while an ok record without timing and without counts still is).
    rec = {k: v for k, v in record().items() if k not in ("metrics", "memory", "analytic")}
    rec["counts"] = {"status": "ok", "instructions_per_step": 267_622_043.0, "counted_steps": 1,
                     "valgrind_version": "valgrind-3.19.0", "kernel": "k", "cpu_features_seen": ["avx2"]}
    out = export.github_action_benchmark([rec])
    assert out["bigger"] == []
    (e,) = out["smaller"]
    assert (e["name"], e["unit"], e["value"]) == \
        ("torch lstm128 cpu b128 instructions/step (callgrind)", "instructions", 267_622_043.0)
    with pytest.raises(results.ResultsError, match="corrupt"):
        export.github_action_benchmark([{k: v for k, v in rec.items() if k != "counts"}])
