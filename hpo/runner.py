"""``hpo run``: validate, create or resume the study, hand it to a backend, summarise.

The trial's life is ``hpo.trial``'s; where trials run is a backend's (``hpo.backends``);
when a run stops is ``hpo.stopping.StopRule``'s; liveness and locks are ``hpo.liveness``'s.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.announce import (
    BestTrial,
    banner,
    best_lines,
    next_commands,
    shown_path,
    stop_reason_words,
)
from hpo.backends.base import RunJob
from hpo.evaluation import check_fits_in_memory, reference_complexity
from hpo.facts import best_trial, state_counts
from hpo.grid import enqueue_grid, grid_cells
from hpo.intensify import incumbent_row, repeats_without_spread
from hpo.liveness import recover_stale_trials, study_lock
from hpo.options import (
    RAY_ADDRESS_VAR,
    RunOptions,
    check_cluster_address,
    checked,
    cluster_address,
    read_study,
    trial_threads,
    with_jobs,
)
from hpo.records import (
    ENVIRONMENT_ATTR,
    FAIL_REASON_ATTR,
    FINGERPRINT_ATTR,
    GRID_ATTR,
    REFERENCE_ATTR,
    RETRY_OF_ATTR,
    SAMPLER_ATTR,
    STUDY_FILE_ATTR,
    STUDY_SOURCE_ATTR,
    environment,
)
from hpo.samplers import SAMPLERS, check_sampler, study_sampler
from hpo.stopping import StopRule
from hpo.storage import open_storage, study_names
from hpo.storage_urls import storage_label
from hpo.study_spec import StudySpec
from hpo.trial import INTERRUPTED
from search_core.errors import ConfigError, NasHpoError
from search_core.threads import oversubscription

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    name: str
    complete: int
    pruned: int
    failed: int
    best: BestTrial | None
    storage: str
    artifacts: str
    stopped_because: str = ""  # StopRule.reason's code
    worker_deaths: tuple[str, ...] = ()  # worker processes that died (their trials re-run)
    trials: int = 0  # the budget of complete trials

    def lines(self, storage_flag: str = "") -> list[str]:
        """The summary ``hpo run`` prints: counts and why it stopped, the best trial, what
        to run next (``storage_flag``: `` --storage S`` when not the default storage)."""
        counts = f"{self.complete} complete"
        counts += f", {self.pruned} pruned" if self.pruned else ""
        counts += f", {self.failed} failed" if self.failed else ""
        why = stop_reason_words(self.stopped_because, self.trials)
        lines = [f"study {self.name}: {counts}; {why}"]
        lines += best_lines(self.best) if self.best is not None else []
        lines += next_commands(self.name, storage_flag, self.storage)
        lines.append(f"checkpoints: {self.artifacts}/")
        return lines


def validate(options: RunOptions, spec: StudySpec) -> float:
    """Everything that can be checked before anything is written; returns the study's
    hypervolume reference complexity (this loads the data set, so a missing data folder
    fails here), unless ``options.reference`` already gives it. ``options`` come from
    ``hpo.options.checked`` (no study file, no torch), ``spec`` from ``hpo.options.read_study``."""
    check_sampler(options.sampler, spec.objective.directions)
    address = cluster_address(options)
    if address:
        flag = "--address" if options.ray.address else RAY_ADDRESS_VAR
        check_cluster_address(address, flag)
    check_device(spec, options)
    if not address:  # a cluster's nodes may have more memory than this machine
        check_fits_in_memory(spec)
    if SAMPLERS.get(options.sampler).enumerates_grid and spec.noise.intensify:
        raise ConfigError("--sampler grid runs each cell once; noise.policy intensify needs a "
                          "sampler that asks (random, tpe, ...), or --noise none")
    if SAMPLERS.get(options.sampler).enumerates_grid and options.grid_budget is None:
        grid_cells(spec)  # raises when a parameter has no grid values
    if options.reference is not None:
        return options.reference
    return reference_complexity(spec)


def check_device(spec: StudySpec, options: RunOptions) -> None:
    """The study's device and precision where its trials will run: this machine, unless
    they go to a Ray cluster (``--address``: its nodes may have the GPUs this one lacks).
    CUDA asked for and missing is a ``ConfigError`` before anything is written."""
    if not spec.objective.entry.trains:
        return
    if cluster_address(options):
        return
    from search_core.device import check_device_precision, resolve_device

    device = resolve_device(spec.device, "device")
    check_device_precision(device, spec.precision)
    if options.ray.gpus_per_trial and device.type != "cuda":
        raise ConfigError("--gpus-per-trial: this machine has no CUDA GPU for a local Ray "
                          "cluster; join a GPU cluster with --address, or leave it out")


def study_name(options: RunOptions, spec: StudySpec) -> str:
    return options.name or spec.name  # both checked by check_study_name


def create_or_resume(options: RunOptions, spec: StudySpec, reference: float,
                     sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study, created or resumed under the workers' lock. Creation is complete from the
    user's view: a study left without its attributes by a killed run (and without trials)
    gets them on the next run; its grid cells are enqueued once each, however often a run is
    killed while enqueueing."""
    name = study_name(options, spec)
    storage = open_storage(options.storage)
    with study_lock(options.storage, name):
        if name in study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            _check_same_study(study, spec, options)
            recover_stale_trials(study)
        else:
            study = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                        directions=spec.objective.directions)
        if FINGERPRINT_ATTR not in study.user_attrs:  # new, or its creation was cut short
            set_study_attributes(study, spec, options, reference)
        name_the_values(study, spec)
        study.set_user_attr(SAMPLER_ATTR, options.sampler)
        for key, value in options.study_attrs:
            study.set_user_attr(key, value)
        if SAMPLERS.get(options.sampler).enumerates_grid and not study.user_attrs.get(GRID_ATTR):
            enqueue_grid(study, spec, options.seed, options.grid_budget)
    return study


