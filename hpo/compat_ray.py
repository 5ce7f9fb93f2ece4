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
