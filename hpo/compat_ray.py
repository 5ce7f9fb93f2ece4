"""The private parts of Ray (Tune's ``OptunaSearch``, a constant of Ray's) the Ray backend
touches.

``OptunaSearch`` keeps the Optuna trial of each Tune trial, its study and the Tune trials
already told in private attributes; the backend's searcher reads them to record what the
trials report and to tell their end. Written against Ray 2.x; a change there is fixed here.
"""

from __future__ import annotations

import os
from typing import Any

import optuna

LOOPBACK_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_only() -> None:
    """Make the local cluster Ray is about to start use 127.0.0.1: its servers then listen on
    loopback only. Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` into a constant when it
    is first imported, so setting the variable later (Ray already imported) changes nothing:
    Ray then resolved "127.0.0.1" to the machine's network address and its servers listened
    on every interface. The variable is set too, for the processes Ray starts."""
    os.environ[LOOPBACK_VAR] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def optuna_trials(searcher: Any) -> dict[str, optuna.Trial]:
    """Tune trial id -> the Optuna trial the searcher asked for it."""
    return searcher._ot_trials


def optuna_study(searcher: Any) -> optuna.Study:
    return searcher._ot_study


def told(searcher: Any) -> set[str]:
    """Tune trial ids whose Optuna trial has been told."""
    return searcher._completed_trials


def picklable_state(searcher: Any) -> dict[str, Any]:
    """The searcher's state as Tune pickles it (``tuner.pkl``, its experiment state) without
    the Optuna storage and study: they carry the storage URL, password included, and the
    live searcher in the driver keeps them."""
    state = dict(searcher.__dict__)
    state["_storage"] = None
    state["_ot_study"] = None
    state["_ot_trials"] = {}
    return state
