"""Joins two result sets and decides, per cell and metric: regressed, a pass (improved, unchanged
or not regressed) or inconclusive, from an effect size with a confidence interval
(bench.decide.stats). The gate is one-sided: a metric passes once a regression past its floor is
ruled out, whether or not the interval also rules out a speed-up.

The sample is the process. A set whose cells ran in several fresh processes (rounds) gives
one value per process and metric: the median of that process's repeats. `check --against`
pairs base and head by round (side by side in a duet round, or back to back A B / B A); two
separately made sets
are compared unpaired. A set with one process per cell cannot say how much its figures move
between processes, so its speed and RSS verdicts are `inconclusive`, never a false alarm.

Metrics and how each is judged:
- train, infer (samples/s, higher is better) and rss (RSS growth, lower is better): rounds,
  a t interval on log ratios, against an effect floor (3%, 3%, 10%) that is a band symmetric on
  the log scale (bench.decide.stats.band: train:10% = a step 10% slower); rounds a check added one at a
  time read the repeated interval of their last look (bench.decide.sequential), and one check's gated
  rounds decisions share its error by Holm's step-down (stats.holm);
- memory: the tensor-level figure on CPU, the allocator peak on GPU. It is deterministic for
  identical code, so it is compared directly (floor 1%), after checking that each side's
  processes agree; where they do not, the one-sided rule reads the range: a pass when every head
  process is within the floor of every base one, regressed when every one is past it, else
  `inconclusive` (not deterministic);
- accuracy: when both sides trained the same steps on the same seed, a model without dropout
  must give identical accuracy: a difference is reported as `changed` (a numerics change)
  and counts as regressed only if it drops by more than the absolute tolerance (0.02): one-sided
  like the rest, any rise passes.
`--fail-on`/`--floor` sets the floors; `--gate` which metrics decide the exit code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from operator import attrgetter
from typing import Any, Callable, Iterable

import numpy as np

from . import stats
from ..records.pool import group_rounds, measured_memory
from . import hosts
from ..records.record import Record, Status, TextEnum, Verdict, env_name, node_of, package_versions
from .sequential import Design
from ..spec import ModelSpec, key_without_env

DETERMINISTIC_TOLERANCE = 0.005  # processes of one side may differ this much on a "deterministic" figure
# Counts' own: the widest spread measured between processes of identical code was 0.0079% (72
# processes, three sessions) and between consecutive counted steps of one process 0.0076%
# (results/published/counts-cpu-2core-2026-12-02.md): 0.05% is 6x that, and 1/10 of the counts floor,
# so counts that disagree past it are not the deterministic figure the direct comparison assumes.
COUNTS_TOLERANCE = 0.0005


class Judge(TextEnum):
    """How a metric's base and head values are judged (each has its function in _JUDGES)."""
    ROUNDS = "rounds"  # a t interval over processes against the floor
    DETERMINISTIC = "deterministic"  # identical code gives the identical figure: compared directly
    ACCURACY = "accuracy"  # an absolute tolerance; any change when nothing random differs


def judged_memory(rec: Record) -> float | None:
    """The memory figure the memory rule judges: bench.records.pool.measured_memory, but on CPU only the
    tensor-level figure (it is deterministic; RSS growth has its own rule)."""
    v, _ = measured_memory(rec.raw)
    if rec.raw.get("device") == "cpu" and rec.tensor_peak_bytes is None:
        return None
    return v


@dataclass(frozen=True)
class Rule:
    """`floor` is relative (0.03 = 3%) unless `absolute`."""

    name: str
    read: Callable[[Record], float | None]  # the metric in one process record
    higher_is_better: bool
    floor: float
    kind: Judge
    absolute: bool = False
    words: tuple[str, str] = ("faster", "slower")
    timed: bool = False  # a clock reading: left out of rounds timed on a busy machine
    tolerance: float = DETERMINISTIC_TOLERANCE  # DETERMINISTIC: the spread within a side still called deterministic
    # DETERMINISTIC: a process's own repeated readings (counts: each counted step), judged as values
    # of its side, so one process a side still has a spread that can exceed the tolerance.
    samples: Callable[[Record], list[float] | None] | None = None


DEFAULT_RULES = (
    Rule("train", attrgetter("train_samples_per_s"), True, 0.03, Judge.ROUNDS, timed=True),
    Rule("infer", attrgetter("infer_samples_per_s"), True, 0.03, Judge.ROUNDS, timed=True),
    Rule("memory", judged_memory, False, 0.01, Judge.DETERMINISTIC, words=("more memory", "less memory")),
    Rule("rss", attrgetter("rss_delta_train_bytes"), False, 0.10, Judge.ROUNDS, words=("more RSS", "less RSS")),
    Rule("accuracy", attrgetter("test_accuracy"), True, 0.02, Judge.ACCURACY, absolute=True),
    # Instructions per training step under callgrind (bench.counts): deterministic like tensor
    # memory, so compared directly; only records made with --counts have it. Processes of the same
    # code gave the same count to the instruction here, so the floor is half of the smallest
    # change worth gating on (results/published/counts-cpu-2core-2026-12-02.md).
    Rule("counts", attrgetter("instructions_per_step"), False, 0.005, Judge.DETERMINISTIC,
         words=("more instructions", "fewer instructions"), tolerance=COUNTS_TOLERANCE,
         samples=attrgetter("instructions_by_step")),
)
RULES_BY_NAME = {r.name: r for r in DEFAULT_RULES}
# Inference is timed on a short pass and RSS is the allocator's, not the network's: both move
# far more between processes than training speed does, so by default they are reported but
# do not decide the exit code (name them in --gate to make them).
DEFAULT_GATE = ("train", "memory", "accuracy", "counts")


