"""Intensification: a search that spends evaluations where the noise decides something.

As SMAC3's intensifier and racing (irace), for every sampler: a new configuration is
evaluated on one seed; a challenger that is competitive with the incumbent on the seeds they
share (its mean there at least the incumbent's mean there, less ``noise.margin``) gets the
incumbent's next seed, so every comparison is paired; the incumbent is the configuration with
the best mean among those with the most seeds, so a challenger takes over only once it has
run on every seed the incumbent has and is better there (as SMAC3's). The incumbent takes its
seeds up to ``noise.min_seeds`` first, and one more each time a challenger catches up with its
seed count (whether the challenger then wins or loses), so the final choice rests on more
seeds the more it was contested; no configuration gets more than ``noise.max_seeds``.

Every evaluation is an ordinary trial: a re-evaluation is the configuration's parameters
enqueued with its configuration id (``CONFIG_ATTR``: the number of the configuration's first
trial) and seed index (``SEED_INDEX_ATTR``; the trial searches with the run's seed + that
index), asked like any trial. So every sampler sees the repeated observations, the budget is
``--trials`` evaluations, optuna-dashboard shows them, and kills and resumes keep their
guarantees: what to evaluate next is decided from the stored trials alone, under the study's
lock, each time a trial is asked.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.records import CONFIG_ATTR, SEED_INDEX_ATTR, STUDY_FILE_ATTR, opening_attrs
from hpo.study_spec import NoiseSpec

PENDING = (TrialState.RUNNING, TrialState.WAITING)


@dataclass
class Configuration:
    """One configuration's evaluations: complete values by seed index, and the seed
    indices asked and not finished (running or waiting)."""

    id: int
    params: dict[str, Any]
    values: dict[int, float] = field(default_factory=dict)
    trials: dict[int, int] = field(default_factory=dict)  # seed index -> trial number
    pending: set[int] = field(default_factory=set)
    tried: set[int] = field(default_factory=set)  # every seed index asked (failed too)

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def sd(self) -> float:
        values = list(self.values.values())
        return statistics.stdev(values) if len(values) > 1 else math.nan

    def mean_on(self, seeds: Iterable[int]) -> float:
        return statistics.fmean(self.values[s] for s in seeds)

    def next_seed(self) -> int:
        """The next seed index to give it: past every one it was given (a failed seed is
        not given again)."""
        return max(self.tried, default=-1) + 1


def params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


def configuration_of(trial: FrozenTrial) -> tuple[int, int] | None:
    """(configuration id, seed index) of a trial tagged by intensification, else None."""
    attrs = trial.user_attrs
    if CONFIG_ATTR not in attrs or SEED_INDEX_ATTR not in attrs:
        return None
    return int(attrs[CONFIG_ATTR]), int(attrs[SEED_INDEX_ATTR])


def configurations(trials: Iterable[FrozenTrial]) -> dict[int, Configuration]:
    """The study's configurations, from its tagged trials (untagged trials: each its own
    configuration on seed index 0, as in a study run without intensification)."""
    found: dict[int, Configuration] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        config, seed = configuration_of(trial) or (trial.number, 0)
        if trial.state == TrialState.WAITING and not trial.params:
            params = dict(trial.system_attrs.get("fixed_params", {}))
        else:
            params = dict(trial.params)
        entry = found.setdefault(config, Configuration(config, params))
        entry.tried.add(seed)
        if trial.state == TrialState.COMPLETE and trial.values:
            entry.values.setdefault(seed, float(trial.values[0]))
            entry.trials.setdefault(seed, trial.number)
        elif trial.state in PENDING:
            entry.pending.add(seed)
    return found


def incumbent(configs: Mapping[int, Configuration], noise: NoiseSpec,
              maximise: bool) -> Configuration | None:
    """The configuration with the best mean among those with the most seeds (counted up to
    ``max_seeds``): a challenger takes over only once it has as many seeds as the incumbent
    (its seeds: paired) and a better mean; ties: the earlier configuration."""
    scored = [c for c in configs.values() if c.seeds]
    if not scored:
        return None
    level = min(noise.max_seeds, max(c.seeds for c in scored))
    sign = 1.0 if maximise else -1.0
    return max((c for c in scored if c.seeds >= level), key=lambda c: (sign * c.mean, -c.id))


def competitive(challenger: Configuration, incumbent: Configuration, noise: NoiseSpec,
                maximise: bool) -> bool:
    """Whether ``challenger`` is at least as good as the incumbent on the seeds they share,
    less the margin (paired: the same seeds on both sides)."""
    shared = sorted(set(challenger.values) & set(incumbent.values))
    if not shared:
        return False
    gap = challenger.mean_on(shared) - incumbent.mean_on(shared)
    return (gap if maximise else -gap) >= -noise.margin


def next_evaluation(configs: Mapping[int, Configuration], noise: NoiseSpec,
                    maximise: bool) -> tuple[Configuration, int] | None:
    """The re-evaluation to run next, (configuration, seed index), or None: ask the sampler
    for a new configuration. First the incumbent's own seeds up to ``min_seeds``, and one
    more (up to ``max_seeds``) whenever another configuration has caught up with its seed
    count; then the competitive challenger closest to a decision gets the incumbent's next
    seed it lacks."""
    best = incumbent(configs, noise, maximise)
    if best is None:
        return None
    if not best.pending and best.next_seed() < noise.max_seeds and (
            best.seeds < noise.min_seeds
            or any(c.id != best.id and c.seeds >= best.seeds for c in configs.values())):
        return best, best.next_seed()
    racing = [c for c in configs.values()
              if c.id != best.id and c.seeds and not c.pending
              and set(best.values) - c.tried and competitive(c, best, noise, maximise)]
    racing.sort(key=lambda c: (-c.seeds, c.id))
    if racing:
        challenger = racing[0]
        return challenger, min(set(best.values) - challenger.tried)
    return None


def _maximises(study: optuna.Study) -> bool:
    return study.directions[0] == optuna.study.StudyDirection.MAXIMIZE


def study_noise(study: optuna.Study) -> NoiseSpec | None:
    """The noise settings of a study run with intensification (from its stored study
    file), else None."""
    stored = study.user_attrs.get(STUDY_FILE_ATTR)
    noise = stored.get("noise") if isinstance(stored, Mapping) else None
    if not isinstance(noise, Mapping) or noise.get("policy") != "intensify":
        return None
    return NoiseSpec(**noise)


def study_incumbent(study: optuna.Study, noise: NoiseSpec) -> Configuration | None:
    """The incumbent by mean of ``study``'s stored trials."""
    return incumbent(configurations(study.get_trials(deepcopy=False)), noise, _maximises(study))


