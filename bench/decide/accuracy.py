"""Accuracy you can compare: over seeds, across frameworks, and against the clock.

- Seeds: `run --seeds 3` measures every cell once per seed (a seed fixes the initial weights,
  the batch order and the dropout stream). A seed group is the set of records that differ
  only in their seed; it reports accuracy as mean +- sd over seeds and throughput pooled (the
  median of the per-seed medians: each seed is its own process).
- Across frameworks, per seed: the frameworks start from the same weights and see the same
  batches, so without dropout they should end at the same accuracy. Bit-identical training is
  not on offer: oneDNN, Eigen and XLA sum in different orders, and a few hundred Adam steps
  carry last-bit differences into a few borderline test images. So "agree" means within
  AGREE_POINTS (and the table shows the measured gap beside the seed-to-seed sd, which is
  what a reader compares it with). With dropout each framework draws its own masks, so only
  the means over seeds can be compared: they agree when a 95% Welch interval on the
  difference holds 0.
- Time to accuracy: the first evaluation at or above the target (worker.AccuracyCurve).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from ..records.record import Record, Status, TextEnum, cell_label, framework_label, seed_of

# Without dropout, two frameworks' accuracies for one seed must be within this many points
# (0.1 = 10 of 10,000 test images). Measured here: see results/published (the gap was <= 0.03
# points for lstm128 after 300 steps, where the seed-to-seed sd was ~0.3 points).
AGREE_POINTS = 0.1
# Past AGREE_POINTS, a same-seed gap within this many seed-to-seed sds is what two draws of
# that spread give at 95% (sqrt(2) x 1.96).
SPREAD_FACTOR = 2.8


def group_key(rec: dict[str, Any]) -> tuple:
    """What a record measured, without its seed."""
    return (rec["framework"], rec.get("variant"), rec["model"], rec["device"], rec["batch_size"],
            rec.get("precision"), rec.get("threads"), Record(rec).train_steps, rec.get("profile"))


def comparable_key(rec: dict[str, Any]) -> tuple:
    """The same experiment in another framework: model, device, batch, recipe, test images."""
    r = Record(rec)
    return (rec["model"], rec["device"], rec["batch_size"], rec.get("precision"), r.train_steps,
            r.protocol_test_samples)


@dataclass(frozen=True)
class SeedGroup:
    label: str
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]  # per seed, in seed order
    train_rates: tuple[float, ...]  # per seed (process) median samples/s
    dropout: bool

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else None


def seed_groups(records: Iterable[dict[str, Any]]) -> list[SeedGroup]:
    """Groups with at least two seeds, in first-seen order."""
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == Status.OK:
            by.setdefault(group_key(r), []).append(r)
    out = []
    for recs in by.values():
        recs = sorted(recs, key=seed_of)
        if len({seed_of(r) for r in recs}) < 2:
            continue
        out.append(SeedGroup(cell_label(recs[0]).split(" seed ")[0], tuple(seed_of(r) for r in recs),
                             tuple(float(r["metrics"]["test_accuracy"]) for r in recs),
                             tuple(float(r["metrics"]["train_samples_per_s"]["median"]) for r in recs),
                             bool(Record(recs[0]).dropout)))
    return out


def seed_table(records: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for g in seed_groups(records):
        sd = "-" if g.sd is None else f"{100 * g.sd:.2f}"
        rates = sorted(g.train_rates)
        rows.append([g.label, ",".join(map(str, g.seeds)), f"{100 * g.mean:.2f} +- {sd}",
                     " / ".join(f"{100 * a:.2f}" for a in g.accuracies),
                     f"{statistics.median(rates):,.0f} ({rates[0]:,.0f}..{rates[-1]:,.0f})"])
    return rows


SEED_HEADER = ["cell", "seeds", "acc % mean +- sd", "acc % per seed", "train samples/s median (range), per-seed processes"]


class Accord(TextEnum):
    """How the frameworks' accuracies on one experiment compare."""
    IDENTICAL = "identical"
    AGREE = "agree"
    DIFFER = "differ"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Agreement:
    experiment: str  # model device batch steps
    frameworks: tuple[str, ...]
    dropout: bool
    verdict: Accord
    detail: str


def agreement(records: Iterable[dict[str, Any]]) -> list[Agreement]:
    """Across frameworks, for every experiment measured by >= 2 frameworks (default variants
    or not: each framework:variant is one entry)."""
    ok = [r for r in records if r.get("status") == Status.OK]
    by: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in ok:
        fw = framework_label(r)
        by.setdefault(comparable_key(r), {}).setdefault(fw, {})[seed_of(r)] = float(r["metrics"]["test_accuracy"])
    dropout_of = {comparable_key(r): bool(Record(r).dropout) for r in ok}
    out = []
    for key, per_fw in by.items():
        if len(per_fw) < 2:
            continue
        model, device, batch, _, steps, images = key
        exp = f"{model} {device} b{batch} @{steps}"
        fws = tuple(sorted(per_fw))
        if not dropout_of[key]:
            out.append(_same_seed(exp, fws, per_fw, int(images)))
        else:
            out.append(_means(exp, fws, per_fw))
    return out