class RuleError(ValueError):
    pass


def parse_rules(text: str | None) -> tuple[Rule, ...]:
    """'train:5%,memory:2%,accuracy:0.01' -> rules with those floors (others keep theirs)."""
    if not text:
        return DEFAULT_RULES
    given: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if name not in RULES_BY_NAME or not sep:
            raise RuleError(f"bad rule {part.strip()!r}: use NAME:N% or accuracy:ABS with NAME in "
                            f"{', '.join(RULES_BY_NAME)}")
        rule = RULES_BY_NAME[name]
        if not rule.absolute and not value.endswith("%"):
            value += "%"  # train:3 means what train:3% means: a relative floor is a percentage
        try:
            v = float(value.rstrip("%")) / (100.0 if value.endswith("%") else 1.0)
        except ValueError:
            form = "an absolute number, e.g. accuracy:0.02" if rule.absolute else f"a percentage, e.g. {name}:3%"
            raise RuleError(f"bad threshold in {part.strip()!r}: {name} takes {form}") from None
        if rule.absolute == value.endswith("%") or v <= 0 or (not rule.absolute and v >= 1):
            kind = "an absolute number (0.02)" if rule.absolute else "a percentage under 100 (3%)"
            raise RuleError(f"{name} takes {kind}, got {value!r}")
        given[name] = v
    return tuple(replace(r, floor=given.get(r.name, r.floor)) for r in DEFAULT_RULES)


def parse_gate(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_GATE
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [n for n in names if n not in RULES_BY_NAME]
    if bad or not names:
        raise RuleError(f"--gate takes metric names from {', '.join(RULES_BY_NAME)}, got {text!r}")
    return names


def value(rule: Rule, rec: dict[str, Any]) -> float | None:
    v = rule.read(Record(rec))
    return None if v is None else float(v)


def readings(rule: Rule, rec: dict[str, Any]) -> list[float]:
    """A process's readings of a rule with samples (each counted step); its one value where the
    record kept no readings; none where it has no value."""
    got = rule.samples(Record(rec)) if rule.samples is not None else None
    if got:
        return got
    v = value(rule, rec)
    return [] if v is None else [v]


@dataclass(frozen=True)
class Finding:
    key: str
    rule: str
    base: float  # pooled base value (median over processes; mean for accuracy)
    head: float
    verdict: Verdict
    why: str  # "slower by 9.8% (95% CI 7.1..12.4%)" and what settled it
    estimate: stats.RatioEstimate | None = None
    more_rounds: int | None = None  # for inconclusive: rounds in all that would likely settle it
    gated: bool = True
    floor: float | None = None  # the rule's floor (relative, or absolute for accuracy)
    alpha: float | None = None  # two-sided error its interval was read at (Holm's share when gated)
    n_max: int | None = None  # rounds its check planned (a sequential design); None: one look

    @property
    def change(self) -> float:
        return (self.head - self.base) if self.rule == "accuracy" else (self.head / self.base - 1 if self.base else 0.0)

    @property
    def rounds(self) -> int | None:
        """Rounds its interval was read from (the deciding look's); None when no interval."""
        return None if self.estimate is None else self.estimate.n_base

    def to_dict(self) -> dict[str, Any]:
        """For --format json: the decision ("verdict" as the table words it; "gate": "pass",
        "regressed" or "inconclusive", what it means for the exit code), its interval (the
        confidence actually used), its rounds, the rounds its check planned and the error it was
        tested at."""
        e = self.estimate
        return {"cell": self.key, "metric": self.rule, "gated": self.gated, "verdict": str(self.verdict),
                "gate": stats.gate_of(self.verdict),
                "base": json_number(self.base), "head": json_number(self.head), "why": self.why,
                "interval": None if e is None else {"ratio": json_number(e.ratio), "lo": json_number(e.lo),
                                                     "hi": json_number(e.hi), "confidence": e.confidence,
                                                     "method": e.method},
                "floor": self.floor, "rounds": self.rounds, "n_max": self.n_max, "alpha": self.alpha,
                "more_rounds": self.more_rounds}


def json_number(v: float | None) -> float | None:
    """A float JSON can carry: an unbounded end (one round) or a missing figure is null."""
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True)
class Sides:
    """One metric of one cell: base and head values (paired: position i of both is one round),
    each side's first process record (the accuracy rule compares their recipes), and the
    sequential design its check ran under (None: the sets are judged in one look)."""

    key: str
    base: list[float]
    head: list[float]
    base_rec: dict[str, Any]
    head_rec: dict[str, Any]
    paired: bool
    design: Design | None = None


