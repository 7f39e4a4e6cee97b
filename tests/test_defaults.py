"""The per-model CPU defaults (bench.defaults): the selection rule on synthetic per-process
throughputs, and the maps against the registry and the zoo. No framework is imported."""
from __future__ import annotations

import pytest

from bench import defaults, registry
from bench.spec import DEFAULT_MODELS, ZOO


def test_a_clearly_faster_variant_replaces_the_incumbent():
    c = defaults.pick_default({"eager": [100, 104, 98], "compiled": [121, 118, 125]}, "eager")
    assert c.variant == "compiled" and c.best == "compiled"
    assert c.best_over_incumbent == pytest.approx(121 / 100)
    assert "21% faster than eager" in c.reason


def test_a_lead_inside_the_margin_keeps_the_incumbent():
    # 3% faster by the medians: inside the 5% margin, which process noise alone can produce
    c = defaults.pick_default({"eager": [100, 99, 102], "compiled": [103, 101, 106]}, "eager")
    assert c.variant == "eager" and c.best == "compiled"
    assert "only 3.0% faster" in c.reason


def test_the_rule_uses_medians_not_one_lucky_process():
    # one compiled process at 140 (a quiet moment) does not make it the default
    c = defaults.pick_default({"eager": [100, 101, 99], "compiled": [98, 140, 97]}, "eager")
    assert c.variant == "eager" and c.best == "eager"


def test_identical_samples_keep_the_incumbent():
    same = [100.0, 101.0, 99.0]
    for incumbent in ("graph", "xla"):
        assert defaults.pick_default({"xla": same, "graph": list(same)}, incumbent).variant == incumbent


def test_an_unmeasured_incumbent_loses_and_no_measurement_is_an_error():
    assert defaults.pick_default({"xla": [5.0], "graph": []}, "graph").variant == "xla"
    with pytest.raises(ValueError):
        defaults.pick_default({"xla": []}, "xla")


def test_maps_name_real_variants_and_cover_the_run_all_zoo():
    for fw, by_model in defaults.CPU_DEFAULT.items():
        names = set(registry.variants(fw)) - {"default"}
        assert set(DEFAULT_MODELS) <= set(by_model), fw
        for model, v in by_model.items():
            assert v in names, (fw, model, v)
            if v == "channels_last":
                assert ZOO[model].family == "cnn"
        assert set(defaults.CPU_FAMILY_DEFAULT[fw].values()) <= names


def test_unmeasured_models_fall_back_by_family_and_jax_has_one_default():
    assert defaults.cpu_default("tf", "my_own_lstm", "rnn") == defaults.CPU_FAMILY_DEFAULT["tf"]["rnn"]
    assert defaults.cpu_default("tf", "my_own_cnn", "cnn") == "graph"
    assert defaults.cpu_default("tf", "lstm128", "rnn") == defaults.CPU_DEFAULT["tf"]["lstm128"]
    assert defaults.cpu_default("jax", "lstm512", "rnn") == "default"
