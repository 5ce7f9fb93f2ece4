"""The probes a family is evaluated at: points s on the simplex, one architecture each.

The thesis's A (uniform), B, C and D (one op role penalised each), and a Das-Dennis lattice
L0, L1, .... Torch-free: a study file's probe names are checked in a process that never
trains (``search_core.family`` evaluates the probes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search_core.ops import op_role
from search_core.placements import das_dennis, lattice_size

# The thesis's probes, as (penalised-op value, other-op value) per penalised role, for its
# two op sets (docs/concepts.md). Rows are renormalised to sum to 1.
_SEED_PROBES = {
    (("conv", 1), ("identity", 1), ("pool", 1)): {
        "conv": (0.70, 0.15), "pool": (0.70, 0.15), "identity": (0.70, 0.15),
    },
    (("conv", 2), ("identity", 1), ("pool", 2)): {
        "conv": (0.38, 0.077), "pool": (0.38, 0.077), "identity": (0.55, 0.11),
    },
}
_PROBE_NAMES = {"conv": "B", "pool": "C", "identity": "D"}


@dataclass(frozen=True)
class Probe:
    name: str
    s: tuple[float, ...]


def seed_probes(ops: Sequence[str]) -> list[Probe]:
    """A (uniform), B (conv penalty), C (pool penalty), D (identity penalty).

    Exactly the thesis's values for its 3- and 5-op sets; for other op sets the penalised ops
    get 5x the value of the others. A probe whose role no op has is left out."""
    roles = [op_role(name) for name in ops]
    signature = tuple(sorted((r, roles.count(r)) for r in set(roles)))
    values = _SEED_PROBES.get(signature, {r: (5.0, 1.0) for r in _PROBE_NAMES})
    probes = [Probe("A", tuple([1.0 / len(ops)] * len(ops)))]
    for role, name in sorted(_PROBE_NAMES.items(), key=lambda item: item[1]):
        if role not in roles:
            continue
        high, low = values[role]
        raw = np.array([high if r == role else low for r in roles])
        probes.append(Probe(name, tuple((raw / raw.sum()).tolist())))
    return probes


def lattice_probes(num_ops: int, divisions: int | None = None) -> list[Probe]:
    """Das-Dennis lattice probes L0, L1, ...; default: the first lattice with >= 12 points."""
    if divisions is None:
        divisions = 1
        while lattice_size(num_ops, divisions) < 12:
            divisions += 1
    return [Probe(f"L{i}", tuple(p.tolist())) for i, p in enumerate(das_dennis(num_ops, divisions))]


def default_probes(ops: Sequence[str]) -> list[Probe]:
    return seed_probes(ops) + lattice_probes(len(ops))
