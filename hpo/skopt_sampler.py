"""An Optuna sampler backed by scikit-optimize's Bayesian ``Optimizer``.

Optuna removed its own ``SkoptSampler`` in v4; this is a small, self-contained replacement.

Behaviour in brief:

* The relative search space is the intersection of the parameters of all COMPLETE trials
  (single-value distributions excluded); parameters outside it go to ``independent_sampler``.
* Until ``n_startup_trials`` trials are COMPLETE every parameter is sampled independently.
* Afterwards a fresh ``skopt.Optimizer`` is built for each trial, told the (at most
  ``max_history``) most recent COMPLETE trials that hold every parameter of the space, and asked
  for one point. Values of maximised studies are negated, since skopt minimises.
* PRUNED and FAILED trials are skipped: a pruned trial's last intermediate value is measured
  earlier in training than a final value, so mixing the two would bias the surrogate.
* Only single-objective studies are supported; multi-objective studies raise ``ValueError``.

The skopt random state is derived from ``seed`` and the trial number, so the same seed and the
same history give the same suggestion.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import skopt
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from skopt.space import Categorical, Dimension, Integer, Real

__all__ = ["SkoptSampler"]


def _to_dimension(dist: BaseDistribution) -> Dimension:
    """Map an Optuna distribution to a skopt dimension (steps and choices become index grids)."""
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            return Integer(0, _n_steps(dist.low, dist.high, dist.step))
        return Real(dist.low, dist.high, prior="log-uniform" if dist.log else "uniform")
    if isinstance(dist, IntDistribution):
        if dist.log:  # Optuna forbids step != 1 together with log.
            return Integer(dist.low, dist.high, prior="log-uniform")
        return Integer(0, _n_steps(dist.low, dist.high, dist.step))
    if isinstance(dist, CategoricalDistribution):
        return Categorical(list(range(len(dist.choices))))
    raise NotImplementedError(f"SkoptSampler does not support {type(dist).__name__}.")


def _n_steps(low: float, high: float, step: float) -> int:
    """Index of the last grid point ``low + i * step`` that is ``<= high``."""
    return math.floor((high - low) / step + 1e-8)


def _to_skopt(dist: BaseDistribution, value: Any) -> int | float:
    """Convert an Optuna (external) parameter value to the matching skopt coordinate."""
    if isinstance(dist, CategoricalDistribution):
        return int(dist.to_internal_repr(value))
    if isinstance(dist, FloatDistribution):
        if dist.step is None:
            return min(max(float(value), dist.low), dist.high)
        index = round((float(value) - dist.low) / dist.step)
        return min(max(index, 0), _n_steps(dist.low, dist.high, dist.step))
    assert isinstance(dist, IntDistribution)
    if dist.log:
        return min(max(int(value), dist.low), dist.high)
    index = round((int(value) - dist.low) / dist.step)
    return min(max(index, 0), _n_steps(dist.low, dist.high, dist.step))


def _from_skopt(dist: BaseDistribution, value: Any) -> Any:
    """Convert a skopt coordinate back to a plain-Python Optuna parameter value."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(value)]
    if isinstance(dist, FloatDistribution):
        if dist.step is None:
            return min(max(float(value), dist.low), dist.high)
        return min(dist.low + int(value) * dist.step, dist.high)
    assert isinstance(dist, IntDistribution)
    if dist.log:
        return min(max(int(value), dist.low), dist.high)
    return int(dist.low + int(value) * dist.step)


class SkoptSampler(optuna.samplers.BaseSampler):
    """Bayesian optimisation through :class:`skopt.Optimizer` (single-objective only).

    Args:
        seed: Seed for the skopt random state and the default independent sampler.
        n_startup_trials: Number of COMPLETE trials sampled independently before skopt is used.
        base_estimator: skopt surrogate: ``"GP"``, ``"RF"``, ``"ET"`` or ``"GBRT"``.
        acq_func: skopt acquisition function, e.g. ``"gp_hedge"``, ``"EI"``, ``"LCB"``, ``"PI"``.
        independent_sampler: Sampler for startup trials and parameters outside the relative
            search space; defaults to ``RandomSampler(seed)``.
        max_history: Only the most recent this-many usable trials are told to skopt.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        n_startup_trials: int = 5,
        base_estimator: str = "GP",
        acq_func: str = "gp_hedge",
        independent_sampler: optuna.samplers.BaseSampler | None = None,
        max_history: int = 200,
    ) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials}.")
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}.")
        self._seed = self._draw_seed() if seed is None else int(seed)
        self._n_startup_trials = n_startup_trials
        self._base_estimator = base_estimator
        self._acq_func = acq_func
        self._max_history = max_history
        self._independent_sampler = independent_sampler or optuna.samplers.RandomSampler(seed)
        self._search_space = IntersectionSearchSpace()

    @staticmethod
    def _draw_seed() -> int:
        return int(np.random.SeedSequence().generate_state(1)[0])

    def reseed_rng(self) -> None:
        """Pick a fresh random seed (used by Optuna for parallel workers)."""
        self._seed = self._draw_seed()
        self._independent_sampler.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Intersection of the COMPLETE trials' distributions, minus single-value ones."""
        return {
            name: dist
            for name, dist in self._search_space.calculate(study).items()
            if not dist.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Ask skopt for one point of ``search_space`` given the study's COMPLETE trials."""
        if len(study.directions) > 1:
            raise ValueError(
                "SkoptSampler supports only single-objective studies; for multi-objective "
                "optimisation use the 'nsga2' sampler (optuna.samplers.NSGAIISampler)."
            )
        if not search_space:
            return {}
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < self._n_startup_trials:
            return {}

        names = sorted(search_space)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        xs: list[list[int | float]] = []
        ys: list[float] = []
        for past in complete:
            if past.value is None or not math.isfinite(past.value):
                continue
            if any(name not in past.params for name in names):
                continue
            xs.append([_to_skopt(search_space[n], past.params[n]) for n in names])
            ys.append(sign * float(past.value))
        if not xs:
            return {}
        xs, ys = xs[-self._max_history :], ys[-self._max_history :]

        point = self._ask([_to_dimension(search_space[n]) for n in names], xs, ys, trial.number)
        return {n: _from_skopt(search_space[n], v) for n, v in zip(names, point)}

    def _ask(
        self,
        dimensions: list[Dimension],
        xs: list[list[int | float]],
        ys: list[float],
        trial_number: int,
    ) -> Sequence[Any]:
        random_state = int(np.random.default_rng([self._seed, trial_number]).integers(2**31))
        optimizer = skopt.Optimizer(
            dimensions,
            base_estimator=self._base_estimator,
            acq_func=self._acq_func,
            n_initial_points=1,
            random_state=random_state,
        )
        with warnings.catch_warnings():
            # skopt warns when the surrogate re-proposes an evaluated point; that is harmless.
            warnings.filterwarnings("ignore", message="The objective has been evaluated",
                                    category=UserWarning)
            optimizer.tell(xs, ys)
            return optimizer.ask()

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """Delegate to the independent sampler."""
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)
