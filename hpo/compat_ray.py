"""The private parts of Ray Tune's ``OptunaSearch`` the Ray backend touches.

``OptunaSearch`` keeps the Optuna trial of each Tune trial, its study and the Tune trials
already told in private attributes; the backend's searcher reads them to record what the
trials report and to tell their end. Written against Ray 2.x; a change there is fixed here.
"""

from __future__ import annotations

from typing import Any

import optuna


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
