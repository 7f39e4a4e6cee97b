"""Accuracy you can compare: seeds, agreement across frameworks, time to accuracy.

The decision logic runs on fabricated records with known answers; the time-to-accuracy curve
runs the real worker loop on a scripted trainer whose accuracy is known at every step."""
from __future__ import annotations

import numpy as np
import pytest

from bench.decide import accuracy
from bench.runner import plan
from bench.show import report
from bench import worker
from bench.commands import selection
from bench.commands.usage import UsageError
from bench.spec import Cell, Protocol, TrainSpec, get_model


def rec(fw, acc, seed=0, model="lstm128", dropout=0.0, rate=1000.0, variant="default", steps=300, curve=None):
    r = {"key": f"{fw}.{variant}.{model}.s{seed}", "framework": fw, "variant": variant, "model": model,
         "device": "cpu", "batch_size": 128, "precision": "fp32", "threads": 2, "profile": "quick", "status": "ok",
         "cell": {"model": {"family": "rnn", "dropout": dropout}, "train": {"seed": seed, "steps": steps}},
         "kernel": "k", "fast_path": True, "suspect": False, "memory": {},
         "metrics": {"train_samples_per_s": {"median": rate, "iqr": 2.0}, "test_accuracy": acc, "test_samples": 10000,
                     "trained_steps": steps, "step_ms": {"median": 1.0}, "infer_samples_per_s": {"median": 5.0},
                     "compile_s": 0.5},
         "analytic": {"measured_memory_bytes": 1e6, "measured_memory_source": "tensor-level"}}
    if curve is not None:
        r["accuracy_curve"] = curve
    return r


def test_seed_group_reports_mean_sd_and_pooled_throughput():
    recs = [rec("torch", a, seed=s, rate=r) for s, (a, r) in enumerate([(0.90, 1000), (0.92, 1200), (0.94, 900)])]
    (g,) = accuracy.seed_groups(recs)
    assert g.seeds == (0, 1, 2)
    assert g.mean == pytest.approx(0.92) and g.sd == pytest.approx(0.02)
    (row,) = accuracy.seed_table(recs)
    assert row[2] == "92.00 +- 2.00" and row[4].startswith("1,000 (900..1,200)")
    assert accuracy.seed_groups(recs[:1]) == []  # one seed is not a seed group


def test_without_dropout_identical_agree_and_differ_are_told_apart():
    same = [rec(fw, a, seed=s) for fw in ("torch", "tf", "jax") for s, a in enumerate([0.9151, 0.9203])]
    (a,) = accuracy.agreement(same)
    assert a.verdict == "identical"
    close = same + [rec("jax", 0.9153, seed=0)]  # replaces jax seed 0: 2 images apart
    close = [r for r in close if not (r["framework"] == "jax" and r["cell"]["train"]["seed"] == 0
                                      and r["metrics"]["test_accuracy"] == 0.9151)]
    (a,) = accuracy.agreement(close)
    assert a.verdict == "agree" and "2 of 10,000 images" in a.detail
    far = [r for r in same if r["framework"] != "tf"] + [rec("tf", 0.9351, seed=0), rec("tf", 0.9203, seed=1)]
    (a,) = accuracy.agreement(far)  # 200 images apart where moving the seed moves ~40
    assert a.verdict == "differ" and "200 of 10,000" in a.detail
    parted = [r for r in same if r["framework"] != "tf"] + [rec("tf", 0.9171, seed=0), rec("tf", 0.9203, seed=1)]
    (a,) = accuracy.agreement(parted)  # 20 images apart: past 0.1 points, inside the seed spread
    assert a.verdict == "agree" and "seed-to-seed sd" in a.detail, a.detail
    (a,) = accuracy.agreement([r for r in parted if r["cell"]["train"]["seed"] == 0])
    assert a.verdict == "undecided" and "--seeds" in a.detail  # one seed: no spread to judge 20 images by


def test_with_dropout_means_are_compared_not_seeds():
    rng = np.random.default_rng(0)
    base = [rec(fw, 0.98 + 0.002 * rng.standard_normal(), seed=s, dropout=0.5, model="lstm3x256")
            for fw in ("torch", "tf") for s in range(4)]
    (a,) = accuracy.agreement(base)
    assert a.dropout and a.verdict == "agree", a.detail
    shifted = [r if r["framework"] == "torch" else {**r, "metrics": {**r["metrics"],
               "test_accuracy": r["metrics"]["test_accuracy"] - 0.02}} for r in base]
    (a,) = accuracy.agreement(shifted)
    assert a.verdict == "differ", a.detail
    (a,) = accuracy.agreement([r for r in base if r["cell"]["train"]["seed"] == 0])
    assert a.verdict == "undecided" and "--seeds" in a.detail


