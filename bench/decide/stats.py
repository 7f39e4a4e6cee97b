"""Effect sizes with confidence intervals, and the regressed / unchanged / inconclusive rule.

The unit of independence is the process: each fresh worker process gives one value per metric
(the median of its in-process repeats). Repeats inside one process share its thread placement,
allocator state and whatever noise burst hit it, so they are not independent samples; a test
over them calls identical code "different" (p=0.008 on A/A, measured on this project's CI-sized
machine). Here every sample is one process.

The ratio head/base is estimated on the log scale, where a 10% slowdown and a 10% speed-up are
symmetric and machine-speed drift is multiplicative:
- paired (each round one base and one head process, run side by side on disjoint CPUs in a duet
  round, or back to back A B / B A): a one-sample t interval on the per-round log ratios;
  pairing cancels the machine's noise that both processes of a round share;
- unpaired (two result sets with several rounds each): Welch's t interval on the log values.
Both come from scipy.stats. The t interval keeps its coverage at the few rounds a CI budget
allows (a bootstrap of 3-6 values does not).

The gate is one-sided: a PR gate asks whether a regression past the floor f is ruled out. The
floor is a band symmetric on the log scale, [1/(1+f), 1+f] on the ratio: `--floor train:10%`
means a training step 10% slower (step-time ratio 1.10, throughput ratio 1/1.10 = 0.909), as
users read it, and 10% faster is the same distance the other way. Changes are worded the same
way: "slower by X%" is X = 100 (base/head throughput - 1), the step-time increase. For a metric
where higher is better (throughput) the floor is 1/(1+f); where lower is better (memory), 1+f:
  regressed     the whole interval is past the floor in the metric's bad direction;
  pass          the interval's end on the bad side clears the floor: a regression past it is
                ruled out. The table words it as advice:
    improved      the whole interval is past the band in the good direction;
    unchanged     the whole interval lies inside the band;
    not regressed the rest (an interval such as -2%..+5% at a 3% floor: it cannot rule out a
                  speed-up, and a gate need not);
  inconclusive  anything else: the interval straddles the floor (with an estimate of the rounds
                that would settle it).
A two-sided rule, which needed the whole interval inside the band to pass, left identical code
inconclusive in 92% of the checks replayed on the published rounds (spread 8.3%, 30-round plan);
on the same intervals every "regressed" it gave, this gives too (a pass only ever stops a check
earlier than the two-sided rule would have, at a look where "regressed" was not read).

A check that looks after every round reads each look's interval at the level its repeated
confidence interval needs (bench.decide.sequential, `sequential_decide`), so the stated error holds over
all its looks; two finished sets compared once read the fixed-sample interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Sequence, TypeVar

import numpy as np

from ..records.record import Verdict
from .sequential import Design

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class RatioEstimate:
    """head/base as a ratio with its confidence interval (all three on the ratio scale)."""

    ratio: float
    lo: float
    hi: float
    confidence: float
    n_base: int
    n_head: int
    paired: bool
    sd_log: float  # per-round (paired) or pooled per-process (unpaired) sd of the log values
    method: str

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "lo": self.lo, "hi": self.hi, "confidence": self.confidence,
                "n_base": self.n_base, "n_head": self.n_head, "paired": self.paired, "sd_log": self.sd_log,
                "method": self.method}


def _positive(values: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray([float(v) for v in values], dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{what}: need positive finite values, got {list(values)}")
    return a


def band(floor: float) -> tuple[float, float]:
    """The ratios a relative floor f calls "no change": [1/(1+f), 1+f], symmetric on the log scale."""
    return 1.0 / (1.0 + floor), 1.0 + floor


@lru_cache(maxsize=8192)
def t_multiplier(confidence: float, df: int) -> float:
    """The half-width multiplier of a two-sided `confidence` t interval: t.isf((1 - c) / 2, df),
    which is sequential.t_quantile_for(z, df) when c = sequential.confidence_of(z)."""
    from scipy.stats import t  # local: `bench list` and the worker need no scipy start-up

    return math.inf if confidence >= 1.0 else float(t.isf((1.0 - confidence) / 2.0, df))


def _paired_log(d: np.ndarray, confidence: float) -> RatioEstimate:
    """The one-sample t interval on per-round log ratios d (scipy's ttest_1samp interval, written
    out: the check's replay reads one at every look, and scipy's per-call cost is 20x the sum)."""
    n = len(d)
    est = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else math.inf
    if n < 2:
        lo, hi = -math.inf, math.inf
    elif sd == 0.0:
        lo = hi = est
    else:
        half = t_multiplier(confidence, n - 1) * sd / math.sqrt(n)
        lo, hi = est - half, est + half
    return RatioEstimate(math.exp(est), math.exp(lo), math.exp(hi), confidence, n, n, True, sd,
                         f"paired t interval on per-round log ratios ({n} rounds)")


def ratio_ci(base: Sequence[float], head: Sequence[float], paired: bool,
             confidence: float = DEFAULT_CONFIDENCE) -> RatioEstimate:
    """Estimate head/base with a `confidence` interval. `paired` needs equal lengths, position
    i of both being one round."""
    from scipy import stats  # local: `bench list` and the worker need no scipy start-up

    b, h = np.log(_positive(base, "base")), np.log(_positive(head, "head"))
    if paired:
        if len(b) != len(h):
            raise ValueError(f"paired estimate needs one base and one head value per round ({len(b)} != {len(h)})")
        return _paired_log(h - b, confidence)
    else:
        est = float(h.mean() - b.mean())
        if len(b) < 2 or len(h) < 2:
            sd, lo, hi = math.inf, -math.inf, math.inf
        else:
            sd = float(math.sqrt((b.var(ddof=1) * (len(b) - 1) + h.var(ddof=1) * (len(h) - 1))
                                 / (len(b) + len(h) - 2)))
            if sd == 0.0:
                lo = hi = est
            else:
                ci = stats.ttest_ind(h, b, equal_var=False).confidence_interval(confidence_level=confidence)
                lo, hi = float(ci.low), float(ci.high)
        method = f"Welch t interval on log values ({len(b)} base, {len(h)} head processes)"
    return RatioEstimate(math.exp(est), math.exp(lo), math.exp(hi), confidence, len(b), len(h), paired, sd, method)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict  # regressed | improved | unchanged | not regressed | inconclusive (never changed)
    text: str  # "slower by 9.8% (95% CI 7.1..12.4%)"
    more_rounds: int | None  # rounds that would likely settle an inconclusive verdict; None = can't tell


VERDICTS = (Verdict.REGRESSED, Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.NOT_REGRESSED, Verdict.INCONCLUSIVE)
# The verdicts that pass the gate: a regression past the floor is ruled out (CHANGED: the accuracy
# rule's numerics change within its tolerance).
PASSING = frozenset({Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.NOT_REGRESSED, Verdict.CHANGED})


def gate_of(verdict: Verdict) -> str:
    """What a verdict means for the gate: "regressed", "pass" or "inconclusive"."""
    return "regressed" if verdict == Verdict.REGRESSED else "pass" if verdict in PASSING else "inconclusive"


def verdict_of(est: RatioEstimate, floor: float, higher_is_better: bool) -> Verdict:
    """The one-sided floor rule on an interval (module docstring): regressed when the whole
    interval is past the floor on the bad side, a pass when its bad-side end clears the floor
    (worded improved, unchanged or not regressed), else inconclusive. The band's ends count as
    inside."""
    lo_b, hi_b = band(floor)
    if higher_is_better:  # throughput: a ratio below 1/(1+f) is the regression
        if est.hi < lo_b:
            return Verdict.REGRESSED
        if est.lo < lo_b:
            return Verdict.INCONCLUSIVE  # straddles the floor: a regression past it is not ruled out
        if est.lo > hi_b:
            return Verdict.IMPROVED
        return Verdict.UNCHANGED if est.hi <= hi_b else Verdict.NOT_REGRESSED
    # memory: a ratio above 1 + f is the regression
    if est.lo > hi_b:
        return Verdict.REGRESSED
    if est.hi > hi_b:
        return Verdict.INCONCLUSIVE
    if est.hi < lo_b:
        return Verdict.IMPROVED
    return Verdict.UNCHANGED if est.lo >= lo_b else Verdict.NOT_REGRESSED


def decide(est: RatioEstimate, floor: float, higher_is_better: bool, words: tuple[str, str] = ("faster", "slower"),
           max_rounds: int = 200, target_confidence: float | None = None) -> Decision:
    """Apply the floor rule to an estimate. `floor` is relative (0.03 = 3%); `words` name the
    good and bad directions of a ratio > 1 and < 1 for a higher-is-better metric.
    `target_confidence`: the level a later check's last look would read (for the rounds an
    inconclusive verdict needs; default the estimate's own)."""
    verdict = verdict_of(est, floor, higher_is_better)
    return Decision(verdict, describe(est, words), None if verdict != Verdict.INCONCLUSIVE else
                    rounds_to_decide(est, floor, max_rounds, target_confidence, higher_is_better))


