"""Temperature schedules for the Gumbel-Softmax relaxation, registered by name.

A schedule maps progress p in [0, 1] to a temperature between ``t_start`` (p=0) and
``t_end`` (p=1). All of them stay strictly positive when both ends are positive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from search_core.registry import Registry

ScheduleFn = Callable[[float, float, float], float]


@dataclass(frozen=True)
class Schedule:
    """A schedule shape; ``annealing`` ones require ``t_end <= t_start``."""

    fn: ScheduleFn
    annealing: bool = True


SCHEDULES: Registry[Schedule] = Registry("temperature schedule")

SCHEDULES.add("linear", Schedule(lambda a, b, p: a + (b - a) * p))
SCHEDULES.add("exponential", Schedule(lambda a, b, p: a * (b / a) ** p))
SCHEDULES.add("cosine", Schedule(lambda a, b, p: b + (a - b) * (1 + math.cos(math.pi * p)) / 2))
SCHEDULES.add("constant", Schedule(lambda a, b, p: a, annealing=False))


def temperature(name: str, t_start: float, t_end: float, progress: float) -> float:
    """Temperature of schedule ``name`` at ``progress`` (clipped to [0, 1])."""
    p = min(max(progress, 0.0), 1.0)
    return SCHEDULES.get(name).fn(t_start, t_end, p)


def progress(index: int, total: int) -> float:
    """Progress of step/epoch ``index`` of ``total``: 0 at the first, 1 at the last."""
    return index / (total - 1) if total > 1 else 0.0
