"""What a framework's "default" variant runs on CPU, per zoo model: the fastest variant measured.

Framework-free, so planning, tables and tests read it without importing a framework. The maps
come from benchmarks/variants (every variant x the run --all zoo, 3 fresh processes each,
round-robin), published in results/published/cpu-2core-2026-12-01-variants.md; `pick_default`
is the rule that turned those measurements into them, and benchmarks/variants/table.py applies
it again to any new measurement and says where a map would change.

JAX has one default form for every model (its variants are scan forms measured against it);
torch and TF choose per model.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

# Measured on the 2-core development CPU (AMD EPYC, threads=2, batch 128). TF: xla vs graph,
# 2026-11-24, quick profile (lstm128 5,955 vs 6,941 samples/s; lstm512 800 vs 618; bilstm512 378
# vs 351; lstm3x256 492 vs 462; cnn_tutorial 979 vs 1,820; cnn_small 6,481 vs 13,329), on a host
# with ~1.5x today's sgemm rate. torch: eager vs torch.compile vs
# channels_last, and TF again, 2026-12-01, two runs (results/published/
# cpu-2core-2026-12-01-variants.md; ci profile, then quick, 3 processes per cell): a default
# changed only where both runs agreed. cnn_small: torch channels_last 1.96x and 1.78x eager, TF
# xla 1.27x and 1.25x graph. Kept where the runs disagreed: torch cnn_tutorial (channels_last
# 1.19x, then 0.93x) and TF lstm128 (xla 1.24x, then 0.84x). torch.compile lost everywhere.
CPU_DEFAULT: dict[str, dict[str, str]] = {
    "torch": {"lstm128": "eager", "lstm512": "eager", "bilstm512": "eager", "lstm3x256": "eager",
              "cnn_tutorial": "eager", "cnn_small": "channels_last"},
    "tf": {"lstm128": "graph", "lstm512": "xla", "bilstm512": "xla", "lstm3x256": "xla",
           "cnn_tutorial": "graph", "cnn_small": "xla"},
}
# Models not measured (a user's own, gru128, ...): by family.
CPU_FAMILY_DEFAULT: dict[str, dict[str, str]] = {
    "torch": {"rnn": "eager", "cnn": "eager"},
    "tf": {"rnn": "xla", "cnn": "graph"},
}
# A challenger replaces the incumbent only when its median over processes is this much faster:
# process-to-process spread on this machine is 3-10%, and a default that flips on noise would
# make two runs of the same code disagree on what "default" measured.
SWITCH_MARGIN = 0.05
# Issue 13's goal: each framework's default within 5% of its best variant for every model.
GOAL_WITHIN = 0.05


def cpu_default(framework: str, model: str, family: str) -> str:
    """The variant "default" runs on CPU for this model (torch and TF; JAX: "default")."""
    if framework not in CPU_DEFAULT:
        return "default"
    return CPU_DEFAULT[framework].get(model, CPU_FAMILY_DEFAULT[framework][family])


@dataclass(frozen=True)
class Choice:
    variant: str
    incumbent: str
    best: str  # highest median, whether or not it cleared the margin
    best_over_incumbent: float  # median ratio
    reason: str


def pick_default(samples_per_s: dict[str, list[float]], incumbent: str,
                 margin: float = SWITCH_MARGIN) -> Choice:
    """The default for one model from per-process throughputs of each variant: the variant with
    the highest median, if it beats the incumbent's median by more than `margin`; else the
    incumbent stays. Variants with no samples are ignored; an incumbent with none loses."""
    meds = {v: statistics.median(s) for v, s in samples_per_s.items() if s}
    if not meds:
        raise ValueError("no measured variant")
    best = max(meds, key=lambda v: meds[v])
    if incumbent not in meds:
        return Choice(best, incumbent, best, float("inf"), f"{incumbent} not measured: {best} is fastest")
    ratio = meds[best] / meds[incumbent]
    if best != incumbent and ratio > 1 + margin:
        return Choice(best, incumbent, best, ratio, f"{best} is {ratio - 1:.0%} faster than {incumbent}")
    why = (f"{incumbent} is fastest" if best == incumbent
           else f"{best} is only {ratio - 1:.1%} faster (margin {margin:.0%}): {incumbent} stays")
    return Choice(incumbent, incumbent, best, ratio, why)
