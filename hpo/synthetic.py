"""Built-in cheap objectives with known optima: no training, for teaching and testing.

Named in a study file as ``objective: {kind: synthetic, name: NAME}``; the study's ``params``
must declare the parameters the objective reads. All are maximised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from search_core.registry import Registry


@dataclass(frozen=True)
class SyntheticObjective:
    fn: Callable[[Mapping[str, float]], float]
    params: tuple[str, ...]  # parameters it reads (others are ignored: they do not matter)
    optimum: float
    description: str
    noise_sd: float = 0.0  # seed noise: sd of a normal deviation drawn by (seed, parameters)

    def value(self, params: Mapping[str, float], seed: int) -> float:
        """The mean ``fn(params)`` plus this seed's deviation at these parameters (the
        same (seed, parameters) always gives the same value)."""
        if not self.noise_sd:
            return self.fn(params)
        import hashlib

        import numpy as np

        text = repr([params[name] for name in self.params]).encode()
        key = [seed, int.from_bytes(hashlib.sha256(text).digest()[:8], "little")]
        return self.fn(params) + self.noise_sd * float(np.random.default_rng(key).normal())


SYNTHETIC: Registry[SyntheticObjective] = Registry("synthetic objective")


def low_effective_dimension(p: Mapping[str, float]) -> float:
    """Bergstra & Bengio (2012): of many hyperparameters on [0, 1] only ``x1`` matters much
    (a narrow peak at 0.71) and ``x2`` a little; any others do not matter at all."""
    peak = math.exp(-((p["x1"] - 0.71) ** 2) / (2 * 0.05**2))
    gentle = 1 - (p["x2"] - 0.3) ** 2 / 0.49
    return 0.8 * peak + 0.2 * gentle


def negative_branin(p: Mapping[str, float]) -> float:
    """-Branin(x in [-5, 10], y in [0, 15]); maximum -0.397887 at three points."""
    x, y = p["x"], p["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return -((y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10)


NOISY_ARM_MEANS = (0.50, 0.62, 0.55, 0.66, 0.58, 0.70, 0.52, 0.64, 0.60, 0.56)


def noisy_arms(p: Mapping[str, float]) -> float:
    """Ten configurations (``arm`` 0..9) with known means, best arm 5 (0.70), then arm 3
    (0.66); each evaluation adds normal seed noise of sd 0.1, larger than most gaps: one
    seed's values often rank the arms wrongly."""
    return NOISY_ARM_MEANS[int(p["arm"])]


SYNTHETIC.add("low_effective_dimension", SyntheticObjective(
    low_effective_dimension, ("x1", "x2"), 1.0,
    "6 hyperparameters on [0, 1], only x1 (narrow peak) and x2 (gentle) matter",
))
SYNTHETIC.add("noisy_arms", SyntheticObjective(
    noisy_arms, ("arm",), max(NOISY_ARM_MEANS),
    "10 arms (int 0..9) with known means (best 5: 0.70) and seed noise of sd 0.1",
    noise_sd=0.1,
))
SYNTHETIC.add("branin", SyntheticObjective(
    negative_branin, ("x", "y"), -0.397887, "-Branin on [-5, 10] x [0, 15]",
))
