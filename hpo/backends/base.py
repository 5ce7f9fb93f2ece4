"""The contract between ``hpo run`` and a backend (where and how trials run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from hpo.options import RunOptions
from hpo.stopping import StopRule
from hpo.study_spec import StudySpec


@dataclass(frozen=True)
class RunJob:
    """What a backend is given: the created (or resumed) study, its spec (the study file
    read once; workers get it, never the path), the options, the stop rule, the study's
    sampler (``hpo.samplers.study_sampler``, built once) and a progress display
    (``update(study)``; may be None)."""

    options: RunOptions
    study: optuna.Study
    spec: StudySpec
    stop: StopRule
    sampler: optuna.samplers.BaseSampler
    progress: Any = None


class Backend(Protocol):
    """Runs a study's trials until ``job.stop`` says stop.

    Guarantees a backend gives (tests/test_hpo_cli.py, test_faults.py, test_ray_backend.py):
    - every trial is sampled by the study's sampler (``job.sampler``, or one built alike in
      each worker process), run by ``hpo.trial.run_trial`` on ``job.spec`` and ended by
      ``hpo.trial.record_outcome`` in the process that owns its Optuna trial: the same
      states, reasons and user attributes (``TrialRecord``) whatever the backend;
    - exactness: the study never gets more finished trials than ``job.stop`` allows;
    - liveness: a running trial's owner writes a heartbeat (``hpo.liveness.Heartbeat``); a
      trial whose owner died is failed with the reason and its configuration re-enqueued
      (``recover_stale_trials``), so a resumed or continuing run loses nothing complete;
    - a full disk propagates as ``OSError`` (ENOSPC) and nothing else of the run's own
      making escapes ``run`` (Ray: the trial that met it is failed and re-enqueued, no new
      trial starts, and ``run`` raises once Tune returns); KeyboardInterrupt propagates
      after the trial is recorded.
    ``run`` returns one line per worker process that died while it ran (empty if none).
    """

    def run(self, job: RunJob) -> list[str]: ...