def decide(study: optuna.Study, noise: NoiseSpec) -> tuple[Configuration, int] | None:
    """``next_evaluation`` from the study's stored trials."""
    trials = study.get_trials(deepcopy=False)
    return next_evaluation(configurations(trials), noise, _maximises(study))


def enqueue_next(study: optuna.Study, noise: NoiseSpec) -> bool:
    """Enqueue the next re-evaluation, if one is due and nothing else waits (a retry or a
    grid cell goes first). Call under the study's lock, right before ``study.ask()``."""

    if not noise.intensify:
        return False
    if any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        return False
    due = decide(study, noise)
    if due is None:
        return False
    config, seed = due
    study.enqueue_trial(config.params, user_attrs=opening_attrs(
        {CONFIG_ATTR: config.id, SEED_INDEX_ATTR: seed}))
    return True


def tag_new(study: optuna.Study, trial: optuna.Trial, params: Mapping[str, Any],
            noise: NoiseSpec) -> None:
    """Tag a trial the sampler proposed: a configuration already in the study (the same
    parameters) gets the first of the incumbent's seeds it lacks (paired), else its next
    seed; new parameters start a configuration of their own on seed index 0. A
    re-evaluation (enqueued with its tags) keeps them."""
    if CONFIG_ATTR in trial.user_attrs:
        return
    configs = configurations(t for t in study.get_trials(deepcopy=False)
                             if t.number != trial.number)
    key = params_key(params)
    same = next((c for c in configs.values() if params_key(c.params) == key), None)
    if same is None:
        config, seed = trial.number, 0
    else:
        best = incumbent(configs, noise, _maximises(study))
        missing = sorted(set(best.values) - same.tried) if best is not None else []
        config, seed = same.id, missing[0] if missing else same.next_seed()
    trial.set_user_attr(CONFIG_ATTR, config)
    trial.set_user_attr(SEED_INDEX_ATTR, seed)


def replicate_seed(run_seed: int, attrs: Mapping[str, Any]) -> int | None:
    """The training seed of a tagged trial: the run's seed + its seed index (configuration
    by configuration the same seeds, so comparisons are paired); None if untagged."""
    if SEED_INDEX_ATTR not in attrs:
        return None
    return run_seed + int(attrs[SEED_INDEX_ATTR])


def summary_rows(study: optuna.Study, noise: NoiseSpec | None = None) -> list[dict[str, Any]]:
    """One row per configuration with a complete value, incumbent first then by mean:
    configuration id, mean, sd, seeds, its trials, its parameters."""
    noise = noise or study_noise(study) or NoiseSpec(policy="intensify")
    maximise = _maximises(study)
    configs = configurations(study.get_trials(deepcopy=False))
    best = incumbent(configs, noise, maximise)
    sign = -1.0 if maximise else 1.0
    rows = [{"config": c.id, "mean": c.mean, "sd": c.sd, "seeds": c.seeds,
             "trials": [c.trials[s] for s in sorted(c.trials)], "params": c.params,
             "incumbent": best is not None and c.id == best.id}
            for c in configs.values() if c.seeds]
    rows.sort(key=lambda r: (not r["incumbent"], sign * r["mean"], r["config"]))
    return rows


def repeats_without_spread(study: optuna.Study) -> int:
    """How many re-evaluations the study spent, when every configuration it evaluated on
    several seeds gave one value on all of them (the objective looks deterministic: the
    repeats bought nothing); 0 when some configuration's seeds differ, or none repeated."""
    repeated = [c for c in configurations(study.get_trials(deepcopy=False)).values()
                if c.seeds > 1]
    if not repeated or any(len(set(c.values.values())) > 1 for c in repeated):
        return 0
    return sum(c.seeds - 1 for c in repeated)


def incumbent_row(study: optuna.Study) -> dict[str, Any] | None:
    """``summary_rows``' incumbent of a study run with intensification, else None."""
    if study_noise(study) is None:
        return None
    rows = summary_rows(study)
    return rows[0] if rows and rows[0]["incumbent"] else None
