"""bench.records.record: the typed view reads what the dotted paths read, labels, and the enums write
the same JSON as bare strings."""
from __future__ import annotations

import json

from bench.records.record import MB, Record, Status, Verdict, by_node, cell_label, framework_label, node_of, seed_of


def rec(**over):
    r = {
        "key": "torch.default.lstm128", "framework": "torch", "variant": "default", "model": "lstm128",
        "device": "cpu", "batch_size": 128, "status": "ok",
        "cell": {"train": {"seed": 0, "steps": 300}, "model": {"name": "lstm128", "family": "rnn", "dropout": 0.0},
                 "protocol": {"test_samples": 2000}},
        "env": {"machine_id": "m1", "git": {"commit": "abc", "dirty": True}},
        "metrics": {"train_samples_per_s": {"median": 1500.0, "iqr": 10.0}, "infer_samples_per_s": {"median": 9e3},
                    "step_ms": {"median": 85.3}, "test_accuracy": 0.9153},
        "memory": {"rss_delta_train_bytes": 215_600_000, "rss_delta_rounds_bytes": [2e8, 2.2e8],
                   "rss_delta_spread": 0.1, "tensor_peak_bytes": 12_345_678},
        "analytic": {"measured_memory_bytes": 12_345_678, "measured_memory_source": "tensor-level",
                     "train_floor_bytes": 6_000_000, "memory_over_floor": 2.06, "achieved_gflops": 10.5,
                     "pct_of_achievable": 7.0, "calibration_gflops": 150.0},
        "self_check": {"passed": False, "reasons": ["loss not decreasing"]},
    }
    r.update(over)
    return r


def test_the_view_reads_every_figure_where_the_record_keeps_it():
    r = Record(rec())
    assert (r.seed, r.train_steps, r.spec_name, r.family, r.dropout, r.protocol_test_samples) == \
        (0, 300, "lstm128", "rnn", 0.0, 2000)
    assert r.train_spec == {"seed": 0, "steps": 300} and r.model_spec["family"] == "rnn"
    assert (r.machine_id, r.git_commit, r.git_dirty, r.node) == ("m1", "abc", True, None)
    assert r.self_check_reasons == ["loss not decreasing"]
    assert (r.train_samples_per_s, r.infer_samples_per_s, r.median("step_ms"), r.test_accuracy) == \
        (1500.0, 9e3, 85.3, 0.9153)
    assert r.summary("train_samples_per_s") == {"median": 1500.0, "iqr": 10.0}
    assert (r.rss_delta_train_bytes, r.rss_delta_rounds_bytes, r.rss_delta_spread, r.tensor_peak_bytes) == \
        (215_600_000, [2e8, 2.2e8], 0.1, 12_345_678)
    assert (r.measured_memory_bytes, r.measured_memory_source(), r.train_floor_bytes, r.memory_over_floor) == \
        (12_345_678, "tensor-level", 6_000_000, 2.06)
    assert (r.achieved_gflops, r.pct_of_achievable, r.calibration_gflops) == (10.5, 7.0, 150.0)


def test_missing_figures_read_as_none_or_their_stated_default():
    bare = Record({"framework": "tf", "model": "m", "device": "cpu", "batch_size": 8, "metrics": None,
                   "memory": "not a dict"})
    assert bare.seed == 0 and bare.dropout == 0.0 and bare.protocol_test_samples == 10_000
    assert bare.median("step_ms") is None and bare.summary("step_ms") is None and bare.metrics is None
    assert bare.tensor_peak_bytes is None and bare.rss_delta_train_bytes is None  # a non-dict on the way: None
    assert bare.self_check_reasons == [] and bare.node is None and bare.git_commit is None
    # A default applies only when the field is absent (a record older than it), not when null.
    assert bare.measured_memory_source("RSS growth") == "RSS growth"
    assert Record({"analytic": {"measured_memory_source": None}}).measured_memory_source("RSS growth") is None
    assert Record({}).metrics == {}
    assert Record({"cell": {"train": {"seed": None}}}).seed == 0


def test_labels_name_variant_seed_and_node():
    assert cell_label(rec()) == "torch lstm128 cpu b128"
    seeded = rec(variant="compile", cell={"train": {"seed": 3}})
    assert cell_label(seeded) == "torch:compile lstm128 cpu b128 seed 3" and seed_of(seeded) == 3
    assert framework_label(seeded) == "torch:compile" and framework_label(rec()) == "torch"
    assert node_of(rec(node={"hostname": "hostA"})) == "hostA" and node_of(rec()) is None


def test_by_node_sorts_only_when_records_come_from_several_nodes():
    a, b, c = rec(key="a", node={"hostname": "n2"}), rec(key="b", node={"hostname": "n1"}), rec(key="c")
    grouped, several = by_node([a, b, c])
    assert several and [r["key"] for r in grouped] == ["c", "b", "a"]  # no node sorts first ("")
    same = [rec(key="x", node={"hostname": "n1"}), rec(key="y", node={"hostname": "n1"})]
    assert by_node(same) == (same, False)
    assert by_node([c]) == ([c], False)


def test_enums_write_and_compare_as_their_strings():
    assert json.dumps({"status": Status.OK, "verdict": Verdict.CHANGED}) == '{"status": "ok", "verdict": "changed"}'
    assert f"{Status.TIMEOUT}|{Verdict.REGRESSED:>10}" == "timeout| regressed"
    assert Status("oom") is Status.OOM and Status.SKIPPED == "skipped" and "failed" in tuple(Status)
    assert {"inconclusive": "yellow"}[Verdict.INCONCLUSIVE] == "yellow"  # same hash as the bare string
    assert [s.value for s in Status] == ["ok", "failed", "oom", "timeout", "skipped"]
    assert MB == 1_000_000
