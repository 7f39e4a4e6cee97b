"""`bench show RUN [RUN ...] --format csv|parquet|json`: one flat row per cell with every
metric, several runs concatenated with run_id and node columns, readable by pandas in one line.
Built on the committed baseline (real records) and a copy of it that claims another node."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench import cli
from bench.records import results
from bench.show import tidy

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "results" / "baselines" / "cpu-2core-quick"


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """results/a: the baseline as committed; results/b: the same records measured on 'node-b'
    (as the Ray executor writes them), plus one failed cell with a reason and an error tail."""
    shutil.copytree(BASELINE, tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(BASELINE, b)
    manifest = results.read_manifest(b)
    results.write_manifest(b, {**manifest, "run_id": "b"})
    for p in (b / "cells").glob("*.json"):
        rec = json.loads(p.read_text())
        rec["node"] = {"hostname": "node-b", "node_id": "f00d"}
        results.atomic_write_json(p, rec)
    failed = json.loads(next((b / "cells").glob("*.json")).read_text())
    failed.update(key=failed["key"].replace(".t2.", ".t1."), status="failed", reason="worker exited with code 1",
                  error_tail=["Traceback", "boom"], threads=1)
    for k in ("metrics", "memory", "analytic"):
        failed.pop(k, None)
    results.write_record(b, failed)
    return tmp_path


def show(results_dir: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = cli.main(["--results-dir", str(results_dir), "show", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_csv_concatenates_runs_with_run_id_and_node_and_every_metric(two_runs, capsys):
    code, out, _ = show(two_runs, "a", "b", "--format", "csv", capsys=capsys)
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    base = results.read_records(BASELINE)
    assert len(df) == 2 * len(base) + 1  # one row per cell per run, the failed cell included
    assert list(df.columns[:6]) == ["run_id", "node", "machine_id", "commit", "key", "framework"]
    assert df.groupby("run_id").size().to_dict() == {"quick-all-2": len(base), "b": len(base) + 1}
    assert set(df[df.run_id == "b"].node) == {"node-b"}
    assert set(df[df.run_id == "quick-all-2"].node) == {"local"}
    # Every scalar figure of a record is a column, with the same value (units in the names).
    rec = next(r for r in base if r["status"] == "ok" and r["framework"] == "torch" and r["model"] == "lstm128")
    got = df[(df.run_id == "quick-all-2") & (df.key == rec["key"])].iloc[0]
    for path in ("metrics.train_samples_per_s.median", "metrics.train_samples_per_s.iqr", "metrics.step_ms.median",
                 "metrics.test_accuracy", "metrics.compile_s", "memory.rss_delta_train_bytes",
                 "analytic.train_floor_bytes", "analytic.memory_over_floor"):
        want = rec
        for part in path.split("."):
            want = want[part]
        assert got[path] == pytest.approx(want, rel=1e-12), path
    assert got["spec.hidden"] == 128 and got["spec.cell"] == "lstm" and got["seed"] == 0
    # Lists are not columns: per-step losses and per-repeat values stay in the JSON records.
    assert not [c for c in df.columns if c.startswith(("losses", "env.", "cell.")) or c.endswith(".values")]
    bad = df[df.status == "failed"].iloc[0]
    assert bad["reason"] == "worker exited with code 1" and json.loads(bad["error_tail"]) == ["Traceback", "boom"]
    assert pd.isna(bad["metrics.train_samples_per_s.median"])


def test_parquet_and_json_hold_the_same_table_as_csv(two_runs, capsys, tmp_path):
    _, out, _ = show(two_runs, "a", "b", "--format", "csv", capsys=capsys)
    csv = pd.read_csv(io.StringIO(out))
    pq_path = tmp_path / "out" / "all.parquet"
    assert show(two_runs, "a", "b", "--format", "parquet", "--out", str(pq_path), capsys=capsys)[0] == 0
    pq = pd.read_parquet(pq_path)
    assert not list(pq_path.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    _, out, _ = show(two_runs, "a", "b", "--format", "json", capsys=capsys)
    js = pd.DataFrame(json.loads(out))
    exact = {r["key"]: r["metrics"]["train_samples_per_s"]["median"] for r in results.read_records(BASELINE)
             if r["status"] == "ok"}
    a = js[js.run_id == "quick-all-2"]
    assert dict(zip(a.key, a["metrics.train_samples_per_s.median"])) == exact  # every digit, not rounded
    loaded = tidy.load("a", "b", results_dir=two_runs)  # the notebook one-liner
    for other in (pq, js, loaded):
        assert list(other.columns) == list(csv.columns)
        for col in ("key", "run_id", "node", "metrics.train_samples_per_s.median", "analytic.measured_memory_bytes"):
            a, b = csv[col].tolist(), other[col].tolist()
            assert [None if pd.isna(x) else x for x in a] == pytest.approx([None if pd.isna(x) else x for x in b]), col


def test_records_format_keeps_the_nested_pooled_records(two_runs, capsys):
    _, out, _ = show(two_runs, "a", "--format", "records", capsys=capsys)
    recs = json.loads(out)
    assert [r["key"] for r in recs] == [r["key"] for r in results.read_records(BASELINE)]
    assert "values" in recs[0]["metrics"]["train_samples_per_s"]


def test_markdown_of_several_runs_heads_each_table_with_its_run(two_runs, capsys):
    code, out, _ = show(two_runs, "a", "b", "--format", "markdown", capsys=capsys)
    assert code == 0 and "## quick-all-2\n" in out and "## b\n" in out
    assert out.index("## quick-all-2") < out.index("## b")


@pytest.mark.parametrize("args, msg", [
    (("a", "nope", "--format", "csv"), "no run 'nope'"),
    (("a", "--format", "table", "--out", "x.csv"), "--out is for the tidy formats"),
    (("--format", "csv"), "which run?"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(two_runs, capsys, args, msg, tmp_path):
    code, out, err = show(two_runs, *args, capsys=capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and out == ""


def test_a_corrupt_record_in_any_run_fails_before_anything_is_written(two_runs, capsys, tmp_path):
    next((two_runs / "b" / "cells").glob("*.json")).write_text("{not json")
    target = tmp_path / "t.csv"
    code, out, err = show(two_runs, "a", "b", "--format", "csv", "--out", str(target), capsys=capsys)
    assert code == 2 and "corrupt results file" in err and not target.exists()


def test_parquet_without_pyarrow_is_a_clear_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name == "pyarrow":
            raise ImportError("no pyarrow")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(results.ResultsError, match="needs pyarrow"):
        tidy.encode(pd.DataFrame({"a": [1]}), "parquet")
