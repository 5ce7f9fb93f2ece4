"""Tests for the scikit-optimize-backed Optuna sampler (hpo.skopt_sampler)."""

from __future__ import annotations

import json
import statistics
from typing import Any

import optuna
import pytest

from hpo.skopt_sampler import SkoptSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

MIXED_CHOICES: tuple[Any, ...] = (None, True, 3, 2.5, "relu")


class _RecordingSampler(SkoptSampler):
    """Keeps the raw dicts returned by ``sample_relative`` (before Optuna touches them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relative: list[dict[str, Any]] = []

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        params = super().sample_relative(study, trial, search_space)
        if params:
            self.relative.append(params)
        return params


def _quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    y = trial.suggest_int("y", -5, 5)
    return (x - 1.3) ** 2 + (y + 2) ** 2


def _mixed(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    drop = trial.suggest_float("drop", 0.0, 0.5, step=0.1)
    n = trial.suggest_int("n", 1, 9)
    units = trial.suggest_int("units", 8, 256, log=True)
    batch = trial.suggest_int("batch", 16, 96, step=16)
    act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    misc = trial.suggest_categorical("misc", MIXED_CHOICES)
    penalty = {"relu": 0.0, "tanh": 1.0, "gelu": 2.0}[act] + (0.0 if misc is None else 0.5)
    return x**2 + abs(lr - 1e-3) + drop + n + units / 256 + batch / 96 + penalty


def _best(sampler: optuna.samplers.BaseSampler, n_trials: int = 25) -> float:
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=n_trials)
    return study.best_value


@pytest.mark.slow
def test_beats_random_search_on_quadratic() -> None:
    # Calibration (200 seeds, 25 trials): random search's median best is ~1.0 and only ~4% of
    # runs reach < 0.01; SkoptSampler reached <= 1e-4 on each of 6 seeds. Requiring both seeds
    # below 0.01 therefore fails for random search with probability ~99.8%.
    seeds = (0, 1)
    skopt_best = [_best(SkoptSampler(seed=s)) for s in seeds]
    random_best = [_best(optuna.samplers.RandomSampler(seed=s)) for s in seeds]
    assert max(skopt_best) < 0.01, skopt_best
    assert max(skopt_best) < statistics.median(random_best), (skopt_best, random_best)


@pytest.mark.slow
def test_values_are_plain_python_and_inside_distributions() -> None:
    sampler = _RecordingSampler(seed=3, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_mixed, n_trials=12)

    assert len(sampler.relative) == 8
    dists = study.trials[-1].distributions
    for params in sampler.relative:
        assert set(params) == set(dists)
        json.dumps(params)  # no numpy scalars
        for name, value in params.items():
            dist = dists[name]
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                assert any(
                    value is c or (type(value) is type(c) and value == c) for c in dist.choices
                ), (name, value)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                assert type(value) is int, (name, value)
            else:
                assert type(value) is float, (name, value)
            assert dist._contains(dist.to_internal_repr(value)), (name, value)
    for trial in study.trials:
        assert trial.params["batch"] in (16, 32, 48, 64, 80, 96)
        assert any(abs(trial.params["drop"] - v / 10) < 1e-9 for v in range(6))


def _param_sequence(seed: int) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=SkoptSampler(seed=seed, n_startup_trials=5))
    study.optimize(_mixed, n_trials=12)
    return [t.params for t in study.trials]


@pytest.mark.slow
def test_seed_reproducibility() -> None:
    first = _param_sequence(7)
    assert first == _param_sequence(7)
    other = _param_sequence(8)
    assert first != other
    assert first[5:] != other[5:]  # the skopt-driven part differs too


@pytest.mark.slow
def test_maximize_heads_towards_maximum() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5.0, 5.0)
        return -((x - 2.0) ** 2)

    study = optuna.create_study(direction="maximize", sampler=SkoptSampler(seed=0))
    study.optimize(objective, n_trials=20)
    # A sign error would send the surrogate to the edge x = -5 (the minimum).
    assert study.best_value > -1e-3
    late = [abs(t.params["x"] - 2.0) for t in study.trials[-8:]]
    assert statistics.median(late) < 0.5, late


def test_multi_objective_raises_clear_error() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=SkoptSampler())

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        return x, x

    with pytest.raises(ValueError, match=r"SkoptSampler.*single-objective.*nsga2"):
        study.optimize(objective, n_trials=1)


@pytest.mark.slow
def test_journal_storage_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "journal.log")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.create_study(
        study_name="skopt", storage=storage, sampler=SkoptSampler(seed=1, n_startup_trials=3)
    )
    study.optimize(_mixed, n_trials=8)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    reopened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    loaded = optuna.load_study(study_name="skopt", storage=reopened)
    assert [t.params for t in loaded.trials] == [t.params for t in study.trials]
    assert loaded.best_value == study.best_value


def test_startup_trials_use_independent_sampler() -> None:
    sampler = _RecordingSampler(seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_quadratic, n_trials=4)
    assert sampler.relative == []
    study.optimize(_quadratic, n_trials=1)
    assert len(sampler.relative) == 1