def _check_same_study(study: optuna.Study, spec: StudySpec, options: RunOptions) -> None:
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None and study.get_trials(deepcopy=False):
        raise ConfigError(f"study {study.study_name!r} in {storage_label(options.storage)} has "
                          "trials but was not created by hpo run; use another --name")
    if stored is not None and stored != spec.fingerprint():
        raise ConfigError(
            f"study {study.study_name!r} exists in {storage_label(options.storage)} with a "
            "different study file; restore that file, or start a new study with --name"
        )


def name_the_values(study: optuna.Study, spec: StudySpec) -> None:
    """The objective's metric names on the study (what optuna-dashboard calls the values)."""
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental in Optuna 3.2-5.0, stable API
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(spec.objective.metric_names)


def set_study_attributes(study: optuna.Study, spec: StudySpec, options: RunOptions,
                         reference: float) -> None:
    """The study's own records; the fingerprint last: a study without it is incomplete."""
    study.set_user_attr(STUDY_FILE_ATTR, spec.to_dict())
    study.set_user_attr(STUDY_SOURCE_ATTR, shown_path(spec.source))  # no private path
    study.set_user_attr(REFERENCE_ATTR, reference)
    study.set_user_attr(ENVIRONMENT_ATTR, environment(trial_threads(options)))
    study.set_user_attr(FINGERPRINT_ATTR, spec.fingerprint())


def run(options: RunOptions, progress: Any = None,
        announce: Callable[[str], None] | None = None,
        spec: StudySpec | None = None) -> RunSummary:
    """Validate, create or resume the study, run its trials, summarise; ``announce`` gets
    the one-line banner (study, sampler, budget, storage, new or resumed) before the
    trials start. ``spec``: the study already read (``read_study(options)``); else the
    study file is read here."""
    options = checked(options)
    spec = spec if spec is not None else read_study(options)
    reference = validate(options, spec)
    options = with_jobs(options, spec)
    sampler = study_sampler(options.sampler, options.seed, spec.objective.directions)
    if options.backend_entry.local_workers and (
            warning := oversubscription(trial_threads(options), options.jobs or 1)):
        log.warning(warning)
    study = create_or_resume(options, spec, reference, sampler)
    if announce is not None:
        announce(banner(study.study_name, spec.source, options.sampler, options.seed,
                        options.trials, options.jobs or 1, storage_label(options.storage),
                        state_counts(study)))
    stop = StopRule(
        trials=options.trials, max_failures=options.max_failures,
        base_failures=state_counts(study)[TrialState.FAIL],
        deadline=time.time() + options.timeout if options.timeout else None,
        grid=SAMPLERS.get(options.sampler).enumerates_grid,
    )
    if progress is not None:
        progress.start(study, options.trials)
    backend = options.backend_entry.create()
    first_new = len(study.get_trials(deepcopy=False))
    try:
        deaths = backend.run(RunJob(options, study, spec, stop, sampler, progress))
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        raise RunInterrupted(interrupted_message(study, first_new)) from None
    if progress is not None:
        progress.update(study)
        progress.close()
    return replace(summarise(study, options, stop), worker_deaths=tuple(deaths))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; its message says which trials were re-enqueued."""


def interrupted_message(study: optuna.Study, first_new: int) -> str:
    """What Ctrl-C did: the trials of this run it cut short (numbers from ``first_new``)
    and were enqueued again, and how to go on."""
    trials = study.get_trials(deepcopy=False)
    cut = {t.number for t in trials[first_new:]
           if t.user_attrs.get(FAIL_REASON_ATTR) == INTERRUPTED}
    requeued = sorted(t.user_attrs[RETRY_OF_ATTR] for t in trials
                      if t.state == TrialState.WAITING and t.user_attrs.get(RETRY_OF_ATTR) in cut)
    if not requeued:
        what = "no trial was cut short"
    else:
        what = (f"trial{'s' if len(requeued) > 1 else ''} "
                f"{', '.join(map(str, requeued))} re-enqueued")
    return f"interrupted; {what}; rerun the same command to resume"


def summarise(study: optuna.Study, options: RunOptions, stop: StopRule) -> RunSummary:
    counts = state_counts(study)
    best: BestTrial | None = None
    trial = best_trial(study)
    names = tuple(study.metric_names or ())
    config = incumbent_row(study)
    if config is not None:
        best = BestTrial(names, config["config"], (config["mean"],), config["params"],
                         seeds=config["seeds"], sd=config["sd"], trials=tuple(config["trials"]),
                         wasted=repeats_without_spread(study))
    elif trial is not None and len(study.directions) == 1:
        best = BestTrial(names, trial.number, tuple(trial.values), trial.params)
    elif trial is not None:
        best = BestTrial(names, pareto=tuple(sorted(t.number for t in study.best_trials)))
    return RunSummary(
        name=study.study_name,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        best=best,
        storage=storage_label(options.storage),
        artifacts=str(Path(options.artifacts) / study.study_name),
        stopped_because=stop.final_reason(counts, time.time()),
        trials=options.trials,
    )


__all__ = ["NasHpoError", "RunOptions", "RunSummary", "run"]
