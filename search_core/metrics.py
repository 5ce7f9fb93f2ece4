"""Family-level metrics in plain numpy: Pareto front, 2-D hypervolume, rank correlation.

No torch here, so reports can import this without the training stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_front(accuracy: Sequence[float], complexity: Sequence[float]) -> list[int]:
    """Indices of non-dominated points (maximise accuracy, minimise complexity), sorted by
    complexity; of identical points only the first is kept."""
    acc, cx = np.asarray(accuracy, float), np.asarray(complexity, float)
    front: list[int] = []
    seen: set[tuple[float, float]] = set()
    for i in np.lexsort((-acc, cx)):
        dominated = np.any((acc >= acc[i]) & (cx <= cx[i]) & ((acc > acc[i]) | (cx < cx[i])))
        key = (float(acc[i]), float(cx[i]))
        if not dominated and key not in seen:
            front.append(int(i))
            seen.add(key)
    return front


def hypervolume_2d(
    accuracy: Sequence[float],
    complexity: Sequence[float],
    reference: tuple[float, float],
) -> float:
    """Area dominated by the points inside the box [0, cx_ref] x [acc_ref, 1], divided by
    the box area: 1 for a zero-cost perfect model, 0 when no point beats the reference.

    ``reference`` = (acc_ref, cx_ref): the worst accuracy and largest complexity counted.
    """
    acc_ref, cx_ref = reference
    if cx_ref <= 0 or acc_ref >= 1:
        raise ValueError(f"hypervolume reference {reference}: need cx_ref > 0, acc_ref < 1")
    acc, cx = np.asarray(accuracy, float), np.asarray(complexity, float)
    inside = (acc > acc_ref) & (cx < cx_ref)
    acc, cx = acc[inside], np.maximum(cx[inside], 0.0)
    area, best = 0.0, acc_ref
    order = np.argsort(cx, kind="stable")
    edges = np.append(cx[order], cx_ref)
    for n, i in enumerate(order):
        best = max(best, acc[i])
        area += (edges[n + 1] - edges[n]) * (best - acc_ref)
    return float(area / (cx_ref * (1 - acc_ref)))


def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks starting at 1, ties getting their average rank."""
    x = np.asarray(values, float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    start = 0
    while start < len(x):
        stop = start
        while stop + 1 < len(x) and sorted_x[stop + 1] == sorted_x[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])
