"""run --config: the example parses into the cells it says, every kind of mistake is one line
naming its file and table (all of them at once, exit 2, nothing written), a custom model reaches
the worker and the records, and compare names a model whose spec differs between two sets."""
from __future__ import annotations

import json
import re

import pytest

from bench import cli
from bench.runner import config
from bench.decide import compare
from bench.records import results
from bench.spec import PROFILES, ZOO, Cell, ModelSpec, TrainSpec
from test_cli import ROOT, bench
from test_compare import proc, write_run

EXAMPLE = ROOT / "examples" / "sweep.toml"
LSTM32X2 = ModelSpec("lstm32x2", family="rnn", cell="lstm", hidden=32, layers=2)


def test_the_example_parses_into_the_cells_it_describes():
    conf = config.load(EXAMPLE)
    assert dict(conf.models) == {"lstm32x2": LSTM32X2}
    cells = conf.plan(threads=2)
    smoke = PROFILES["smoke"].fallback  # smoke has no per-model entries: every model gets its fallback
    want = [Cell(fw, m, TrainSpec(batch_size=bs, steps=smoke.steps), device="cpu", threads=2,
                 protocol=smoke.protocol, profile="smoke")
            for fw in ("torch", "jax") for m in (LSTM32X2, ZOO["cnn_small"]) for bs in (16, 32)]
    assert [c.key for c in cells] == [c.key for c in want] and len(cells) == 8
    custom = next(c for c in cells if c.model.name == "lstm32x2")
    assert (custom.model.hidden, custom.model.layers, custom.model.family, custom.model.bidirectional) == \
        (32, 2, "rnn", False)
    assert custom.to_dict()["model"]["hidden"] == 32  # what the worker builds from (record cell.model)
    assert conf.text == EXAMPLE.read_text() and conf.label == "sweep"


SWEEP = '[[sweep]]\nframeworks = ["torch"]\nmodels = ["{model}"]\nprofile = "smoke"\n'


def one_error(text: str) -> str:
    with pytest.raises(config.ConfigError) as e:
        config.parse(text, "my.toml")
    assert len(e.value.errors) == 1, e.value.errors
    return e.value.errors[0]


ERRORS = [
    ("unknown key", '[models.m]\nhiden = 64\n' + SWEEP.format(model="m"),
     "my.toml: [models.m]: unknown key 'hiden' (did you mean 'hidden'?)"),
    ("wrong type", '[models.m]\nhidden = "64"\n' + SWEEP.format(model="m"),
     "my.toml: [models.m]: hidden must be an integer, got '64'"),
    ("bool is not an int", '[models.m]\nlayers = true\n' + SWEEP.format(model="m"),
     "my.toml: [models.m]: layers must be an integer, got true"),
    ("bad value (SpecError)", '[models.m]\nhidden = 0\n' + SWEEP.format(model="m"),
     "my.toml: [models.m]: hidden must be > 0, got 0"),
    ("key of the other family", '[models.c]\nfamily = "cnn"\nconv_channels = [4]\nhidden = 8\n'
     + SWEEP.format(model="c"), "my.toml: [models.c]: hidden does not apply to a cnn model"),
    ("unknown framework", SWEEP.format(model="lstm128").replace('"torch"', '"pytorch"'),
     "my.toml: [[sweep]] #1: unknown framework 'pytorch' (choose from torch, tf, jax)"),
    ("unknown model", SWEEP.format(model="gru129"),
     "my.toml: [[sweep]] #1: unknown model 'gru129': neither a [models.gru129] table nor a zoo model "
     "(did you mean 'gru128'?)"),
    ("unknown sweep key", SWEEP.format(model="lstm128") + "batch_size = [16]\n",
     "my.toml: [[sweep]] #1: unknown key 'batch_size' (did you mean 'batch_sizes'?)"),
    ("unknown protocol key", SWEEP.format(model="lstm128") + "[sweep.protocol]\nwarmup = 2\n",
     "my.toml: [[sweep]] #1: [sweep.protocol]: unknown key 'warmup' (did you mean 'warmup_steps'?)"),
    ("zoo-name shadowing", '[models.lstm128]\nhidden = 64\n' + SWEEP.format(model="lstm128"),
     "my.toml: [models.lstm128]: 'lstm128' is a zoo model (LSTM 1x128) and this spec differs from it "
     "(hidden: zoo 128, here 64)"),
    ("no recipe", SWEEP.format(model="lstm128").replace('profile = "smoke"\n', ""),
     "my.toml: [[sweep]] #1: say how to train"),
    ("too few steps (planning)", SWEEP.format(model="lstm128") + "[sweep.protocol]\nsteps = 3\n",
     "my.toml: [[sweep]] #1: 3 training steps is fewer than the timing protocol needs for lstm128"),
    ("same cell twice", SWEEP.format(model="lstm128") * 2,
     "my.toml: [[sweep]] #2: cell torch.default.lstm128.cpu.b32.fp32."),
    ("[sweep] for [[sweep]]", SWEEP.format(model="lstm128").replace("[[sweep]]", "[sweep]"),
     "my.toml: [sweep]: write [[sweep]]"),
    ("TOML syntax", '[models.m]\nhidden = 64\nlayers = = 2\n', "my.toml: TOML syntax error: "),
]


