"""The RNN-vs-CNN verdict: does the tutorials' claim "an RNN is slower than a CNN on MNIST but
uses less memory" hold? It is tested cell by cell: each recurrent model against the tutorial CNN
measured by the same framework variant, on the same device, at the same batch size, seed and
node, in the same run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..records.record import Record, Status, TextEnum, by_node, env_name, env_suffix, node_of, seed_of

CLAIM_CNN = "cnn_tutorial"
# Within +-5% counts as "the same": RSS and allocator peaks move by a few MB between runs, and a
# claim of "less memory" that rests on 1% would not survive a rerun.
CLAIM_BAND = 0.05
# The speed half of the claim compares two processes' throughput. On the 2-core development
# machine one cell's samples/s moved by up to 48% across three runs of the same code (tf
# cnn_tutorial 602 / 762 / 891), partly whole-run drift that cancels in a ratio; the RNN/CNN
# ratio itself moved by up to 27% (jax lstm512 vs cnn_tutorial: 0.84 / 1.07 / 0.99). So with one
# process per cell a speed ratio inside 1/1.3..1.3 decides nothing. With >= SPEED_ROUNDS timing
# processes per cell the ratio gets a t interval over processes (bench.decide.stats) and the +-5% band.
SINGLE_PROCESS_SPEED_BAND = 0.30
SPEED_ROUNDS = 3


class Speed(TextEnum):
    """The RNN's training speed against the CNN's, where the noise lets it be decided."""
    SLOWER = "slower"
    FASTER = "faster"
    SAME = "same"


@dataclass(frozen=True)
class ClaimRow:
    group: str  # framework:variant device batch
    rnn: str
    speed_ratio: float  # rnn samples/s / cnn samples/s (< 1: RNN slower)
    memory_ratio: float | None  # rnn / cnn of the judged figure (< 1: RNN leaner)
    floor_ratio: float | None = None  # the same ratio of the analytic floors (what physics says)
    memory_source: str = "tensor-level"  # what memory_ratio compares (tensor-level, allocator peak, RSS growth)
    rss_ratio: float | None = None  # rnn / cnn of the median RSS growth, shown beside
    rss_noise: float | None = None  # the larger per-process relative spread of the two RSS figures
    framework: str = ""
    batch_size: int = 0
    speed: Speed | None = None  # None: undecided, inside the process noise
    speed_basis: str = ""  # how `speed` was decided, for the table and the notes

    @property
    def slower(self) -> bool:
        return self.speed == Speed.SLOWER

    @property
    def rss_within_noise(self) -> bool:
        return (self.rss_ratio is not None and self.rss_noise is not None
                and abs(self.rss_ratio - 1.0) <= max(CLAIM_BAND, self.rss_noise))

    @property
    def memory_within_noise(self) -> bool:
        """Judged on RSS (no tensor-level figure): a difference inside the spread says nothing."""
        return self.memory_source == "RSS growth" and self.rss_within_noise

    @property
    def leaner(self) -> bool | None:
        if self.memory_ratio is None or self.memory_within_noise:
            return None
        return self.memory_ratio < 1.0 - CLAIM_BAND

    @property
    def holds(self) -> bool | None:
        # Not leaner: the claim fails whatever the speed, so a noisy speed cannot flip it.
        if self.leaner is None:
            return None
        if not self.leaner:
            return False
        return None if self.speed is None else self.speed == Speed.SLOWER

    @property
    def state(self) -> str:
        if self.memory_ratio is None:
            return "no memory figure"
        if self.memory_within_noise:
            return "same within noise (RSS only, difference inside its spread)"
        if self.holds:
            return "holds (slower, less memory)"
        if self.holds is None:
            return f"undecided: less memory, speed inside the process noise ({self.speed_basis})"
        return f"fails: {_why_not(self)}"


def claim_rows(records: Iterable[dict[str, Any]]) -> list[ClaimRow]:
    ok = [r for r in records if r.get("status") == Status.OK]
    several = by_node(ok)[1]
    # Paired by seed as well: a --seeds run has one comparison per seed, each labelled with it;
    # and by node: a speed ratio across two machines says nothing about the models.
    cnns = {(r["framework"], r["variant"], env_name(r), r["device"], r["batch_size"], seed_of(r), node_of(r)): r
            for r in ok if r["model"] == CLAIM_CNN}
    out = []
    for r in ok:
        rv = Record(r)
        if rv.family != "rnn":
            continue
        seed = seed_of(r)
        gk = (r["framework"], r["variant"], env_name(r), r["device"], r["batch_size"], seed, node_of(r))
        cnn = cnns.get(gk)
        if cnn is None:
            continue
        cv = Record(cnn)
        speed = r["metrics"]["train_samples_per_s"]["median"] / cnn["metrics"]["train_samples_per_s"]["median"]
        m_r, m_c = rv.measured_memory_bytes, cv.measured_memory_bytes
        src_r = rv.measured_memory_source("RSS growth" if r["device"] == "cpu" else "allocator peak")
        src_c = cv.measured_memory_source(src_r)
        same_source = src_r == src_c
        mem = (m_r / m_c) if (m_r and m_c and m_c > 0 and same_source) else None
        f_r, f_c = rv.train_floor_bytes, cv.train_floor_bytes
        floor = (f_r / f_c) if (f_r and f_c) else None
        rss_r, rss_c = rv.rss_delta_train_bytes, cv.rss_delta_train_bytes
        rss = (rss_r / rss_c) if (rss_r and rss_c and rss_c > 0) else None
        spreads = [v for v in (rv.rss_delta_spread, cv.rss_delta_spread) if v is not None]
        noise = max(spreads) if len(spreads) == 2 else None
        where = f" on {node_of(r)}" if several else ""
        group = f"{r['framework']}:{r['variant']}{env_suffix(r)} {r['device']}{where} b{r['batch_size']}" + \
            (f" seed {seed}" if seed else "")
        decided, basis = speed_decision(r, cnn)
        out.append(ClaimRow(group, r["model"], speed, mem, floor, src_r, rss, noise, r["framework"], r["batch_size"],
                            decided, basis))
    return out


def _why_not(x: ClaimRow) -> str:
    # Memory first and alone when it already fails the claim: the speed decision may be noisy,
    # the memory one is not, and the line must read the same run after run.
    if x.leaner is False:
        return "more memory" if x.memory_ratio > 1.0 + CLAIM_BAND else "same memory"
    return "faster" if x.speed == Speed.FASTER else "same speed"


def speed_decision(rnn: dict[str, Any], cnn: dict[str, Any]) -> tuple[Speed | None, str]:
    """Is the RNN slower than the CNN? The process is the unit: with >= SPEED_ROUNDS timing
    processes per cell, a 95% t interval on the ratio (unpaired) against +-CLAIM_BAND; with
    fewer, the ratio itself against the single-process noise band."""
    def per_process(r: dict[str, Any]) -> list[float]:
        m = r["metrics"]["train_samples_per_s"]
        return list(m.get("values") or []) if m.get("per_process") else []

    a, b = per_process(rnn), per_process(cnn)
    if len(a) >= SPEED_ROUNDS and len(b) >= SPEED_ROUNDS:
        from . import stats  # numpy and scipy: loaded only when rounds exist

        est = stats.ratio_ci(b, a, paired=False)
        basis = f"{len(a)}+{len(b)} processes, 95% CI {est.lo:.2f}..{est.hi:.2f}x"
        if est.hi < 1.0 - CLAIM_BAND:
            return Speed.SLOWER, basis
        if est.lo > 1.0 + CLAIM_BAND:
            return Speed.FASTER, basis
        if 1.0 - CLAIM_BAND <= est.lo and est.hi <= 1.0 + CLAIM_BAND:
            return Speed.SAME, basis
        return None, basis
    ratio = rnn["metrics"]["train_samples_per_s"]["median"] / cnn["metrics"]["train_samples_per_s"]["median"]
    basis = f"one process per cell: decided only outside 1/{1 + SINGLE_PROCESS_SPEED_BAND:.1f}..{1 + SINGLE_PROCESS_SPEED_BAND:.1f}x"
    if ratio < 1.0 / (1.0 + SINGLE_PROCESS_SPEED_BAND):
        return Speed.SLOWER, basis
    if ratio > 1.0 + SINGLE_PROCESS_SPEED_BAND:
        return Speed.FASTER, basis
    return None, basis


def verdict_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """The verdict: a headline, then one line per comparison with its decision only. The
    decisions rest on deterministic figures (tensor-level / allocator memory) and on speed
    ratios far from the band, so the same code gives the same lines run after run; the
    measured ratios are in claim_table()."""
    rows = claim_rows(records)
    if not rows:
        return [f"RNN-vs-CNN claim: not tested (needs an RNN and {CLAIM_CNN} measured ok by the same framework, "
                f"device and batch size)"]
    holds = [x for x in rows if x.holds]
    fails = [x for x in rows if x.holds is False]
    sources = sorted({x.memory_source for x in rows})
    head = (f"RNN-vs-CNN claim ('an RNN is slower than {CLAIM_CNN} but uses less memory'; memory: "
            f"{', '.join(sources)}; +-{CLAIM_BAND:.0%} = same): holds in {len(holds)} of {len(rows)} comparisons")
    if holds:
        head += f" ({_by_framework(holds)})"
    if fails:
        head += f"; fails in {len(fails)} ({_by_framework(fails)})"
    noisy = [x for x in rows if x.holds is None]
    if noisy:
        head += f"; undecided in {len(noisy)}"
    lines = [head]
    for x in rows:
        lines.append(f"  {x.rnn:>10} vs {CLAIM_CNN} [{x.group}]: {x.state}")
    return lines


def _by_framework(rows: list[ClaimRow]) -> str:
    by: dict[str, list[str]] = {}
    for x in rows:
        by.setdefault(x.group.split(" ")[0], []).append(x.rnn + (f"@b{x.batch_size}" if len({r.batch_size for r in rows}) > 1 else ""))
    # One name per model: a --seeds run compares each seed, which would repeat every name.
    def names(v: list[str]) -> str:
        return ", ".join(n + (f" (x{v.count(n)})" if v.count(n) > 1 else "") for n in dict.fromkeys(v))

    return "; ".join(f"{g}: {names(v)}" for g, v in by.items())


def claim_table(records: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Rows of the verdict table: the measured ratios behind each decision."""
    out = []
    for x in claim_rows(records):
        rss = "-" if x.rss_ratio is None else f"{x.rss_ratio:.2f}x" + (" (within noise)" if x.rss_within_noise else "")
        out.append([x.rnn, x.group, f"{x.speed_ratio:.2f}x", "-" if x.memory_ratio is None else
                    f"{x.memory_ratio:.2f}x", "-" if x.floor_ratio is None else f"{x.floor_ratio:.2f}x", rss,
                    x.state])
    return out