def sequential_decide(base: Sequence[float], head: Sequence[float], design: Design, alpha: float, floor: float,
                      higher_is_better: bool, words: tuple[str, str] = ("faster", "slower"),
                      max_rounds: int = 200) -> tuple[RatioEstimate, Decision]:
    """The check's rule on paired rounds in the order they ran: a look after every round from
    design.min_rounds on, each reading its repeated confidence interval at two-sided error
    `alpha` (bench.decide.sequential); the first look whose interval decides in the gate's sense
    (regressed, or a pass: improved, unchanged or not regressed) settles the metric (the check
    stopped there: a later round cannot undo it), else the last look's, inconclusive.
    Rounds past design.n_max are not read (the check never takes them).
    The check's loop calls this on the rounds so far after every round, and its final table on
    all of them, so both read the same intervals; its error rates are simulated on this very
    function (tests/test_check_rule.py)."""
    b, h = np.log(_positive(base, "base")), np.log(_positive(head, "head"))
    if len(b) != len(h):
        raise ValueError(f"paired estimate needs one base and one head value per round ({len(b)} != {len(h)})")
    # Rounds past the plan have no error left to spend: the plan's last look is the answer.
    d = (h - b)[:design.n_max]
    looks = design.looks(len(d))
    for k, n in enumerate(looks, 1):
        est = _paired_log(d[:n], design.confidence(n, alpha))
        verdict = verdict_of(est, floor, higher_is_better)
        if verdict != Verdict.INCONCLUSIVE:
            break
    est = replace(est, method=f"{est.method}, repeated interval of look {k} of up to "
                              f"{design.n_max - min(design.min_rounds, len(d)) + 1} ({design.spending} spending)")
    # An inconclusive metric's rounds: those whose last look (nearly this plan's last) would settle it.
    return est, decide(est, floor, higher_is_better, words, max_rounds, design.confidence(design.n_max, alpha))


