"""Samplers and pruners, one registry each, by name (what to try; not where it runs)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from search_core.errors import ConfigError, require_extra
from search_core.registry import Registry


@dataclass(frozen=True)
class SamplerEntry:
    build: Callable[[int], optuna.samplers.BaseSampler]
    multi_objective: bool = False
    enumerates_grid: bool = False  # trials come from the enqueued grid, not the sampler
    seed_per_trial: bool = True  # False: one seed for the whole study (a QMC sequence)
    description: str = ""
    needs: tuple[str, str] = ()  # (module, pip extra) of an optional dependency


SAMPLERS: Registry[SamplerEntry] = Registry("sampler")


def _skopt(seed: int) -> optuna.samplers.BaseSampler:
    from hpo.skopt_sampler import SkoptSampler

    return SkoptSampler(seed=seed)


SAMPLERS.add("grid", SamplerEntry(
    lambda seed: optuna.samplers.RandomSampler(seed=seed), multi_objective=True,
    enumerates_grid=True, description="every cell of the study's grid exactly once",
))
SAMPLERS.add("random", SamplerEntry(
    lambda seed: optuna.samplers.RandomSampler(seed=seed), multi_objective=True,
    description="independent uniform draws",
))
SAMPLERS.add("tpe", SamplerEntry(
    lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True),
    multi_objective=True, description="Tree-structured Parzen Estimator (multivariate)",
))
SAMPLERS.add("gp", SamplerEntry(
    lambda seed: optuna.samplers.GPSampler(seed=seed, n_startup_trials=5),
    multi_objective=True, description="Optuna's Gaussian-process sampler",
))
SAMPLERS.add("skopt", SamplerEntry(
    _skopt, description="scikit-optimize's GP minimiser, wrapped as an Optuna sampler",
    needs=("skopt", "skopt"),
))
SAMPLERS.add("cmaes", SamplerEntry(
    lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    description="CMA-ES (categoricals sampled independently)",
))
SAMPLERS.add("qmc", SamplerEntry(
    lambda seed: optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                                            warn_independent_sampling=False),
    multi_objective=True, seed_per_trial=False, description="scrambled Sobol sequence",
))
SAMPLERS.add("nsga2", SamplerEntry(
    lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=8),
    multi_objective=True, description="NSGA-II genetic algorithm (multi-objective)",
))


PRUNERS: Registry[Callable[[int], optuna.pruners.BasePruner]] = Registry("pruner")
PRUNERS.add("none", lambda epochs: optuna.pruners.NopPruner())
PRUNERS.add("median", lambda epochs: optuna.pruners.MedianPruner(
    n_startup_trials=3, n_warmup_steps=max(1, epochs // 3)))
PRUNERS.add("hyperband", lambda epochs: optuna.pruners.HyperbandPruner(
    min_resource=1, max_resource=max(epochs, 1)))


def check_sampler(name: str, directions: list[str]) -> SamplerEntry:
    """The registered sampler ``name``, if it can sample an objective with ``directions``."""
    entry = SAMPLERS.get(name, "--sampler")
    if entry.needs:
        require_extra(*entry.needs, f"--sampler {name}")
    if len(directions) > 1 and not entry.multi_objective:
        valid = ", ".join(n for n in SAMPLERS if SAMPLERS.get(n).multi_objective)
        raise ConfigError(f"--sampler: {name!r} is single-objective but the study's objective "
                          f"has {len(directions)} values; use one of {valid}")
    return entry


def build_sampler(name: str, seed: int, directions: list[str]) -> optuna.samplers.BaseSampler:
    entry = check_sampler(name, directions)
    with warnings.catch_warnings():  # the registry's choice, not the user's: no warning
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.build(seed)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed for the trial numbered ``number`` of a study run with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def sampler_seed(name: str, seed: int, number: int) -> int:
    """The seed that samples trial ``number``: its own (``trial_seed``), or the run's for a
    sampler with one seed per study (a QMC sequence)."""
    return trial_seed(seed, number) if SAMPLERS.get(name).seed_per_trial else seed


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose every trial is sampled by ``build(trial_seed(seed, number))``:
    trial ``number`` gets the same parameters whichever process asks for it and whenever,
    so a study run with ``--jobs N`` (or on Ray) is reproducible. Built once per study and
    process; the per-trial samplers are made on demand and the last few kept."""

    KEPT = 8

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._by_number: OrderedDict[int, optuna.samplers.BaseSampler] = OrderedDict()

    def for_trial(self, number: int) -> optuna.samplers.BaseSampler:
        sampler = self._by_number.pop(number, None)
        if sampler is None:
            sampler = self._build(trial_seed(self._seed, number))
        self._by_number[number] = sampler
        while len(self._by_number) > self.KEPT:
            self._by_number.popitem(last=False)
        return sampler

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.for_trial(trial.number).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.for_trial(trial.number).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.for_trial(trial.number).sample_independent(study, trial, param_name,
                                                               param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.for_trial(trial.number).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.for_trial(trial.number).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to reseed: each trial's seed is fixed by its number."""


def study_sampler(name: str, seed: int, directions: list[str]) -> optuna.samplers.BaseSampler:
    """The sampler of a study run with ``seed``, built once per study (and process): per
    trial seeded (``TrialSeededSampler``), or one seed for the study (``seed_per_trial``
    False). Both backends use it."""
    entry = check_sampler(name, directions)
    if not entry.seed_per_trial:
        return build_sampler(name, seed, directions)
    return TrialSeededSampler(lambda trial: build_sampler(name, trial, directions), seed)