CLAIM_HEADER = ["rnn", "vs cnn_tutorial at", "speed", "memory (judged)", "analytic floor", "RSS growth", "verdict"]


def flip_points(records: Iterable[dict[str, Any]]) -> list[str]:
    """Where the memory claim changes sides as the batch grows, per framework variant, device
    and RNN: the measured memory ratio crossing 1 between two measured batch sizes."""
    rows = claim_rows(records)
    by: dict[tuple[str, str], list[ClaimRow]] = {}
    for x in rows:
        by.setdefault((x.group.rsplit(" ", 1)[0], x.rnn), []).append(x)
    out = []
    for (grp, rnn), xs in by.items():
        xs = sorted((x for x in xs if x.memory_ratio is not None), key=lambda x: x.batch_size)
        if len(xs) < 2:
            continue
        for a, b in zip(xs, xs[1:]):
            if (a.memory_ratio < 1) != (b.memory_ratio < 1):
                # log-linear interpolation of the ratio in batch size: where it would cross 1.
                la, lb = math.log(a.batch_size), math.log(b.batch_size)
                ra, rb = math.log(a.memory_ratio), math.log(b.memory_ratio)
                cross = math.exp(la + (0 - ra) * (lb - la) / (rb - ra))
                less_below = a.memory_ratio < 1
                out.append(f"{rnn} [{grp}] uses {'less' if less_below else 'more'} memory than {CLAIM_CNN} below "
                           f"batch ~{cross:.0f} and {'more' if less_below else 'less'} above it (measured "
                           f"{a.memory_ratio:.2f}x at b{a.batch_size}, {b.memory_ratio:.2f}x at b{b.batch_size})")
        if all((x.memory_ratio < 1) == (xs[0].memory_ratio < 1) for x in xs):
            out.append(f"{rnn} [{grp}] uses {'less' if xs[0].memory_ratio < 1 else 'more'} memory than {CLAIM_CNN} "
                       f"at every measured batch (b{xs[0].batch_size}..b{xs[-1].batch_size}: "
                       f"{xs[0].memory_ratio:.2f}x..{xs[-1].memory_ratio:.2f}x)")
    return out


def verdict(records: Iterable[dict[str, Any]]) -> str:
    return verdict_lines(records)[0]