def test_markdown_shows_seed_table_agreement_and_time_to_target():
    curve = {"target_accuracy": 0.9, "reached": True, "step": 200, "train_s": 12.5, "best_accuracy": 0.92,
             "points": [{"step": 100, "train_s": 6.0, "test_accuracy": 0.8}, {"step": 200, "train_s": 12.5,
                                                                              "test_accuracy": 0.92}]}
    recs = [rec(fw, 0.92, seed=s, curve=curve) for fw in ("torch", "jax") for s in (0, 1)]
    md = report.to_markdown(recs)
    assert "| to target |" in md.splitlines()[0] and "12.5 s @200 (90%)" in md
    assert "torch lstm128 cpu b128 seed 1" in md  # seeds keep rows apart
    assert "| torch lstm128 cpu b128 | 0,1 | 92.00 +- 0.00 |" in md
    assert "identical" in md
    missed = rec("tf", 0.5, curve={**curve, "reached": False, "best_accuracy": 0.5})
    assert accuracy.tta_text(missed) == "not reached (90%; best 50.0)"
    assert accuracy.tta_text(rec("tf", 0.5)) is None
    assert "to target" not in report.to_markdown([rec("tf", 0.5)]).splitlines()[0]


@pytest.mark.parametrize("text, want", [("3", (0, 1, 2)), ("0,1,2", (0, 1, 2)), ("5,7", (5, 7)), ("1", (0,))])
def test_seeds_option(text, want):
    assert selection.parse_seeds(text, 0) == want


@pytest.mark.parametrize("text", ["0", "x", "1,1", "-1,2", "1,-2"])
def test_seeds_option_rejects(text):
    with pytest.raises(UsageError):
        selection.parse_seeds(text, 0)


def test_target_accuracy_must_be_a_fraction():
    with pytest.raises(UsageError, match="fraction"):
        selection.target_accuracy(97.0)
    assert selection.target_accuracy(0.97) == 0.97


def test_seeds_multiply_cells_and_keys_stay_stable():
    sel = plan.Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=2, seeds=(0, 1, 2))
    cells = plan.plan(sel)
    assert [c.train.seed for c in cells] == [0, 1, 2] and len({c.key for c in cells}) == 3
    plain = plan.plan(plan.Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=2))
    assert plain[0].key == cells[0].key  # the time-to-accuracy fields at their defaults leave the key alone
    # the key published in results/baselines (made before these fields existed) still comes out
    assert plain[0].key == "torch.default.lstm128.cpu.b128.fp32.t2.23b5e300"
    tta = plan.plan(plan.Selection(frameworks=("torch",), models=("lstm128",), devices=("cpu",), threads=2,
                                   target_accuracy=0.9))
    assert tta[0].protocol.eval_every_steps == 15 and tta[0].key != plain[0].key  # 300 steps / 20


class Scripted:
    """A trainer whose test accuracy after k steps is k / 100 on a single 100-image batch (the
    first k images get their true class's logit), and whose steps take no time."""

    def __init__(self) -> None:
        self.k = 0

    def stage(self, x, y):
        return y

    def train_step(self, batch):
        self.k += 1
        return 0.0

    def loss_value(self, h):
        return 1.0

    def sync(self):
        pass

    def predict(self, y):
        logits = np.zeros((len(y), 10), np.float32)
        right = np.arange(len(y)) < len(y) * self.k // 100
        logits[np.arange(len(y)), np.where(right, y, (y + 1) % 10)] = 1.0
        return logits

    def to_numpy(self, a):
        return np.asarray(a)


def test_accuracy_curve_finds_the_first_step_at_the_target():
    from bench import data

    ds = data.load()
    proto = Protocol(warmup_steps=2, repeats=3, steps_per_repeat=4, test_samples=100, eval_every_steps=5,
                     target_accuracy=0.3)
    cell = Cell("torch", get_model("lstm128"), TrainSpec(batch_size=100, steps=40), protocol=proto)
    tr = Scripted()
    timing = worker.train_and_time(cell, tr, ds)
    c = timing["curve"].summary(40, timing["train_wall_s"], 0.40)
    steps = [p["step"] for p in c["points"]]
    # every 5 steps; inside the timed window (steps 2..14) at the first repeat end past each
    # multiple (5 -> 6, 10 -> 10), none at 14 (15 is not due yet); the last point is the final one
    assert steps == [6, 10, 15, 20, 25, 30, 35, 40]
    accs = {p["step"]: p["test_accuracy"] for p in c["points"]}
    assert accs[10] == pytest.approx(0.10) and accs[25] == pytest.approx(0.25)
    assert c["reached"] and c["step"] == 30 and c["samples"] == 3000
    assert all(a["train_s"] <= b["train_s"] for a, b in zip(c["points"], c["points"][1:]))
    assert timing["total_s"] <= sum(timing["rep_s"]) * 1.01 + 1e-3  # evaluations stayed outside the timers
