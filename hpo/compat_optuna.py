"""The private parts of Optuna the harness touches, and nothing else does.

Optuna has no public way to write a user attribute or a state into a trial from a process
that did not ask it (a heartbeat thread, the recovery of a dead worker's trial, a trial
that Ray's searcher asked): that takes the study's storage and the trial's storage id.
Written against Optuna 4.x-5.x; a change there is fixed here.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage id of a trial (``number`` is per study; the storage wants the id)."""
    return trial._trial_id


def set_trial_attr(study: optuna.Study, storage_id: int, key: str, value: Any) -> None:
    """Write user attribute ``key`` of the trial with storage id ``storage_id``."""
    study._storage.set_trial_user_attr(storage_id, key, value)


def stored_state(study: optuna.Study, trial: optuna.Trial) -> TrialState:
    """The trial's state as stored now (another process may have finished it)."""
    return study._storage.get_trial(trial_id(trial)).state


def fail_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Mark a RUNNING trial that this process did not ask as FAIL."""
    study._storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)


def enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters an enqueued (WAITING) trial will run with: Optuna keeps them in a
    system attribute until the trial is asked."""
    return dict(trial.system_attrs.get("fixed_params") or {})