def _positive(s: Sides) -> bool:
    # A ratio needs positive figures; a zero or negative one is a figure the worker did not get.
    return not any(v <= 0 for v in s.base + s.head)


def floor_words(floor: float) -> str:
    return f"floor {100 * floor:g}%"


def _judge_rounds(rule: Rule, s: Sides, alpha: float) -> Finding | None:
    if not _positive(s):
        return None
    design = s.design if s.paired else None
    if design is not None:
        est, d = stats.sequential_decide(s.base, s.head, design, alpha, rule.floor, rule.higher_is_better,
                                         rule.words)
    else:
        est = stats.ratio_ci(s.base, s.head, s.paired, 1.0 - alpha)
        d = stats.decide(est, rule.floor, rule.higher_is_better, rule.words)
    why = f"{d.text}, {floor_words(rule.floor)}"
    if d.verdict == Verdict.INCONCLUSIVE:
        why += f"; needs ~{d.more_rounds} rounds ({max(0, d.more_rounds - len(s.base))} more)" if d.more_rounds \
            else "; more rounds may not settle it"
    return Finding(s.key, rule.name, float(np.median(s.base)), float(np.median(s.head)), d.verdict, why, est,
                   d.more_rounds, floor=rule.floor, alpha=alpha, n_max=None if design is None else design.n_max)


def _range_verdict(rule: Rule, worst: float, best: float) -> Verdict:
    """The one-sided rule on a range of head/base ratios whose ends disagree past the tolerance:
    a pass when its worst end is within the floor, regressed when even its best end is past it."""
    lo_b, hi_b = stats.band(rule.floor)
    worst_ok = worst >= lo_b if rule.higher_is_better else worst <= hi_b
    best_bad = best < lo_b if rule.higher_is_better else best > hi_b
    return Verdict.NOT_REGRESSED if worst_ok else Verdict.REGRESSED if best_bad else Verdict.INCONCLUSIVE


def _point_verdict(rule: Rule, ratio: float) -> Verdict:
    """A deterministic head/base ratio against the band: unchanged inside it, else the direction."""
    lo_b, hi_b = stats.band(rule.floor)
    if lo_b <= ratio <= hi_b:
        return Verdict.UNCHANGED
    worse = ratio < 1 if rule.higher_is_better else ratio > 1
    return Verdict.REGRESSED if worse else Verdict.IMPROVED


def _judge_matched_readings(rule: Rule, s: Sides) -> Finding:
    """A deterministic figure read several times a process (counts' steps), each reading matched
    with the other side's: the head/base ratios of matched readings must agree within the rule's
    tolerance (the self-check); past it, the one-sided rule on their range."""
    ratios = [h / b for b, h in zip(s.base, s.head)]
    ratio = float(np.median(ratios))
    b, h = float(np.median(s.base)), float(np.median(s.head))
    spread = (max(ratios) - min(ratios)) / ratio
    if spread > rule.tolerance:
        worst, best = (min(ratios), max(ratios)) if rule.higher_is_better else (max(ratios), min(ratios))
        verdict = _range_verdict(rule, worst, best)
        where = {Verdict.NOT_REGRESSED: "every one within the floor", Verdict.REGRESSED: "every one past the floor",
                 Verdict.INCONCLUSIVE: "they straddle the floor"}[verdict]
        return Finding(s.key, rule.name, b, h, verdict,
                       f"not deterministic: head/base of matched readings range {min(ratios):.4f}..{max(ratios):.4f}, "
                       f"{100 * spread:.2g}% apart (tolerance {100 * rule.tolerance:g}%); {where} "
                       f"({floor_words(rule.floor)})", floor=rule.floor)
    word, pct = stats.change_words(ratio, rule.words)
    text = (f"{word} by {pct:.2f}% (deterministic figure: {len(ratios)} matched readings agree within "
            f"{100 * spread:.3f}%, {floor_words(rule.floor)})")
    return Finding(s.key, rule.name, b, h, _point_verdict(rule, ratio), text, floor=rule.floor)


def _judge_deterministic(rule: Rule, s: Sides, alpha: float) -> Finding | None:
    if not _positive(s):
        return None
    if rule.samples is not None and s.paired and len(s.base) == len(s.head):
        return _judge_matched_readings(rule, s)
    b, h = float(np.median(s.base)), float(np.median(s.head))
    spread = max((max(v) - min(v)) / float(np.median(v)) for v in (s.base, s.head))
    if spread > rule.tolerance:
        # Not deterministic: the one-sided rule on the range of head/base over all process pairs.
        worst, best = (min(s.head) / max(s.base), max(s.head) / min(s.base)) if rule.higher_is_better else \
            (max(s.head) / min(s.base), min(s.head) / max(s.base))
        verdict = _range_verdict(rule, worst, best)
        where = {Verdict.NOT_REGRESSED: "every head process within the floor of every base one",
                 Verdict.REGRESSED: "every head process past the floor of every base one",
                 Verdict.INCONCLUSIVE: "head and base processes straddle the floor"}[verdict]
        return Finding(s.key, rule.name, b, h, verdict,
                       f"not deterministic: {'readings' if rule.samples else 'processes'} of one side differ by "
                       f"{100 * spread:.2g}% (tolerance {100 * rule.tolerance:g}%); {where} "
                       f"({floor_words(rule.floor)})", floor=rule.floor)
    ratio = h / b
    word, pct = stats.change_words(ratio, rule.words)
    text = f"{word} by {pct:.2f}% (deterministic figure, {floor_words(rule.floor)})"
    return Finding(s.key, rule.name, b, h, _point_verdict(rule, ratio), text, floor=rule.floor)


