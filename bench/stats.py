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

A decision needs the whole interval on one side of a small effect floor:
  regressed    the whole interval is past the floor in the metric's bad direction;
  improved     the whole interval is past the floor in the good direction;
  unchanged    the whole interval lies inside +- the floor;
  inconclusive anything else (with an estimate of the rounds that would settle it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .record import Verdict

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


def ratio_ci(base: Sequence[float], head: Sequence[float], paired: bool,
             confidence: float = DEFAULT_CONFIDENCE) -> RatioEstimate:
    """Estimate head/base with a `confidence` interval. `paired` needs equal lengths, position
    i of both being one round."""
    from scipy import stats  # local: `bench list` and the worker need no scipy start-up

    b, h = np.log(_positive(base, "base")), np.log(_positive(head, "head"))
    if paired:
        if len(b) != len(h):
            raise ValueError(f"paired estimate needs one base and one head value per round ({len(b)} != {len(h)})")
        d = h - b
        est = float(d.mean())
        sd = float(d.std(ddof=1)) if len(d) > 1 else math.inf
        if len(d) < 2:
            lo, hi = -math.inf, math.inf
        elif sd == 0.0:
            lo = hi = est
        else:
            ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=confidence)
            lo, hi = float(ci.low), float(ci.high)
        method = f"paired t interval on per-round log ratios ({len(d)} rounds)"
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
    verdict: Verdict  # regressed | improved | unchanged | inconclusive (never changed)
    text: str  # "slower by 9.8% (95% CI 7.1..12.4%)"
    more_rounds: int | None  # rounds that would likely settle an inconclusive verdict; None = can't tell


VERDICTS = (Verdict.REGRESSED, Verdict.IMPROVED, Verdict.UNCHANGED, Verdict.INCONCLUSIVE)


def decide(est: RatioEstimate, floor: float, higher_is_better: bool, words: tuple[str, str] = ("faster", "slower"),
           max_rounds: int = 200) -> Decision:
    """Apply the floor rule to an estimate. `floor` is relative (0.03 = 3%); `words` name the
    good and bad directions of a ratio > 1 and < 1 for a higher-is-better metric."""
    lo_b, hi_b = 1.0 - floor, 1.0 + floor
    bad_low = higher_is_better  # for throughput a ratio < 1 is bad; for memory a ratio > 1 is
    if est.hi < lo_b:
        verdict = Verdict.REGRESSED if bad_low else Verdict.IMPROVED
    elif est.lo > hi_b:
        verdict = Verdict.IMPROVED if bad_low else Verdict.REGRESSED
    elif est.lo >= lo_b and est.hi <= hi_b:
        verdict = Verdict.UNCHANGED
    else:
        verdict = Verdict.INCONCLUSIVE
    return Decision(verdict, describe(est, words), None if verdict != Verdict.INCONCLUSIVE else
                    rounds_to_decide(est, floor, max_rounds))


def describe(est: RatioEstimate, words: tuple[str, str] = ("faster", "slower")) -> str:
    """'slower by 9.8% (95% CI 7.1..12.4%)': the change in the direction of the point estimate,
    with the interval in the same terms."""
    up, down = words
    conf = f"{100 * est.confidence:.0f}% CI"
    if not math.isfinite(est.lo) or not math.isfinite(est.hi):
        return f"{'no change' if est.ratio == 1 else (up if est.ratio > 1 else down)} " \
               f"{abs(est.ratio - 1) * 100:.1f}% ({conf} unbounded: one round)"
    if est.ratio >= 1.0:
        return f"{up} by {100 * (est.ratio - 1):.1f}% ({conf} {100 * (est.lo - 1):+.1f}..{100 * (est.hi - 1):+.1f}%)"
    return f"{down} by {100 * (1 - est.ratio):.1f}% ({conf} {100 * (1 - est.hi):.1f}..{100 * (1 - est.lo):.1f}%)" \
        if est.hi <= 1.0 else \
        f"{down} by {100 * (1 - est.ratio):.1f}% ({conf} {100 * (est.lo - 1):+.1f}..{100 * (est.hi - 1):+.1f}%)"


def rounds_to_decide(est: RatioEstimate, floor: float, max_rounds: int = 200) -> int | None:
    """How many rounds in all would make the interval clear the nearest floor boundary, if the
    point estimate and spread stayed as they are. None when the estimate sits on a boundary
    (no number of rounds settles it) or the spread is unknown."""
    from scipy import stats

    if not math.isfinite(est.sd_log) or est.sd_log <= 0:
        return None
    e = math.log(est.ratio)
    lo_b, hi_b = math.log(1 - floor), math.log(1 + floor)
    # Distance from the point estimate to the boundary the interval must clear.
    if e < lo_b:
        room = lo_b - e
    elif e > hi_b:
        room = e - hi_b
    else:
        room = min(e - lo_b, hi_b - e)
    if room <= 1e-12:
        return None
    z = 1 - (1 - est.confidence) / 2
    sd = est.sd_log if est.paired else est.sd_log * math.sqrt(2)
    for n in range(2, max_rounds + 1):
        if stats.t.ppf(z, n - 1) * sd / math.sqrt(n) < room:
            return n
    return None


def power_detectable(sd_log: float, rounds: int, floor: float, confidence: float = DEFAULT_CONFIDENCE,
                     power: float = 0.95) -> float:
    """Smallest slowdown (relative, 0.1 = 10%) whose interval clears the floor with probability
    `power` after `rounds` paired rounds with per-round log-ratio sd `sd_log` (normal model)."""
    from scipy import stats

    if rounds < 2 or not math.isfinite(sd_log):
        return math.inf
    half = stats.t.ppf(1 - (1 - confidence) / 2, rounds - 1) * sd_log / math.sqrt(rounds)
    shift = stats.norm.ppf(power) * sd_log / math.sqrt(rounds)
    # The interval's upper end (on log scale) must fall below log(1 - floor) with prob `power`.
    need = -math.log(1 - floor) + half + shift
    return 1 - math.exp(-need)