T = TypeVar("T")


def holm(tests: Sequence[Callable[[float], T]], rejected: Callable[[T], bool], alpha: float,
         family: int = 0) -> list[tuple[T, float]]:
    """Holm's step-down over hypotheses each tested by a function of its two-sided error: all at
    alpha / m, then every one not yet rejected again at alpha / (m - rejected so far), until no
    new rejection. `family` (m) may exceed len(tests): hypotheses still to be tested count as
    not rejected (a check judging its first cells before it has run the rest). For
    group-sequential tests the recycled level also reads the looks already taken (Maurer and
    Bretz, Stat Biopharm Res 2013): each test is given the level and replays its looks.
    Returns each test's result with the error it was tested at (rejected ones: where they fell)."""
    if not tests:
        return []
    m = max(family, len(tests))
    out: list[tuple[T, float] | None] = [None] * len(tests)
    done: set[int] = set()
    while True:
        level = alpha / (m - len(done))
        new = set()
        for i, test in enumerate(tests):
            if i not in done:
                out[i] = (test(level), level)
                if rejected(out[i][0]):
                    new.add(i)
        done |= new
        if not new or len(done) == len(tests):
            return [o for o in out if o is not None]


def change_words(ratio: float, words: tuple[str, str] = ("faster", "slower")) -> tuple[str, float]:
    """(word, percent): a ratio as its users read a change, the larger over the smaller minus one:
    throughput 0.909 is "slower by 10.0%" (the step takes 10% longer), 1.10 "faster by 10.0%"."""
    up, down = words
    return (up, 100 * (ratio - 1)) if ratio >= 1.0 else (down, 100 * (1 / ratio - 1))


