"""A/A noise (`check --calibrate`): how much identical code varies between processes on this
machine, per cell and metric, and the smallest slowdown a check could detect in the rounds its
time budget allows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import compare, stats


@dataclass(frozen=True)
class MetricNoise:
    key: str
    rule: compare.Rule
    process_sd_log: float  # spread of per-process medians (both sides pooled), sd of their logs
    estimate: stats.RatioEstimate  # side 2 / side 1 over the paired rounds: an A/A interval
    # The smallest slowdown whose interval clears the rule's floor with 95% probability in
    # `rounds` rounds (normal model); inf when none can.
    detectable: float


def aa_noise(a: list[dict[str, Any]], b: list[dict[str, Any]], rules: tuple[compare.Rule, ...], rounds: int,
             confidence: float) -> list[MetricNoise]:
    """Every cell of `a` (in its order) x every rule judged over rounds, from the rounds both
    sides measured ok; a metric with fewer than two such rounds is left out."""
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
            det = stats.power_detectable(est.sd_log, rounds, rule.floor, confidence)
            out.append(MetricNoise(key, rule, proc_sd, est, det))
    return out
