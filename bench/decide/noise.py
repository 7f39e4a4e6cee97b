"""A/A noise (`check --calibrate`): how much identical code varies between processes on this
machine, per cell and metric, and the smallest slowdown a check could detect in the rounds its
time budget allows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import compare, sequential, stats


@dataclass(frozen=True)
class MetricNoise:
    key: str
    rule: compare.Rule
    process_sd_log: float  # spread of per-process medians (both sides pooled), sd of their logs
    estimate: stats.RatioEstimate  # side 2 / side 1 over the paired rounds: an A/A interval
    # The smallest slowdown (in step time) whose interval clears the rule's floor with 95%
    # probability in `rounds` rounds (normal model); inf when none can.
    detectable: float


def last_look_confidence(rounds: int, confidence: float, min_rounds: int | None) -> float:
    """The level a check planned for `rounds` rounds, looking after each from `min_rounds`, reads
    its last look at (its repeated interval: a little wider than the fixed-sample one); without
    min_rounds, `confidence` itself (one look)."""
    if min_rounds is None:
        return confidence
    return sequential.Design(rounds, min(min_rounds, rounds)).confidence(rounds, round(1.0 - confidence, 12))


def aa_noise(a: list[dict[str, Any]], b: list[dict[str, Any]], rules: tuple[compare.Rule, ...], rounds: int,
             confidence: float, min_rounds: int | None = None) -> list[MetricNoise]:
    """Every cell of `a` (in its order) x every rule judged over rounds, from the rounds both
    sides measured ok; a metric with fewer than two such rounds is left out. `detectable` is for
    a check of `rounds` rounds whose looks start at `min_rounds` (None: one look)."""
    level = last_look_confidence(rounds, confidence, min_rounds)
    ok_a, ok_b = compare.ok_rounds(a), compare.ok_rounds(b)
    out = []
    for key in dict.fromkeys(r["key"] for r in a):
        ga, gb = ok_a.get(key, {}), ok_b.get(key, {})
        for rule in rules:
            if rule.kind != compare.Judge.ROUNDS:
                continue
            rr = sorted(set(ga) & set(gb))
            pairs = [(compare.value(rule, ga[r]), compare.value(rule, gb[r])) for r in rr]
            pairs = [(x, y) for x, y in pairs if x and y]
            if len(pairs) < 2:
                continue
            xs = [x for x, _ in pairs] + [y for _, y in pairs]
            proc_sd = float(np.std(np.log(xs), ddof=1))
            est = stats.ratio_ci([x for x, _ in pairs], [y for _, y in pairs], True, confidence)
            det = stats.power_detectable(est.sd_log, rounds, rule.floor, level)
            out.append(MetricNoise(key, rule, proc_sd, est, det))
    return out
