"""Creep over a history of per-push figures: change points and the cumulative change of the last
N pushes, for the slowdown that no single pull request shows (five PRs each under the check's
floor).

The idea is asv's step detection (airspeed-velocity/asv, asv/step_detect.py: `solve_potts`,
`detect_regressions`): fit the series with a piecewise-constant function by minimizing

    gamma * (number of jumps) + sum |y - x|

(the L1 Potts functional, solved exactly by dynamic programming, each segment at its median),
then read regressions off the fitted levels, never off single raw points. Two departures, both
stated:
- gamma comes from the series' own noise (the median absolute difference of consecutive points,
  a robust estimate of sigma that one step or a ramp's few jumps barely move) times PENALTY, not
  from asv's information-criterion search over gamma; floored at NOISE_FLOOR_REL of the level, so
  a deterministic series (instruction counts) still has a finite penalty.
- Two flags, each against one floor (a relative change, worse-is-positive):
  * step: the fitted level's last jump, if it lies in the last `window` pushes, passes the floor
    and the segments' own scatter (asv's `threshold_step = max(err, best_err, threshold * v)`);
  * cumulative: the fitted level at the latest push against the level `window` pushes earlier
    passes the floor, however many small steps or however smooth a ramp made it.
A false alarm needs a spurious change point past the floor: on a flat series of Gaussian noise
with sd 1/3 of the floor it is rare (the rate is measured by seeded simulation in
tests/test_trend.py and quoted in docs/ci.md).
"""
from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass
from statistics import median
from typing import Sequence

PENALTY = 4.0  # gamma = PENALTY * sigma: a single point must move > 4 sigma to become its own segment
NOISE_FLOOR_REL = 1e-4  # sigma never below 0.01% of the level: counts agree to 0.008% between processes
SIGMA_PER_MEDIAN_ABS_DIFF = 1.0 / (0.6745 * math.sqrt(2.0))  # Gaussian: median |y_i - y_i-1| = 0.954 sigma
DEFAULT_WINDOW = 10  # pushes the cumulative rule looks back
DEFAULT_FLOOR = 0.03  # the check's train floor: a creep that one PR of that size would have failed
MAX_POINTS = 60  # the fit is O(n^3) in pure Python; the latest 60 pushes are plenty for a window of 10


@dataclass(frozen=True)
class Segment:
    start: int  # first push (index into the series), inclusive
    end: int  # exclusive
    level: float  # the segment's median
    err: float  # mean |y - level| over the segment (asv's l1 error estimate)


@dataclass(frozen=True)
class Trend:
    """One series judged: its fitted levels and what was flagged."""
    n_points: int
    segments: tuple[Segment, ...]
    step_pct: float | None  # the last jump's change, worse positive (None: no jump in the window)
    step_at: int | None  # index of the first push after that jump
    cumulative_pct: float  # the latest fitted level against the level `window` pushes back, worse positive
    cumulative_from: int  # index of that earlier push
    floor_pct: float
    window: int

    @property
    def step_flagged(self) -> bool:
        return self.step_pct is not None and _past(self.step_pct, self.floor_pct)

    @property
    def cumulative_flagged(self) -> bool:
        return _past(self.cumulative_pct, self.floor_pct)

    @property
    def flagged(self) -> bool:
        return self.step_flagged or self.cumulative_flagged


def _past(change_pct: float, floor_pct: float) -> bool:
    # A change at the floor passes it (3.0% at a 3% floor is flagged); 1e-9 absorbs float ratios.
    return change_pct >= floor_pct - 1e-9


def noise_sigma(values: Sequence[float]) -> float:
    """A robust sigma of the series' point-to-point noise, never below NOISE_FLOOR_REL of its level."""
    level = abs(median(values)) if values else 0.0
    diffs = [abs(b - a) for a, b in zip(values, values[1:])]
    est = median(diffs) * SIGMA_PER_MEDIAN_ABS_DIFF if diffs else 0.0
    return max(est, NOISE_FLOOR_REL * level, 1e-300)


def _l1_costs(values: Sequence[float]) -> list[list[tuple[float, float]]]:
    """cost[l][r - l] = (median of values[l..r], sum |y - median|) for every l <= r."""
    n = len(values)
    out: list[list[tuple[float, float]]] = []
    for left in range(n):
        window: list[float] = []
        row = []
        for r in range(left, n):
            insort(window, values[r])
            m = len(window)
            mid = window[m // 2] if m % 2 else 0.5 * (window[m // 2 - 1] + window[m // 2])
            row.append((mid, sum(abs(v - mid) for v in window)))
        out.append(row)
    return out


def segments(values: Sequence[float], gamma: float) -> tuple[Segment, ...]:
    """The exact minimizer of gamma * jumps + sum |y - x| over piecewise-constant x (asv's
    solve_potts with p = 1, min_size 1): Bellman's recursion over the last segment's left edge."""
    n = len(values)
    if n == 0:
        return ()
    cost = _l1_costs(values)
    best = [0.0] * (n + 1)  # best[r]: the optimum over values[:r], without the first segment's gamma
    left_of = [0] * (n + 1)
    best[0] = -gamma
    for r in range(1, n + 1):
        best[r] = math.inf
        for left in range(r):
            b = best[left] + gamma + cost[left][r - 1 - left][1]
            if b <= best[r]:  # ties: the later left edge (the shorter last segment), as asv's `<=`
                best[r], left_of[r] = b, left
    out = []
    r = n
    while r > 0:
        left = left_of[r]
        level, dist = cost[left][r - 1 - left]
        out.append(Segment(left, r, level, dist / (r - left)))
        r = left
    return tuple(reversed(out))


def worse_pct(before: float, after: float, bigger_is_better: bool) -> float:
    """The change from `before` to `after` in percent, positive when it is worse."""
    if before == 0 or after == 0:
        return math.inf if before != after else 0.0
    ratio = before / after if bigger_is_better else after / before
    return (ratio - 1.0) * 100.0


def judge(values: Sequence[float], bigger_is_better: bool = False, floor_pct: float = DEFAULT_FLOOR * 100,
          window: int = DEFAULT_WINDOW) -> Trend:
    """Fit the series (its latest MAX_POINTS pushes) and flag a step or a cumulative change past
    `floor_pct` within the last `window` pushes. Indices in the result are into `values`."""
    if not values:
        raise ValueError("an empty series has no trend")
    if window < 1:
        raise ValueError("the window must be at least one push")
    if any(not math.isfinite(v) for v in values):
        raise ValueError("a series value is not a finite number")
    offset = max(0, len(values) - MAX_POINTS)
    ys = list(values[offset:])
    fit = segments(ys, PENALTY * noise_sigma(ys))
    fit = tuple(Segment(s.start + offset, s.end + offset, s.level, s.err) for s in fit)
    n = len(values)
    last = fit[-1]
    step_pct = step_at = None
    if len(fit) > 1 and last.start >= n - window:
        prev = fit[-2]
        change = worse_pct(prev.level, last.level, bigger_is_better)
        # asv's threshold_step: a jump inside the segments' own scatter is not a step
        scatter_pct = max(prev.err, last.err) / abs(prev.level) * 100.0 if prev.level else 0.0
        if abs(change) > scatter_pct:
            step_pct, step_at = change, last.start
    start = max(offset, n - 1 - window)
    level_then = next(s.level for s in fit if s.start <= start < s.end)
    cumulative = worse_pct(level_then, last.level, bigger_is_better)
    return Trend(n, fit, step_pct, step_at, cumulative, start, floor_pct, window)
