import dataclasses
import json

import pytest

from bench.spec import DEFAULT_MODELS, PROFILES, ZOO, Cell, ModelSpec, Protocol, SpecError, TrainSpec, get_model, get_profile


@pytest.mark.parametrize("kwargs, msg", [
    (dict(hidden=0), "hidden must be > 0"),
    (dict(hidden=-3), "hidden must be > 0"),
    (dict(dropout=1.0), "dropout must be in [0, 1)"),
    (dict(dropout=-0.1), "dropout must be in [0, 1)"),
    (dict(cell="lstmx"), "unknown cell type 'lstmx'"),
    (dict(layers=0), "layers must be > 0"),
    (dict(family="mlp"), "unknown model family"),
    (dict(family="cnn"), "at least one conv layer"),
    (dict(family="cnn", conv_channels=(8,), conv_kernel=4), "conv_kernel must be odd"),
    (dict(family="cnn", conv_channels=(8,) * 6), "shrink"),
])
def test_model_spec_rejects_invalid_values(kwargs, msg):
    with pytest.raises(SpecError, match=msg.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        ModelSpec("bad", **kwargs)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(batch_size=0), "batch size must be > 0"),
    (dict(steps=0), "steps must be > 0"),
    (dict(lr=0), "learning rate"),
    (dict(eps=0), "eps"),
    (dict(beta1=1.0), "betas"),
])
def test_train_spec_rejects_invalid_values(kwargs, msg):
    with pytest.raises(SpecError, match=msg):
        TrainSpec(**kwargs)


def test_cell_rejects_unknown_device_precision_and_too_few_steps():
    m, t = ZOO["lstm128"], TrainSpec(steps=100)
    with pytest.raises(SpecError, match="unknown device 'tpu'"):
        Cell("torch", m, t, device="tpu")
    with pytest.raises(SpecError, match="unknown precision 'fp8'"):
        Cell("torch", m, t, precision="fp8")
    with pytest.raises(SpecError, match="fewer than the timing protocol needs"):
        Cell("torch", m, TrainSpec(steps=5), protocol=Protocol(warmup_steps=2, repeats=3, steps_per_repeat=3))


@pytest.mark.parametrize("name", list(ZOO))
def test_json_round_trip_every_zoo_model(name):
    m = ZOO[name]
    assert ModelSpec.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    cell = Cell("jax", m, TrainSpec(batch_size=64, steps=500, seed=3), device="gpu", variant="cudnn",
                precision="tf32", threads=0, profile="quick")
    back = Cell.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert back == cell and back.key == cell.key
    assert hash(back) == hash(cell)


def test_unknown_fields_are_rejected_not_ignored():
    d = ZOO["lstm128"].to_dict()
    d["hiden"] = 12
    with pytest.raises(SpecError, match="unknown field"):
        ModelSpec.from_dict(d)


def test_key_is_stable_and_covers_the_recipe():
    m = ZOO["lstm128"]
    a = Cell("torch", m, TrainSpec(steps=300))
    assert a.key == Cell("torch", m, TrainSpec(steps=300)).key
    assert a.key != Cell("torch", m, TrainSpec(steps=301)).key  # a different recipe never joins
    assert a.key != Cell("torch", dataclasses.replace(m, forget_bias=0.0), TrainSpec(steps=300)).key
    assert a.key.startswith("torch.default.lstm128.cpu.b128.fp32.t0.")


def test_zoo_matches_the_tutorials():
    assert get_model("lstm3x256").layers == 3 and get_model("lstm3x256").dropout == 0.5
    assert get_model("bilstm512").bidirectional and get_model("bilstm512").hidden == 512
    with pytest.raises(SpecError, match="unknown model 'lstm9'"):
        get_model("lstm9")


def test_profiles_cover_every_default_model_and_are_runnable():
    for prof in PROFILES.values():
        for name in DEFAULT_MODELS:
            e = prof.entry(name)
            assert e.steps >= e.protocol.measured_steps, (prof.name, name)
    full = get_profile("full")
    assert (full.entry("lstm128").batch_size, full.entry("lstm128").steps) == (128, 800)
    assert (full.entry("lstm3x256").batch_size, full.entry("lstm3x256").steps) == (100, 2000)
    with pytest.raises(SpecError, match="unknown profile"):
        get_profile("fast")