def _same_seed(exp: str, fws: tuple[str, ...], per_fw: dict[str, dict[int, float]], images: int) -> Agreement:
    seeds = sorted(set.intersection(*(set(v) for v in per_fw.values())))
    if not seeds:
        return Agreement(exp, fws, False, Accord.UNDECIDED, "no seed measured by every framework")
    gaps = [max(per_fw[f][s] for f in fws) - min(per_fw[f][s] for f in fws) for s in seeds]
    worst = max(gaps)
    sds = [statistics.stdev(v.values()) for v in per_fw.values() if len(v) > 1]
    sd_txt = f"; seed-to-seed sd {100 * statistics.fmean(sds):.2f} points" if sds else ""
    per_seed = ", ".join(f"seed {s}: " + "/".join(f"{100 * per_fw[f][s]:.2f}" for f in fws) for s in seeds)
    detail = f"largest gap {100 * worst:.2f} points ({round(worst * images)} of {images:,} images){sd_txt}; {per_seed}"
    if worst == 0:
        return Agreement(exp, fws, False, Accord.IDENTICAL, detail)
    if 100 * worst <= AGREE_POINTS + 1e-9:
        return Agreement(exp, fws, False, Accord.AGREE, detail + f" (agree = within {AGREE_POINTS} points)")
    # Past the last-bit band. Same-seed runs part as training goes on (torch and TF lstm128: within
    # 1 image for 310 steps, 41 images apart after 800), so the gap is judged against what moving
    # the seed does: two draws of the seed-to-seed spread differ by up to ~2.8 sd (95%).
    if not sds:
        return Agreement(exp, fws, False, Accord.UNDECIDED,
                         detail + f"; more than {AGREE_POINTS} points: same-seed runs part after a few hundred steps, "
                         "run --seeds 3 to compare the gap with the seed-to-seed spread")
    bound = SPREAD_FACTOR * statistics.fmean(sds)
    verdict = Accord.AGREE if worst <= bound else Accord.DIFFER
    return Agreement(exp, fws, False, verdict,
                     detail + f" (more than {AGREE_POINTS} points; agree = within {SPREAD_FACTOR} x the seed-to-seed sd"
                     f" = {100 * bound:.2f} points)")


def _means(exp: str, fws: tuple[str, ...], per_fw: dict[str, dict[int, float]]) -> Agreement:
    """Dropout: each framework's own masks, so compare means over seeds (Welch 95% interval)."""
    if any(len(v) < 2 for v in per_fw.values()):
        return Agreement(exp, fws, True, Accord.UNDECIDED, "dropout: needs >= 2 seeds per framework (run --seeds 3)")
    from scipy import stats as st  # only with seeds and dropout

    worst_txt, differ = [], False
    items = list(per_fw.items())
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (fa, a), (fb, b) = items[i], items[j]
            xa, xb = list(a.values()), list(b.values())
            res = st.ttest_ind(xa, xb, equal_var=False)
            ci = res.confidence_interval(0.95)
            lo, hi = 100 * ci.low, 100 * ci.high
            if not (lo <= 0 <= hi) and math.isfinite(lo):
                differ = True
            worst_txt.append(f"{fa}-{fb} {100 * (statistics.fmean(xa) - statistics.fmean(xb)):+.2f} "
                             f"(95% CI {lo:+.2f}..{hi:+.2f})")
    means = ", ".join(f"{f} {100 * statistics.fmean(v.values()):.2f} +- {100 * statistics.stdev(v.values()):.2f}"
                      for f, v in per_fw.items())
    return Agreement(exp, fws, True, Accord.DIFFER if differ else Accord.AGREE,
                     f"dropout: means {means}; differences in points {'; '.join(worst_txt)}")


def agreement_lines(records: list[dict[str, Any]]) -> list[str]:
    rows = agreement(records)
    if not rows:
        return []
    lines = ["Accuracy across frameworks (same seed, same batches; without dropout each seed is compared, "
             "with dropout the means over seeds):"]
    for a in rows:
        lines.append(f"  {a.experiment} [{', '.join(a.frameworks)}]: {a.verdict}: {a.detail}")
    return lines


def tta_text(rec: dict[str, Any]) -> str | None:
    """The time-to-accuracy cell of the main table, or None when the record has no target."""
    c = rec.get("accuracy_curve") or {}
    if not c.get("target_accuracy"):
        return None
    target = f"{100 * c['target_accuracy']:g}%"
    if c.get("reached"):
        return f"{c['train_s']:,.1f} s @{c['step']} ({target})"
    return f"not reached ({target}; best {100 * c['best_accuracy']:.1f})"
