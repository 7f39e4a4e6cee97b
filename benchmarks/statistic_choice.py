"""Which interval should the check read on heavy-tailed rounds: the t interval on the mean log
ratio (what it reads), the Hodges-Lehmann estimate with its Wilcoxon signed-rank interval, or a
20% trimmed mean with its Tukey-McLaughlin interval?

A benchmark of the harness itself (issue 26, item 2), run by hand and published; never a test.

Each pool is real rounds (per-round log(head step / base step), from benchmarks/duet_designs.py
or benchmarks/check_power.py pool files), centred on its own median and reflected about zero (each
round also counted with its sign flipped), so it holds this machine's noise, tails as measured,
and nothing else, and every statistic's target is the shift a simulated check adds. A simulated check draws n rounds from a pool with replacement, adds a
known shift, and reads each statistic's two-sided 95% interval once (fixed sample: the spending
function makes the check's last look nearly this interval, and one look compares the statistics
at one error). "Regressed" is the whole interval past the floor. The three are compared at the
same nominal error: how often each says "regressed" when the true slowdown sits exactly at the
floor (should be <= 2.5%) and how often it catches a 10% slowdown.

  python benchmarks/statistic_choice.py DIR [DIR...] [--design sync] [--n 8,12,16] [--md FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=256)
def signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= k) for k = 0..n(n+1)/2 under no shift: the exact Wilcoxon signed-rank distribution
    (counts of rank subsets by sum, by dynamic programming)."""
    m = n * (n + 1) // 2
    counts = np.zeros(m + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0 ** n


def t_interval(d: np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    from scipy.stats import t

    half = t.isf((1 - conf) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def hl_interval(d: np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    """The Hodges-Lehmann interval: order statistics k and M+1-k of the M Walsh averages, k the
    largest with P(T+ <= k-1) <= (1-conf)/2 (exact signed-rank distribution)."""
    n = len(d)
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    cdf = signed_rank_cdf(n)
    k = int(np.searchsorted(cdf, (1 - conf) / 2, side="right"))  # P(T+ <= k-1) <= a/2 < P(T+ <= k)
    k = max(k, 1)
    return walsh[k - 1], walsh[len(walsh) - k]


def trimmed_interval(d: np.ndarray, conf: float = 0.95, gamma: float = 0.2) -> tuple[float, float]:
    """Tukey-McLaughlin: the gamma-trimmed mean +- t(h-1) s_w / ((1 - 2 gamma) sqrt(n)), s_w the
    winsorized sd, h the values left after trimming."""
    from scipy.stats import t, trim_mean

    n = len(d)
    g = int(math.floor(gamma * n))
    s = np.sort(d)
    w = np.clip(s, s[g], s[n - 1 - g])
    h = n - 2 * g
    half = t.isf((1 - conf) / 2, h - 1) * w.std(ddof=1) / ((1 - 2 * gamma) * math.sqrt(n))
    m = trim_mean(d, gamma)
    return m - half, m + half


STATISTICS = {"t (mean)": t_interval, "Hodges-Lehmann": hl_interval, "20% trimmed mean": trimmed_interval}


def pools(dirs: list[str], design: str | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for d in dirs:
        rows = [json.loads(ln) for ln in (Path(d) / "pool.jsonl").read_text().splitlines() if ln.strip()]
        rows = [r for r in rows if not r.get("busy") and (design is None or r.get("design", design) == design)]
        for level in sorted({r["level"] for r in rows}):
            x = np.log([r["base"] / r["head"] for r in rows if r["level"] == level])
            if len(x) >= 6:
                c = x - np.median(x)
                # Reflected about 0: every statistic's target (mean, pseudo-median, trimmed mean) is
                # then exactly the shift added, so a skewed pool cannot favour one of them; the
                # tails stay as heavy as measured.
                out[f"{Path(d).name} {level}%"] = np.concatenate([c, -c])
    return out


def simulate(pool: np.ndarray, n: int, shift: float, floor: float, rng: np.random.Generator,
             draws: int) -> dict[str, float]:
    hits = {name: 0 for name in STATISTICS}
    for _ in range(draws):
        d = rng.choice(pool, n) + shift
        for name, f in STATISTICS.items():
            lo, _ = f(d)
            hits[name] += lo > math.log1p(floor)
    return {k: v / draws for k, v in hits.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--design", default="sync", help="rows of this design only (duet_designs pools)")
    p.add_argument("--n", default="8,12,16", help="rounds per simulated check")
    p.add_argument("--floor-pct", type=float, default=3.0)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--md")
    a = p.parse_args()
    ps = pools(a.dirs, a.design)
    if not ps:
        print("error: no pool with >= 6 quiet rounds", file=sys.stderr)
        return 2
    merged = np.concatenate(list(ps.values()))
    ps["all, merged"] = merged
    rng = np.random.default_rng(0)
    floor = a.floor_pct / 100
    lines = ["Pools (rounds centred on their median and reflected; twice the rounds measured): " + ", ".join(f"{k}: {len(v)} rounds, sd {100 * v.std(ddof=1):.1f}%"
                                                               for k, v in ps.items()), "",
             f"{a.draws} simulated checks per row, rounds drawn with replacement; floor {a.floor_pct:g}%, "
             "two-sided 95% intervals, one look. Cells: share of checks reading \"regressed\".", "",
             "| pool | rounds | true slowdown | " + " | ".join(STATISTICS) + " |",
             "|---|---:|---|" + "---:|" * len(STATISTICS)]
    for name, pool in ps.items():
        for n in (int(x) for x in a.n.split(",")):
            for label, shift in (("0 (A/A)", 0.0), (f"{a.floor_pct:g}% (at the floor)", math.log1p(floor)),
                                 ("10%", math.log1p(0.10))):
                r = simulate(pool, n, shift, floor, rng, a.draws)
                lines.append(f"| {name} | {n} | {label} | " + " | ".join(f"{100 * r[s]:.1f}%" for s in STATISTICS)
                             + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
