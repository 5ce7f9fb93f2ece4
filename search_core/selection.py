"""Pick a family member for a deployment constraint: the most accurate architecture whose
latency, measured on this machine, fits a budget.

The search runs over s, not only over the probes: a fine simplex lattice plus Dirichlet
draws, each mapped to its architecture by the hypernetwork (cheap), deduplicated. With a
latency table the prediction discards architectures far over budget before measuring;
every remaining architecture is measured end to end, and only those measured under the
budget are evaluated for accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from search_core.errors import ConfigError
from search_core.family import hard_accuracy, info_layout
from search_core.genotype import Genotype
from search_core.latency import LatencyTable
from search_core.placements import das_dennis
from search_core.probes import default_probes
from search_core.timing import Timing, TimingSettings, measure_networks

if TYPE_CHECKING:
    from search_core.data import DataSplits
    from search_core.result import SearchResult

PREFILTER_MARGIN = 1.25  # measure what the table predicts within 25 % of the budget


@dataclass(frozen=True)
class Candidate:
    s: tuple[float, ...]
    genotype: Genotype
    latency: Timing | None = None
    predicted_ms: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen member and what the search over s saw on the way."""

    best: Candidate | None
    budget_ms: float
    s_vectors: int
    architectures: int
    measured: int
    under_budget: int
    fastest: Candidate | None  # the fastest measured architecture (for the error message)


def parse_latency(text: str) -> float:
    """'2ms', '1.5 ms', '500us', '0.002s' or a bare number of ms -> milliseconds."""
    units = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
    raw = text.strip().lower()
    for unit in ("ms", "us", "µs", "s"):
        if raw.endswith(unit):
            number, scale = raw[: -len(unit)].strip(), units[unit]
            break
    else:
        number, scale = raw, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise ConfigError(f"latency budget: got {text!r}; expected e.g. 2ms, 500us or 0.002s") \
            from None
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"latency budget: got {text!r}; need a positive duration")
    return value


def candidate_s(num_ops: int, draws: int = 256, seed: int = 0) -> list[tuple[float, ...]]:
    """A fine Das-Dennis lattice and ``draws`` Dirichlet(1) points."""
    divisions = max(2, 12 if num_ops <= 3 else 24 // num_ops)
    points = [tuple(p.tolist()) for p in das_dennis(num_ops, divisions)]
    rng = np.random.default_rng(seed)
    points += [tuple(p.tolist()) for p in rng.dirichlet(np.ones(num_ops), size=draws)]
    return points


def distinct_architectures(result: SearchResult, points: list[tuple[float, ...]]) -> list[
    Candidate
]:
    """One candidate per distinct architecture, with the first s that produced it."""
    seen: dict[Genotype, Candidate] = {}
    for s in points:
        genotype = result.genotype(s)
        seen.setdefault(genotype, Candidate(s, genotype))
    return list(seen.values())


def _ms(candidate: Candidate) -> float:
    return candidate.latency.median_ms if candidate.latency is not None else float("inf")


def select_under_budget(
    result: SearchResult,
    data: DataSplits,
    budget_ms: float,
    settings: TimingSettings,
    table: LatencyTable | None = None,
    batch: int = 1,
    seed: int = 0,
) -> Selection:
    """The most accurate architecture of the family measured under ``budget_ms``."""
    space, info = result.config.space, result.data_info
    layout = info_layout(space, info)
    points = [p.s for p in default_probes(space.ops)] + candidate_s(space.num_ops, seed=seed)
    candidates = distinct_architectures(result, points)
    if table is not None:
        candidates = [replace(c, predicted_ms=table.predict(c.genotype, layout, batch))
                      for c in candidates]
        kept = [c for c in candidates if c.predicted_ms <= budget_ms * PREFILTER_MARGIN]
        fastest_predicted = min(candidates, key=lambda c: c.predicted_ms or 0.0)
        to_measure = kept or [fastest_predicted]
    else:
        to_measure = candidates
    timings = measure_networks([c.genotype for c in to_measure], layout, batch, settings)
    measured = [replace(c, latency=t) for c, t in zip(to_measure, timings)]
    under = [c for c in measured if _ms(c) <= budget_ms]
    scored = [replace(c, accuracy=hard_accuracy(result.supernet, c.genotype.choice(space), data))
              for c in under]
    best = max(scored, key=lambda c: (c.accuracy, -_ms(c)), default=None)
    fastest = min(measured, key=_ms)
    return Selection(best, budget_ms, len(points), len(candidates), len(measured), len(under),
                     fastest)
