"""What a study's trials say, each fact owned here once: the states a study's trials are
in, which trials are complete, how many finished, whether the study maximises, and **the**
best trial (one rule for ``hpo show``, ``hpo export``, ``hpo train``, ``hpo reevaluate``,
the run summary and the report)."""

from __future__ import annotations

import math

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.intensify import study_incumbent, study_noise
from hpo.records import REEVALUATED_ATTR, TrialRecord
from search_core.errors import ConfigError

StateCounts = dict[TrialState, int]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward --trials


def state_counts(study: optuna.Study) -> StateCounts:
    """How many of the study's trials are in each state (every state present)."""
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def finished(counts: StateCounts) -> int:
    """Trials that count toward ``--trials``: COMPLETE or PRUNED."""
    return sum(counts[state] for state in FINISHED)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials in trial-number order. A value that is not a finite number is
    refused: this tool never records one (``hpo.trial.values_problem``), so the storage was
    edited or damaged, and an ``inf`` would be everybody's best."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in trials:
        if not all(math.isfinite(value) for value in trial.values or ()):
            raise ConfigError(
                f"study {study.study_name}: trial {trial.number} holds the value(s) "
                f"{trial.values}, not finite numbers, which no run records: the storage "
                "was edited or damaged; restore it from a backup")
    return sorted(trials, key=lambda t: t.number)


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def maximises(study: optuna.Study) -> bool:
    """Whether the study's (first) value is maximised."""
    return study.directions[0] == StudyDirection.MAXIMIZE


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, None without one. One value: Optuna's best trial; for a
    study run with intensification (``hpo.intensify``), the first trial of the incumbent
    configuration (the best mean over seeds); for a study whose top configurations were
    re-evaluated with fresh seeds, the best fresh-seed mean. Several
    values (a Pareto set): the trial whose family front has the largest hypervolume, else
    the best first value; ties go to the lower trial number."""
    trials = complete_trials(study)
    if not trials:
        return None
    if not is_multi_objective(study):
        noise = study_noise(study)
        if noise is not None:  # intensified: the incumbent, the best mean over seeds
            config = study_incumbent(study, noise)
            first = min(config.trials.values()) if config is not None else None
            return next((t for t in trials if t.number == first), study.best_trial)
        return reevaluated_best(study, trials) or study.best_trial
    sign = 1.0 if maximises(study) else -1.0

    def score(trial: FrozenTrial) -> tuple[float, float]:
        hypervolume = TrialRecord.from_frozen(trial).hypervolume
        first = sign * trial.values[0]
        return (float(hypervolume), first) if hypervolume is not None else (float("-inf"), first)

    return max(trials, key=score)  # max keeps the first of equal scores


def fresh_means(study: optuna.Study, trials: list[FrozenTrial]) -> dict[int, float]:
    """Trial number -> the mean of its configuration's fresh-seed values (``hpo
    reevaluate``, ``hpo run --reevaluate K``), for the trials that were re-evaluated."""
    attrs = study.user_attrs
    means = {}
    for trial in trials:
        runs = attrs.get(REEVALUATED_ATTR.format(number=trial.number))
        values = [run.get("value") for run in runs.values()] if isinstance(runs, dict) else []
        values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if values:
            means[trial.number] = sum(values) / len(values)
    return means


def reevaluated_best(study: optuna.Study, trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The trial whose configuration has the best mean over fresh seeds, None when none was
    re-evaluated; ties: the lower number."""
    means = fresh_means(study, trials)
    if not means:
        return None
    sign = 1.0 if maximises(study) else -1.0
    number = max(sorted(means), key=lambda n: sign * means[n])
    return next(t for t in trials if t.number == number)


def reported_value(study: optuna.Study) -> float | None:
    """What a single-objective study says its best trial's configuration is worth: the
    incumbent's mean over its seeds (intensified), its fresh-seed mean (re-evaluated), else
    the best trial's value; None without a complete trial or with several objectives."""
    if is_multi_objective(study):
        return None
    noise = study_noise(study)
    if noise is not None:  # intensified: the incumbent, without best_trial finding it again
        config = study_incumbent(study, noise)
        return config.mean if config is not None else None
    best = best_trial(study)
    if best is None:
        return None
    return fresh_means(study, [best]).get(best.number, float(best.values[0]))


def best_numbers(study: optuna.Study) -> set[int]:
    """The trials a listing marks best: the best trial (an intensified study's incumbent
    configuration: all its trials), or a multi-objective study's Pareto set."""
    if not complete_trials(study):
        return set()
    if is_multi_objective(study):
        return {t.number for t in study.best_trials}
    noise = study_noise(study)
    config = study_incumbent(study, noise) if noise is not None else None
    if config is not None:  # every evaluation of the incumbent configuration
        return set(config.trials.values())
    best = best_trial(study)
    return {best.number} if best is not None else set()
