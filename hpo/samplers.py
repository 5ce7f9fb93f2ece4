"""Samplers and pruners, one registry each, by name (what to try; not where it runs)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from search_core.registry import Registry


@dataclass(frozen=True)
class SamplerEntry:
    build: Callable[[int], optuna.samplers.BaseSampler]
    multi_objective: bool = False
    enumerates_grid: bool = False  # trials come from the enqueued grid, not the sampler
    seed_per_trial: bool = True  # False: one seed for the whole study (a QMC sequence)
    description: str = ""


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


def build_sampler(name: str, seed: int, directions: list[str]) -> optuna.samplers.BaseSampler:
    entry = SAMPLERS.get(name, "--sampler")
    if len(directions) > 1 and not entry.multi_objective:
        from search_core.errors import ConfigError

        valid = ", ".join(n for n in SAMPLERS if SAMPLERS.get(n).multi_objective)
        raise ConfigError(f"--sampler: {name!r} is single-objective but the study's objective "
                          f"has {len(directions)} values; use one of {valid}")
    with warnings.catch_warnings():  # the registry's choice, not the user's: no warning
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.build(seed)
