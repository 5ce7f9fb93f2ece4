"""The thesis's reported results (its Tables 1-3; docs/concepts.md): one search
per experiment, probes A-D, test accuracy in %, in-cell op parameters, and the counts of
pooling, convolution and identity operations over all cells."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedProbe:
    test_acc: float  # %
    cell_params: int
    pool: int
    conv: int
    identity: int


SEED_TABLES: dict[int, dict[str, SeedProbe]] = {
    1: {"A": SeedProbe(82.5, 38304, 12, 6, 10), "B": SeedProbe(79.2, 5120, 17, 0, 11),
        "C": SeedProbe(85.0, 143488, 0, 13, 15), "D": SeedProbe(81.4, 12320, 18, 9, 1)},
    2: {"A": SeedProbe(85.62, 93888, 16, 8, 4), "B": SeedProbe(82.37, 25280, 22, 1, 5),
        "C": SeedProbe(85.63, 137632, 4, 13, 11), "D": SeedProbe(85.60, 72928, 22, 6, 0)},
    3: {"A": SeedProbe(71.02, 113984, 4, 18, 6), "B": SeedProbe(52.37, 10240, 12, 0, 16),
        "C": SeedProbe(73.77, 159456, 0, 9, 19), "D": SeedProbe(68.43, 8800, 17, 11, 0)},
}