@pytest.mark.parametrize("text, line", [(t, m) for _, t, m in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_each_mistake_is_one_line_naming_file_and_table(text, line):
    assert one_error(text).startswith(line)


def test_a_syntax_error_gives_its_line_and_a_missing_file_is_named(tmp_path):
    assert "(at line 3, column" in one_error('[models.m]\nhidden = 64\nlayers = = 2\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(tmp_path / "nope.toml")
    assert e.value.errors == (f"{tmp_path / 'nope.toml'}: no such config file",)


def test_a_zoo_name_with_the_zoo_spec_is_allowed_and_profiles_override():
    conf = config.parse('[models.lstm128]\nhidden = 128\n[[sweep]]\nframeworks = ["torch"]\n'
                        'models = ["lstm128"]\nprofile = "quick"\n[sweep.protocol]\nsteps = 250\ntest_samples = 500\n')
    (cell,) = conf.plan(threads=1)
    quick = PROFILES["quick"].entry("lstm128")
    assert cell.model == ZOO["lstm128"] and cell.train.steps == 250 and cell.train.batch_size == quick.batch_size
    assert cell.protocol.test_samples == 500 and cell.protocol.repeats == quick.protocol.repeats


def test_an_explicit_protocol_is_the_whole_recipe():
    conf = config.parse('[[sweep]]\nframeworks = ["torch", "tf"]\nmodels = ["cnn_small"]\nbatch_sizes = [8]\n'
                        'precisions = ["fp32", "bf16"]\nseeds = [0, 1]\n'
                        '[sweep.protocol]\nwarmup_steps = 1\nrepeats = 2\nsteps_per_repeat = 3\ntest_samples = 100\n')
    cells = conf.plan(threads=1)
    assert len(cells) == 2 * 2 * 2  # frameworks x precisions x seeds
    c = cells[0]
    assert (c.train.steps, c.protocol.measured_steps, c.profile) == (7, 7, "custom")  # steps default: what timing needs
    assert {x.precision for x in cells} == {"fp32", "bf16"} and {x.train.seed for x in cells} == {0, 1}


BAD_FILE = """[models.lstm64x2]
family = "rnn"
hiden = 64
layers = "2"

[[sweep]]
frameworks = ["pytorch", "jax"]
models = ["lstm64x2", "lstm128"]
batch_sizes = [64]
profile = "smok"
"""


def test_the_cli_prints_every_mistake_one_line_each_exit_2_nothing_written(tmp_path, capsys):
    path = tmp_path / "my.toml"
    path.write_text(BAD_FILE)
    rdir = tmp_path / "results"
    assert cli.main(["--results-dir", str(rdir), "run", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"error: {path}: {m}" for m in (
        "[models.lstm64x2]: unknown key 'hiden' (did you mean 'hidden'?)",
        "[models.lstm64x2]: layers must be an integer, got '2'",
        "[[sweep]] #1: unknown framework 'pytorch' (choose from torch, tf, jax)",
        "[[sweep]] #1: unknown profile 'smok' (choose from smoke, quick, ci, claim, full)")]
    assert not rdir.exists()
    assert cli.main(["--results-dir", str(rdir), "run", "--config", str(tmp_path / "gone.toml")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'gone.toml'}: no such config file\n"
    assert not rdir.exists()


@pytest.mark.parametrize("flags, named", [(["-f", "torch"], "--framework"), (["--profile", "quick"], "--profile"),
                                          (["--all", "-b", "16"], "--all, --batch-size"),
                                          (["-m", "lstm128"], "--model"), (["--resume", "x"], "--resume")])
def test_selection_flags_beside_config_are_a_usage_error(flags, named, tmp_path, capsys):
    rdir = tmp_path / "results"
    assert cli.main(["--results-dir", str(rdir), "run", "--config", str(EXAMPLE), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and not rdir.exists()


def test_dry_run_plans_the_config_with_threads_from_the_flag(tmp_path, capsys):
    rdir = tmp_path / "results"
    assert cli.main(["--results-dir", str(rdir), "run", "--config", str(EXAMPLE), "--dry-run", "--threads", "1",
                     "--run-id", "d"]) == 0
    out = capsys.readouterr().out
    keys = re.findall(r"^\s+(\S+\.t1\.[0-9a-f]{8})$", out, re.M)
    assert len(keys) == 8 and sum("lstm32x2" in k for k in keys) == 4
    assert not (rdir / "d").exists()  # a dry run leaves no run behind


# ------------------------------------------------------------------------------- compare
def test_compare_names_a_model_whose_spec_differs_between_the_sets(tmp_path, capsys):
    def recs(key: str, hidden: int) -> list[dict]:
        out = [proc(key, i, 1000) for i in range(2)]
        for r in out:
            r["cell"]["model"] = {"name": "m", "hidden": hidden, "dropout": 0.0}
        return out

    key = "torch.default.m.cpu.b128.fp32.t2."
    base, head = recs(key + "aaaaaaaa", 64), recs(key + "bbbbbbbb", 128)
    cmp = compare.compare(base, head)
    assert cmp.model_diffs == ("model m differs between the sets: hidden: base 64, head 128",)
    assert cmp.only_base == () and cmp.only_head == ()  # explained by the line, not listed as only-in
    # A record from before a spec field existed (no variable_length) is the same network.
    old = [{**r, "cell": {**r["cell"], "model": {**r["cell"]["model"], "variable_length": False}}} for r in base]
    assert compare.compare(base, old).model_diffs == ()
    rd = tmp_path / "results"
    write_run(rd, "b", base)
    write_run(rd, "h", head)
    assert cli.main(["--results-dir", str(rd), "compare", "b", "h"]) == 0
    out = capsys.readouterr().out
    assert "model m differs between the sets: hidden: base 64, head 128" in out and "only in" not in out


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_the_example_runs_end_to_end_and_its_records_carry_the_custom_spec(tmp_path):
    """The example, torch only (the jax cells double the time and test nothing more here), with
    one memory process per cell; then --resume with the config file gone."""
    text = EXAMPLE.read_text()
    assert 'frameworks = ["torch", "jax"]' in text
    path = tmp_path / "sweep.toml"
    path.write_text(text.replace('frameworks = ["torch", "jax"]', 'frameworks = ["torch"]'))
    rdir = tmp_path / "results"
    p = bench("--results-dir", str(rdir), "run", "--config", str(path), "-q", "--memory-rounds", "1",
              "--run-id", "e", timeout=300)
    assert p.returncode == 0, p.stderr
    recs = results.read_records(rdir / "e")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs), [r.get("reason") for r in recs]
    custom = [r for r in recs if r["model"] == "lstm32x2"]
    assert len(custom) == 2 and all(r["cell"]["model"] == LSTM32X2.to_dict() for r in custom)
    assert sorted(r["batch_size"] for r in custom) == [16, 32]
    manifest = results.read_manifest(rdir / "e")
    assert manifest["config"]["text"] == path.read_text() and manifest["profile"] == "smoke"
    show = bench("--results-dir", str(rdir), "show", "e")
    assert show.returncode == 0 and show.stdout.count("lstm32x2") >= 2 and "cnn_small" in show.stdout
    path.unlink()  # the manifest describes the run: resuming needs no config file
    p = bench("--results-dir", str(rdir), "run", "--resume", "e", "-q")
    assert p.returncode == 0 and "4 of 4 cells already done" in p.stdout, p.stderr
    assert json.loads((rdir / "e" / "manifest.json").read_text())["config"]["path"] == str(path)
