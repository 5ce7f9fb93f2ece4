"""Placement strategies for the hypernetwork's reference points on the simplex.

Each placement maps (number of ops k, number of points M or None, seeded generator) to an
(M, k) array whose rows lie on the simplex. ``learned`` starts from a lattice and is then
trained, projected back onto the simplex after every step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from search_core.errors import ConfigError
from search_core.registry import Registry

PlaceFn = Callable[[int, "int | None", np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Placement:
    place: PlaceFn
    trainable: bool = False


PLACEMENTS: Registry[Placement] = Registry("reference-point placement")


def vertices(k: int, m: int | None, rng: np.random.Generator) -> np.ndarray:
    """The k simplex vertices and the centroid (M = k + 1)."""
    if m not in (None, k + 1):
        raise ConfigError(
            f"hypernet.num_refs: placement 'vertices' has k+1={k + 1} points, got {m}; "
            "use placement 'lattice' or 'dirichlet' for other counts"
        )
    return np.vstack([np.eye(k), np.full((1, k), 1.0 / k)])


def das_dennis(k: int, divisions: int) -> np.ndarray:
    """Das-Dennis lattice: all points with coordinates in {0, 1/H, ..., 1} summing to 1."""
    points = [
        np.diff([-1, *bars, divisions + k - 1]) - 1
        for bars in itertools.combinations(range(divisions + k - 1), k - 1)
    ]
    return np.asarray(points, dtype=np.float64).reshape(-1, k) / divisions


def lattice_size(k: int, divisions: int) -> int:
    return math.comb(divisions + k - 1, k - 1)


def lattice(k: int, m: int | None, rng: np.random.Generator) -> np.ndarray:
    """Das-Dennis lattice; for an M between lattice sizes, M points of the next finer
    lattice chosen by farthest-point selection (vertices first, deterministic)."""
    if m is None:
        return das_dennis(k, 2)
    divisions = 1
    while lattice_size(k, divisions) < m:
        divisions += 1
    return farthest_points(das_dennis(k, divisions), m)


def farthest_points(points: np.ndarray, m: int) -> np.ndarray:
    """Greedy farthest-point subset of size m, starting from the first point."""
    chosen = [0]
    dist = np.linalg.norm(points - points[0], axis=1)
    while len(chosen) < m:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return points[sorted(chosen)]


def dirichlet(k: int, m: int | None, rng: np.random.Generator) -> np.ndarray:
    """M seeded draws from Dirichlet(1) (default M = k + 1)."""
    return rng.dirichlet(np.ones(k), size=m or k + 1)


def learned_init(k: int, m: int | None, rng: np.random.Generator) -> np.ndarray:
    """Initial positions of learned points: vertices + centroid, or a lattice subset."""
    return vertices(k, None, rng) if m in (None, k + 1) else lattice(k, m, rng)


PLACEMENTS.add("vertices", Placement(vertices))
PLACEMENTS.add("lattice", Placement(lattice))
PLACEMENTS.add("dirichlet", Placement(dirichlet))
PLACEMENTS.add("learned", Placement(learned_init, trainable=True))


def place(name: str, k: int, m: int | None, seed: int) -> np.ndarray:
    """Reference points (M, k) for placement ``name``."""
    return PLACEMENTS.get(name).place(k, m, np.random.default_rng(seed))