def _judge_accuracy(rule: Rule, s: Sides, alpha: float) -> Finding | None:
    base_rec, head_rec = Record(s.base_rec), Record(s.head_rec)
    same_recipe = base_rec.train_spec == head_rec.train_spec and base_rec.model_spec == head_rec.model_spec
    if not same_recipe:
        return None  # different training: accuracy says nothing about the change
    key, base, head = s.key, s.base, s.head
    b, h = float(np.mean(base)), float(np.mean(head))
    diff = h - b
    dropout = base_rec.dropout > 0
    if diff < -rule.floor:
        return Finding(key, rule.name, b, h, Verdict.REGRESSED,
                       f"{100 * diff:+.2f} points (tolerance {100 * rule.floor:.1f})", floor=rule.floor)
    if not dropout and (set(base) != set(head)):
        return Finding(key, rule.name, b, h, Verdict.CHANGED,
                       f"{100 * diff:+.2f} points: same steps, seed and no dropout should give identical accuracy, "
                       f"so the numerics changed", floor=rule.floor)
    if dropout and diff > rule.floor:
        return Finding(key, rule.name, b, h, Verdict.IMPROVED, f"{100 * diff:+.2f} points", floor=rule.floor)
    return Finding(key, rule.name, b, h, Verdict.UNCHANGED,
                   "identical" if diff == 0 else f"{100 * diff:+.2f} points (within {100 * rule.floor:.1f})",
                   floor=rule.floor)


# Each takes the two-sided error its interval is read at; only the rounds rule has an interval.
_JUDGES: dict[Judge, Callable[[Rule, Sides, float], Finding | None]] = {
    Judge.ROUNDS: _judge_rounds, Judge.DETERMINISTIC: _judge_deterministic, Judge.ACCURACY: _judge_accuracy}


def judge(rule: Rule, sides: Sides, alpha: float) -> Finding | None:
    """One metric of one cell, its interval (if any) read at two-sided error `alpha`."""
    return _JUDGES[rule.kind](rule, sides, alpha)


def sides_of(key: str, rule: Rule, base_procs: dict[int, dict[str, Any]], head_procs: dict[int, dict[str, Any]],
             paired: bool, design: Design | None = None) -> Sides | None:
    """One metric of one cell from its process records (round -> record, ok ones); None when a
    side has no value for it."""
    if rule.samples is not None:
        # Readings (counts: each counted step), matched by round and position where the rounds
        # pair: step i of a base process against step i of the head process of its round.
        # Consecutive steps need not cost the same (torch cnn_tutorial b16: 1.2% apart, the same
        # in every process); what a deterministic count guarantees is that matched steps agree.
        pairs = []
        for r in sorted(set(base_procs) & set(head_procs)) if paired else []:
            pairs += list(zip(readings(rule, base_procs[r]), readings(rule, head_procs[r])))
        if pairs:
            base, head = [b for b, _ in pairs], [h for _, h in pairs]
        else:
            paired = False
            base = [v for r in base_procs.values() for v in readings(rule, r)]
            head = [v for r in head_procs.values() for v in readings(rule, r)]
    elif paired:
        rounds = sorted(set(base_procs) & set(head_procs))
        pairs = [(value(rule, base_procs[r]), value(rule, head_procs[r])) for r in rounds]
        pairs = [(b, h) for b, h in pairs if b is not None and h is not None]
        base, head = [b for b, _ in pairs], [h for _, h in pairs]
    else:
        base = [v for v in (value(rule, r) for r in base_procs.values()) if v is not None]
        head = [v for v in (value(rule, r) for r in head_procs.values()) if v is not None]
    if not base or not head:
        return None
    return Sides(key, base, head, next(iter(base_procs.values())), next(iter(head_procs.values())), paired, design)


# ---------------------------------------------------------------------------------------------
# Apples and oranges: what must match for two sets to be compared at all.
def _fingerprint(recs: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"machine": set(), "framework versions": set(), "threads": set(),
                                "precision": set(), "device": set()}
    for r in recs:
        env = r.get("env") or {}
        if env.get("machine_id"):
            out["machine"].add(f"{env.get('machine_id')} ({env.get('cpu_model')}, {env.get('cpu_logical_cores')} cores"
                               + (f", {', '.join(env['gpus'])}" if env.get("gpus") else "") + ")")
        if r.get("status") == Status.OK and r.get("framework_versions"):
            fv = r["framework_versions"]
            out["framework versions"].add(f"{r['framework']}: " + ", ".join(f"{k} {v}" for k, v in sorted(fv.items())))
        out["threads"].add(str(r.get("threads")))
        out["precision"].add(str(r.get("precision")))
        out["device"].add(str(r.get("device")))
    return out


