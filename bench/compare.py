"""Joins two result sets and decides, per cell and metric: regressed, improved or unchanged.

A change counts only when it is both large (past the metric's threshold, in the metric's own
direction) and, where repeats exist, significant: a two-sided Mann-Whitney U test over the raw
per-repeat values (as asv does), because a median alone hides a regression when the spread is
high. With too few repeats for the test to ever reach significance, the fallback asks that the
two sets of repeats do not overlap at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from .report import _get

ALPHA = 0.05


@dataclass(frozen=True)
class Rule:
    """`metric` is a dotted path in a record; `higher_is_better` gives the direction;
    `threshold` is relative (0.1 = 10%) unless `absolute`."""

    name: str
    metric: str
    higher_is_better: bool
    threshold: float
    absolute: bool = False
    raw: str | None = None  # dotted path of the per-repeat values, for the significance test


DEFAULT_RULES = (
    Rule("train", "metrics.train_samples_per_s.median", True, 0.10, raw="metrics.train_samples_per_s.values"),
    Rule("infer", "metrics.infer_samples_per_s.median", True, 0.15, raw="metrics.infer_samples_per_s.values"),
    Rule("memory", "analytic.measured_memory_bytes", False, 0.10),
    Rule("accuracy", "metrics.test_accuracy", True, 0.02, absolute=True),
)
RULES_BY_NAME = {r.name: r for r in DEFAULT_RULES}


class RuleError(ValueError):
    pass


def parse_rules(text: str | None) -> tuple[Rule, ...]:
    """'train:5%,memory:20%,accuracy:0.01' -> rules with those thresholds (others keep theirs)."""
    if not text:
        return DEFAULT_RULES
    given: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if name not in RULES_BY_NAME or not sep:
            raise RuleError(f"bad rule {part.strip()!r}: use NAME:N% or accuracy:ABS with NAME in "
                            f"{', '.join(RULES_BY_NAME)}")
        rule = RULES_BY_NAME[name]
        try:
            v = float(value.rstrip("%")) / (100.0 if value.endswith("%") else 1.0)
        except ValueError:
            raise RuleError(f"bad threshold in {part.strip()!r}") from None
        if rule.absolute == value.endswith("%") or v <= 0:
            kind = "an absolute number (0.02)" if rule.absolute else "a percentage (10%)"
            raise RuleError(f"{name} takes {kind}, got {value!r}")
        given[name] = v
    return tuple(Rule(r.name, r.metric, r.higher_is_better, given.get(r.name, r.threshold), r.absolute, r.raw)
                 for r in DEFAULT_RULES)


# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of arrangements giving each U value (exact null distribution, no ties)."""
    # f[i][j][u] counted by recursion on the largest element: it comes from x (adds j) or y.
    table: dict[tuple[int, int], list[int]] = {}

    def dist(i: int, j: int) -> list[int]:
        if (i, j) in table:
            return table[(i, j)]
        if i == 0 or j == 0:
            res = [1]
        else:
            a, b = dist(i - 1, j), dist(i, j - 1)
            res = [0] * (i * j + 1)
            for u, c in enumerate(a):
                res[u + j] += c
            for u, c in enumerate(b):
                res[u] += c
        table[(i, j)] = res
        return res

    return tuple(dist(n, m))


def mann_whitney_p(x: Iterable[float], y: Iterable[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (exact for small samples without ties,
    normal approximation with tie correction otherwise)."""
    x, y = list(x), list(y)
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return 1.0
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    ties = len(set(x) | set(y)) < n + m
    if not ties and n + m <= 30:
        counts = _u_counts(n, m)
        total = math.comb(n + m, n)
        lo = min(u, n * m - u)
        p = 2 * sum(counts[: int(lo) + 1]) / total
        return min(1.0, p)
    mu = n * m / 2
    allv = sorted(x + y)
    tie_term = 0.0
    i = 0
    while i < len(allv):
        j = i
        while j < len(allv) and allv[j] == allv[i]:
            j += 1
        t = j - i
        tie_term += t ** 3 - t
        i = j
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - tie_term / ((n + m) * (n + m - 1))))
    if sigma == 0:
        return 1.0
    z = (abs(u - mu) - 0.5) / sigma
    return math.erfc(max(z, 0.0) / math.sqrt(2))


def min_p(n: int, m: int) -> float:
    """The smallest p the exact test can give for these sample sizes."""
    return 2 / math.comb(n + m, n)


@dataclass(frozen=True)
class Finding:
    key: str
    rule: str
    base: float
    head: float
    change: float  # relative (head/base - 1) or absolute difference for absolute rules
    p_value: float | None
    verdict: str  # regressed | improved | unchanged
    why: str


def judge(key: str, rule: Rule, base_rec: dict[str, Any], head_rec: dict[str, Any]) -> Finding | None:
    a, b = _get(base_rec, rule.metric), _get(head_rec, rule.metric)
    if a is None or b is None:
        return None
    change = (b - a) if rule.absolute else ((b / a - 1.0) if a else 0.0)
    worse = change < 0 if rule.higher_is_better else change > 0
    large = abs(change) > rule.threshold
    p = None
    significant = True
    xs, ys = (_get(base_rec, rule.raw), _get(head_rec, rule.raw)) if rule.raw else (None, None)
    if xs and ys:
        p = mann_whitney_p(xs, ys)
        if min_p(len(xs), len(ys)) < ALPHA:
            significant = p < ALPHA
        else:  # too few repeats for the test: demand that the repeats do not overlap
            significant = max(xs) < min(ys) or max(ys) < min(xs)
    if large and significant:
        verdict = "regressed" if worse else "improved"
    else:
        verdict = "unchanged"
    unit = "" if rule.absolute else "%"
    shown = change if rule.absolute else 100 * change
    why = f"{shown:+.3g}{unit} (threshold {rule.threshold if rule.absolute else 100 * rule.threshold:.3g}{unit}"
    why += f", p={p:.3g})" if p is not None else ")"
    return Finding(key, rule.name, float(a), float(b), change, p, verdict, why)


@dataclass(frozen=True)
class Comparison:
    findings: tuple[Finding, ...]
    only_base: tuple[str, ...]
    only_head: tuple[str, ...]
    not_ok: tuple[str, ...]  # joined cells where one side is not `ok`
    machines_differ: bool

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regressed"]


def compare(base: list[dict[str, Any]], head: list[dict[str, Any]], rules: tuple[Rule, ...] = DEFAULT_RULES
            ) -> Comparison:
    bk, hk = {r["key"]: r for r in base}, {r["key"]: r for r in head}
    findings, not_ok = [], []
    for key in [k for k in bk if k in hk]:
        a, b = bk[key], hk[key]
        if a.get("status") != "ok" or b.get("status") != "ok":
            not_ok.append(key)
            continue
        for rule in rules:
            f = judge(key, rule, a, b)
            if f is not None:
                findings.append(f)
    machines = {_get(r, "env.machine_id") for r in list(base) + list(head)} - {None}
    return Comparison(tuple(findings), tuple(k for k in bk if k not in hk), tuple(k for k in hk if k not in bk),
                      tuple(not_ok), len(machines) > 1)