def confidence_words(confidence: float) -> str:
    """"95% CI", "99.74% CI": the level with the digits that tell it from 100%."""
    if confidence >= 1.0:
        return "100% CI"
    digits = max(0, math.ceil(-math.log10(100 * (1 - confidence))) + 1)
    return f"{100 * confidence:.{digits}f}".rstrip("0").rstrip(".") + "% CI"


def describe(est: RatioEstimate, words: tuple[str, str] = ("faster", "slower")) -> str:
    """'slower by 9.8% (95% CI 7.1..12.4%)': the change in the direction of the point estimate,
    with the interval in the same terms (for a ratio below 1, base/head - 1: the step-time
    increase of a throughput ratio); signed when the interval straddles no change."""
    conf = confidence_words(est.confidence)
    word, pct = change_words(est.ratio, words)
    if not math.isfinite(est.lo) or not math.isfinite(est.hi) or est.lo <= 0:
        return f"{'no change' if est.ratio == 1 else word} {pct:.1f}% ({conf} unbounded: one round)"
    if est.ratio >= 1.0:
        return f"{word} by {pct:.1f}% ({conf} {100 * (est.lo - 1):+.1f}..{100 * (est.hi - 1):+.1f}%)"
    near, far = 100 * (1 / est.hi - 1), 100 * (1 / est.lo - 1)
    return f"{word} by {pct:.1f}% ({conf} {near:.1f}..{far:.1f}%)" if est.hi <= 1.0 else \
        f"{word} by {pct:.1f}% ({conf} {near:+.1f}..{far:+.1f}%)"


@lru_cache(maxsize=256)
def _t_multipliers(confidence: float, max_rounds: int) -> np.ndarray:
    from scipy import stats

    n = np.arange(2, max_rounds + 1)
    return stats.t.isf((1 - confidence) / 2, n - 1) / np.sqrt(n)


def rounds_to_decide(est: RatioEstimate, floor: float, max_rounds: int = 200,
                     confidence: float | None = None, higher_is_better: bool = True) -> int | None:
    """How many rounds in all would make the interval (at `confidence`, default the estimate's)
    clear the floor on the metric's bad side (1/(1+f) for higher-is-better metrics, 1+f for
    lower-is-better ones: the one boundary the one-sided gate reads), if the point estimate and
    spread stayed as they are. None when the estimate sits on the floor (no number of rounds
    settles it) or the spread is unknown."""
    if not math.isfinite(est.sd_log) or est.sd_log <= 0:
        return None
    e = math.log(est.ratio)
    lo_b, hi_b = (math.log(b) for b in band(floor))
    # Distance from the point estimate to the floor the interval must clear.
    room = abs(e - (lo_b if higher_is_better else hi_b))
    if room <= 1e-12:
        return None
    conf = est.confidence if confidence is None else confidence
    if conf >= 1.0:
        return None
    sd = est.sd_log if est.paired else est.sd_log * math.sqrt(2)
    clear = np.nonzero(_t_multipliers(conf, max_rounds) * sd < room)[0]
    return int(clear[0]) + 2 if clear.size else None


def power_detectable(sd_log: float, rounds: int, floor: float, confidence: float = DEFAULT_CONFIDENCE,
                     power: float = 0.95) -> float:
    """Smallest slowdown (in step time, 0.1 = a step 10% slower) whose interval clears the floor
    with probability `power` after `rounds` paired rounds with per-round log-ratio sd `sd_log`,
    the interval read at `confidence` (normal model)."""
    from scipy import stats

    if rounds < 2 or not math.isfinite(sd_log):
        return math.inf
    half = stats.t.ppf(1 - (1 - confidence) / 2, rounds - 1) * sd_log / math.sqrt(rounds)
    shift = stats.norm.ppf(power) * sd_log / math.sqrt(rounds)
    # The interval's upper end (on the log scale) must fall below -log(1 + floor) with prob `power`.
    need = math.log(1 + floor) + half + shift
    return math.exp(need) - 1