def env_names(recs: Iterable[dict[str, Any]]) -> set[tuple[str, str | None]]:
    """The package environments a set's cells ran in: (name, pin hash); ("", None) = the harness's
    own interpreter; check --base-env own's base: ("", its pin hash)."""
    return {(env_name(r), (r.get("environment") or {}).get("pin_hash")) for r in recs}


def package_differences(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[str]:
    """One line per pair of package environments whose packages differ between the sets: an
    environment of one name on both sides (its pins may have moved, or check --base-env own), else
    the environments only one side has. Packages only one side lists are named where both sides
    list every package they installed (an environment's pins), not just those a worker imported."""
    def versions(recs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, str], bool]]:
        out: dict[str, tuple[dict[str, str], bool]] = {}
        for r in recs:
            if r.get("status") == Status.OK:
                got, complete = out.get(env_name(r), ({}, True))
                got.update(package_versions(r))
                out[env_name(r)] = (got, complete and bool((r.get("environment") or {}).get("pins")))
        return out

    vb, vh = versions(base), versions(head)
    only_b, only_h = sorted(set(vb) - set(vh)), sorted(set(vh) - set(vb))
    pairs = [(e, e) for e in sorted(set(vb) & set(vh))] + [(eb, eh) for eb in only_b for eh in only_h]
    lines = []
    for eb, eh in pairs:
        (b, cb), (h, ch) = vb[eb], vh[eh]
        changed = [f"{p} {b[p]} -> {h[p]}" for p in sorted(set(b) & set(h)) if b[p] != h[p]]
        parts = [", ".join(changed)] if changed else []
        if cb and ch:
            parts += [f"only in {side}: {', '.join(f'{p} {v[p]}' for p in sorted(set(v) - set(w)))}"
                      for side, v, w in (("base", b, h), ("head", h, b)) if set(v) - set(w)]
        if parts or eb != eh:
            lines.append(f"packages differ between environment {eb or '(harness)'} (base) and {eh or '(harness)'} "
                         f"(head): " + ("; ".join(parts) if parts else "none"))
    return lines


def align_envs(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The head records, those of a cell that differs from one base cell only in its package
    environment given that base cell's key, so two runs of one cell in two environments (the
    version A/B) join. Only a one-to-one match is joined: within one run, cells of several
    environments keep their own keys."""
    bkeys, hkeys = {r["key"] for r in base}, {r["key"] for r in head}
    by_b: dict[str, set[str]] = {}
    by_h: dict[str, set[str]] = {}
    for keys, other, by in ((bkeys, hkeys, by_b), (hkeys, bkeys, by_h)):
        for k in keys - other:
            by.setdefault(key_without_env(k), set()).add(k)
    rename = {next(iter(hs)): next(iter(by_b[s])) for s, hs in by_h.items()
              if len(hs) == 1 and len(by_b.get(s, ())) == 1}
    return [{**r, "key": rename[r["key"]]} if r["key"] in rename else r for r in head] if rename else head


def differences(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> list[str]:
    """One line per way the two sets differ in machine, framework versions, threads,
    precision, device or the node a cell ran on (empty: comparable). Framework versions that
    differ because the sets ran in different package environments are what such a comparison
    asks about: package_differences says them, not this."""
    fb, fh = _fingerprint(base), _fingerprint(head)
    out = []
    envs_differ = env_names(base) != env_names(head)
    for what in fb:
        if what == "framework versions" and envs_differ:
            continue
        if what == "framework versions":
            # compare per framework: a set with only torch is not "different" from one with torch + tf
            by_fw_b = {s.split(":")[0]: s for s in fb[what]}
            by_fw_h = {s.split(":")[0]: s for s in fh[what]}
            for fw in sorted(set(by_fw_b) & set(by_fw_h)):
                if by_fw_b[fw] != by_fw_h[fw]:
                    out.append(f"framework versions differ: base {by_fw_b[fw]!r}, head {by_fw_h[fw]!r}")
        elif fb[what] and fh[what] and fb[what] != fh[what]:
            out.append(f"{what} differs: base {', '.join(sorted(fb[what]))}; head {', '.join(sorted(fh[what]))}")
    # A Ray run spreads cells over nodes: a cell measured on one host in base and another in
    # head compares the machines, whatever the two sets' machine lists say.
    hb, hh = node_hosts(base), node_hosts(head)
    moved = [k for k in hb if hh.get(k) and hb[k] and hb[k] != hh[k]]
    if moved:
        k = moved[0]
        out.append(f"node differs in {len(moved)} cell(s), e.g. {k}: base on {', '.join(sorted(hb[k]))}, "
                   f"head on {', '.join(sorted(hh[k]))}")
    elif not any(line.startswith("machine differs") for line in out):
        # One machine id is not one host: what decides the speed must agree too (bench.decide.hosts).
        host = hosts.mismatch(base, head)
        if host:
            out.append(host)
    return out


def _where(base: set[str], head: set[str]) -> str:
    b, h = ", ".join(sorted(base)) or "?", ", ".join(sorted(head)) or "?"
    return b if b == h else f"{b} / {h}"


def node_hosts(recs: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """key -> the hosts its processes ran on (records of a Ray run say; a local run's do not)."""
    out: dict[str, set[str]] = {}
    for r in recs:
        host = node_of(r)
        if host:
            out.setdefault(r["key"], set()).add(host)
    return out


@dataclass(frozen=True)
class LeftOut:
    """A metric of joined cells that no verdict covers because the sides do not both have it
    (tensor memory measured in one run only, accuracy trained in one only...): said under the
    table rather than dropped without a word. `measured_in`: "base", "head" or "both" (both have
    figures that cannot be compared, e.g. accuracy after different training)."""

    metric: str
    measured_in: str
    why: str
    cells: tuple[str, ...]

    def words(self) -> str:
        where = "on both sides but not comparable" if self.measured_in == "both" else f"in {self.measured_in} only"
        cells = ", ".join(self.cells) if len(self.cells) <= 2 else f"{len(self.cells)} cells"
        return f"{self.metric} ({cells}) measured {where}: {self.why}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "measured_in": self.measured_in, "why": self.why, "cells": list(self.cells)}


def _missing_why(rule: Rule, lacks: dict[str, Any], other: str) -> str:
    """Why a metric one side has is not judged: what the other side measured instead, where it says."""
    if rule.name == "memory" and lacks.get("device") == "cpu" and Record(lacks).rss_delta_train_bytes is not None:
        # Older records (and a framework that cannot see its tensors) carry RSS growth only.
        return f"{other}'s records have RSS growth only, not tensor memory: a different figure (compared as rss)"
    if rule.name == "accuracy":
        return f"{other} did not train to a test accuracy"
    if rule.name == "counts":
        return f"{other} was made without --counts"
    return f"{other}'s records have no {rule.name} figure"


def _left_out_of(rule: Rule, key: str, bq: dict[int, dict[str, Any]], hq: dict[int, dict[str, Any]],
                 s: Sides | None) -> tuple[str, str, str, str] | None:
    """(metric, measured_in, why, key) when a metric of a joined cell gets no verdict, else None."""
    def first_with(procs: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
        return next((r for r in procs.values() if value(rule, r) is not None), None)

    if s is None:
        b, h = first_with(bq), first_with(hq)
        if b is None and h is None:
            return None  # neither side measured it: nothing was dropped
        if b is not None and h is not None:
            return rule.name, "both", "no round has it on both sides", key
        side, other = ("base", "head") if h is None else ("head", "base")
        lacks = next(iter((hq if h is None else bq).values()))
        return rule.name, side, _missing_why(rule, lacks, other), key
    if rule.kind == Judge.ACCURACY:
        return rule.name, "both", "the sides trained different recipes (steps, seed or model), so accuracy says " \
                                  "nothing about the change", key
    return rule.name, "both", "a zero or negative figure on one side (not measured)", key


def _group_left_out(rows: list[tuple[str, str, str, str]]) -> tuple[LeftOut, ...]:
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for metric, side, why, key in rows:
        grouped.setdefault((metric, side, why), []).append(key)
    return tuple(LeftOut(m, side, why, tuple(keys)) for (m, side, why), keys in grouped.items())


def left_out_words(cmp: "Comparison") -> str | None:
    """One line for under the table: the metrics compared on one side only and why, or None."""
    if not cmp.left_out:
        return None
    return "not compared: " + "; ".join(x.words() for x in cmp.left_out)


@dataclass(frozen=True)
class Comparison:
    findings: tuple[Finding, ...]
    only_base: tuple[str, ...]
    only_head: tuple[str, ...]
    not_ok: tuple[str, ...]  # joined cells where one side has no ok process
    paired: bool
    rounds: dict[str, tuple[int, int]]  # key -> (base processes, head processes) judged
    # "model NAME differs between the sets: FIELD: base X, head Y": one name, two networks. The
    # cell key's digest covers the spec, so their cells cannot join; they are left out of
    # only_base/only_head, which would otherwise list them without saying why.
    model_diffs: tuple[str, ...] = ()
    nodes: dict[str, str] = field(default_factory=dict)  # key -> where it ran, when records say (Ray runs)
    alpha: float = 1.0 - stats.DEFAULT_CONFIDENCE  # the check's two-sided error over its gated rounds decisions
    family: int = 0  # m: the gated rounds decisions Holm shared alpha over
    designs: dict[str, Design] = field(default_factory=dict)  # key -> its check's sequential plan
    # key -> paired rounds left out because either side was timed while other programs used its
    # CPUs (bench.workers.contention): a busy machine slows one side of a round, not the code.
    dropped_busy: dict[str, int] = field(default_factory=dict)
    # Metrics of joined cells that got no verdict because one side lacks them (LeftOut).
    left_out: tuple[LeftOut, ...] = ()
    # The sets ran in different package environments: which packages differ (package_differences).
    packages: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == Verdict.REGRESSED and f.gated]

    @property
    def inconclusive(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == Verdict.INCONCLUSIVE and f.gated]

    def exit_code(self) -> int:
        """0 pass (no gated metric regressed past its floor, each ruled out), 1 regressed, 3
        inconclusive (gated metrics only)."""
        return 1 if self.regressions else 3 if self.inconclusive else 0

    @property
    def more_rounds(self) -> int | None:
        """The most rounds beyond those measured an inconclusive gated metric would likely need;
        None when one cannot tell (more rounds may not settle it) or nothing is inconclusive."""
        judged = [f for f in self.inconclusive if f.estimate is not None]
        if not judged or any(f.more_rounds is None for f in judged):
            return None
        return max(0, max(f.more_rounds - (f.rounds or 0) for f in judged))

    def to_dict(self) -> dict[str, Any]:
        """Every decision and the overall one, for bots and dashboards (--format json)."""
        code = self.exit_code()
        return {"result": RESULT_WORDS[code], "exit_code": code, "paired": self.paired, "alpha": self.alpha,
                "holm_family": self.family, "more_rounds": self.more_rounds,
                "sequential": {k: d.to_dict() for k, d in self.designs.items()},
                "decisions": [f.to_dict() for f in self.findings],
                "processes": {k: list(v) for k, v in self.rounds.items()}, "only_base": list(self.only_base),
                "only_head": list(self.only_head), "not_ok": list(self.not_ok), "model_diffs": list(self.model_diffs),
                "nodes": dict(self.nodes), "dropped_busy_rounds": dict(self.dropped_busy),
                "not_compared": [x.to_dict() for x in self.left_out], "packages": list(self.packages)}


# "ok" is exit 0, a pass: every gated metric's regression past its floor is ruled out (the word is
# kept from before the gate was one-sided, for the bots that read it).
RESULT_WORDS = {0: "ok", 1: "regressed", 3: "inconclusive"}


def ok_rounds(records: Iterable[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """key -> round -> record of each cell's full-measurement processes that ended ok."""
    grouped = group_rounds(records, "full")
    return {k: {r: rec for r, rec in v.items() if rec.get("status") == Status.OK} for k, v in grouped.items()}


def busy_rounds(base: dict[str, dict[int, dict[str, Any]]],
                head: dict[str, dict[int, dict[str, Any]]]) -> dict[str, set[int]]:
    """key -> the paired rounds in which either side was timed while other programs used its CPUs.
    Their timings are left out (memory, RSS and accuracy do not depend on the load, and stay). Whether a
    round is left out depends on the other programs' CPU time, not on the figures, so the rounds
    kept stay a fair sample; a duet round's other side is pinned to other CPUs, so the harness's
    own processes never count as foreign."""
    return {key: {r for side in (base[key], head[key]) for r, rec in side.items() if Record(rec).busy_while_timing}
            for key in set(base) & set(head)}


def _all_busy(key: str, rule: Rule, dropped: int) -> Finding:
    return Finding(key, rule.name, math.nan, math.nan, Verdict.INCONCLUSIVE,
                   f"all {dropped} paired round(s) were timed while other programs used the CPUs (machine busy): "
                   f"no timing left to judge", floor=rule.floor)


def compare(base: list[dict[str, Any]], head: list[dict[str, Any]], rules: tuple[Rule, ...] = DEFAULT_RULES,
            paired: bool = False, gate: tuple[str, ...] = DEFAULT_GATE,
            confidence: float = stats.DEFAULT_CONFIDENCE, designs: dict[str, Design] | None = None,
            family: int = 0) -> Comparison:
    """Compare two sets of process records (any number of rounds per cell).

    `designs`: key -> the sequential plan a paired cell's rounds were added under (check
    --against); its rounds metrics then read the repeated interval of the look that decided them.
    Without one a cell is judged in one look, at the fixed-sample interval.
    The gated rounds decisions share the two-sided error 1 - `confidence` by Holm's step-down:
    the family a check's exit code answers for. Deterministic memory and the accuracy rule are
    outside it: identical code gives identical figures there, so no noise can raise a false
    alarm to correct for. Advisory rounds metrics decide no exit code: they keep the whole
    error. `family`: the family's size when cells are still to come (the check's loop)."""
    head = align_envs(base, head)
    bk, hk = ok_rounds(base), ok_rounds(head)
    busy = busy_rounds(bk, hk) if paired else {}
    all_b = {r["key"] for r in base}
    all_h = {r["key"] for r in head}
    diffs = model_differences(base, head)
    explained = {r["key"] for r in (*base, *head) if _model_name(r) in diffs}
    designs = designs or {}
    alpha = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in binary
    items: list[tuple[Rule, Sides]] = []
    not_ok, counts, all_busy = [], {}, []
    missing: list[tuple[str, str, str, str]] = []
    hb, hh = node_hosts(base), node_hosts(head)
    for key in [k for k in dict.fromkeys(r["key"] for r in base) if k in all_h]:
        bp, hp = bk.get(key, {}), hk.get(key, {})
        if not bp or not hp:
            not_ok.append(key)
            continue
        counts[key] = (len(bp), len(hp))
        for rule in rules:
            drop = busy.get(key, set()) if rule.timed else set()
            bq, hq = ({r: v for r, v in procs.items() if r not in drop} for procs in (bp, hp))
            if not bq or not hq:
                all_busy.append(_all_busy(key, rule, len(drop)))
                continue
            s = sides_of(key, rule, bq, hq, paired, designs.get(key))
            if s is not None:
                items.append((rule, s))
            elif (gap := _left_out_of(rule, key, bq, hq, None)) is not None:
                missing.append(gap)
    held = [i for i, (rule, _) in enumerate(items) if rule.kind == Judge.ROUNDS and rule.name in gate]
    judged: dict[int, Finding | None] = {i: judge(rule, s, alpha) for i, (rule, s) in enumerate(items)
                                         if i not in held}
    shared = stats.holm([partial(judge, *items[i]) for i in held],
                        lambda f: f is not None and f.verdict == Verdict.REGRESSED, alpha, family)
    judged.update((i, f) for i, (f, _) in zip(held, shared))
    findings = [replace(f, gated=items[i][0].name in gate) for i, f in sorted(judged.items()) if f is not None]
    missing += [_left_out_of(items[i][0], items[i][1].key, {}, {}, items[i][1]) for i, f in sorted(judged.items())
                if f is None]
    findings += [replace(f, gated=f.rule in gate) for f in all_busy]
    return Comparison(tuple(findings),
                      tuple(k for k in dict.fromkeys(r["key"] for r in base) if k not in all_h and k not in explained),
                      tuple(k for k in dict.fromkeys(r["key"] for r in head) if k not in all_b and k not in explained),
                      tuple(not_ok), paired, counts,
                      tuple(f"model {n} differs between the sets: {d}" for n, d in diffs.items()),
                      {k: _where(hb.get(k, set()), hh.get(k, set())) for k in counts if k in hb or k in hh},
                      alpha, max(family, len(held)), {k: d for k, d in designs.items() if k in counts},
                      {k: len(v) for k, v in busy.items() if v}, _group_left_out(missing),
                      tuple(package_differences(base, head)))


def _model_name(rec: dict[str, Any]) -> str | None:
    return Record(rec).spec_name or rec.get("model")


# A spec with every field at its default: older records lack fields added since (variable_length).
_SPEC_DEFAULTS = {k: v for k, v in ModelSpec("_").to_dict().items() if k != "name"}


def model_differences(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> dict[str, str]:
    """Model names both sets use for different networks (a config's own model redefined):
    name -> "hidden: base 64, head 128; ..."."""
    def specs(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in recs:
            m = Record(r).model_spec
            if isinstance(m, dict) and m.get("name"):
                out.setdefault(m["name"], {**_SPEC_DEFAULTS, **m})
        return out

    b, h = specs(base), specs(head)
    out = {}
    for name in (n for n in b if n in h and b[n] != h[n]):
        out[name] = "; ".join(f"{k}: base {b[name].get(k)}, head {h[name].get(k)}"
                              for k in dict.fromkeys([*b[name], *h[name]]) if b[name].get(k) != h[name].get(k))
    return out


def settled(findings: Iterable[Finding]) -> bool:
    """True when every gated metric is decided in the gate's sense, a pass or regressed (an
    adaptive check may stop): a pass need not wait for the interval to rule out a speed-up too."""
    return all(stats.gate_of(f.verdict) != "inconclusive" for f in findings if f.gated)


def summary_markdown(cmp: Comparison) -> str:
    """The comparison as a markdown table (for $GITHUB_STEP_SUMMARY and published tables)."""
    lines = ["| cell | metric | base | head | change | verdict |", "|---|---|---:|---:|---|---|"]
    for f in cmp.findings:
        lines.append(f"| {f.key} | {f.rule}{'' if f.gated else ' (advisory)'} | {format_value(f.rule, f.base)} | "
                     f"{format_value(f.rule, f.head)} | {f.why} | **{f.verdict}** |")
    lines.append("")
    if (gap := left_out_words(cmp)) is not None:
        lines += [gap, ""]
    lines.append(overall_words(cmp, "**"))
    return "\n".join(lines) + "\n"


def overall_words(cmp: Comparison, strong: str = "") -> str:
    """The overall decision in one line: "REGRESSED: 1 gated metric(s)", or for an inconclusive
    check "inconclusive: needs ~N more rounds" (what a CI summary should say)."""
    code = cmp.exit_code()
    family = f" (Holm over {cmp.family} gated rounds decisions)" if cmp.family > 1 else ""
    if code == 1:
        return f"{strong}REGRESSED{strong}: {len(cmp.regressions)} gated metric(s){family}"
    if code == 3:
        more = cmp.more_rounds
        need = f"needs ~{more} more rounds" if more is not None else "more rounds may not settle it"
        return f"{strong}INCONCLUSIVE{strong}: {len(cmp.inconclusive)} gated metric(s) not settled (inconclusive: " \
               f"{need}){family}"
    return f"{strong}PASS{strong}: no gated metric regressed past its floor{family}"


def format_value(rule: str, v: float) -> str:
    """A metric's value as the tables show it: samples/s, MB, accuracy % or instructions per step."""
    if rule in ("memory", "rss"):
        return f"{v / 1e6:,.1f} MB"
    if rule == "accuracy":
        return f"{100 * v:.2f}%"
    if rule == "counts":
        return f"{v / 1e6:,.2f} M instr/step"
    return f"{v:,.0f}/s" if math.isfinite(v) else "-"
