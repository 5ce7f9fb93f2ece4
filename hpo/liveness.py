"""Who owns a running trial, and how a dead owner is noticed: the study's lock, heartbeats,
and the recovery of stale trials (failed with the reason, re-enqueued).

The study's lock (``study_lock``) is keyed on the storage and the study's name, never on a
working folder or ``--artifacts``: every ``hpo`` process that uses the study holds the same
lock while it creates the study, counts and asks, recovers stale trials or records a
re-evaluation. A journal or SQLite file: an ``flock`` on a lock file in a hidden folder beside
it (every process on every host that shares that filesystem with working ``flock``);
PostgreSQL: an advisory lock in the database itself (every host that reaches the
database)."""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.compat_optuna import fail_trial, set_trial_attr, trial_id
from hpo.database import advisory_lock
from hpo.records import (
    FAIL_REASON_ATTR,
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    owner_alive,
    owner_on_this_host,
    retry_attrs,
)
from hpo.storage_urls import storage_file
from search_core.errors import ConfigError

log = logging.getLogger(__name__)
HEARTBEAT_S = 30.0  # a running trial's owner writes a heartbeat this often
STALE_AFTER_S = 600.0  # a RUNNING trial without a heartbeat for this long is stale
STALE_ENV = "HPO_STALE_AFTER_S"  # a user's own silence limit (e.g. a cluster that may stall)


def stale_after_s() -> float:
    """Seconds without a heartbeat after which a RUNNING trial is stale: ``HPO_STALE_AFTER_S``,
    else 600."""
    value = os.environ.get(STALE_ENV, "").strip()
    if not value:
        return STALE_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{STALE_ENV}={value[:40]!r}: not a positive number of seconds; "
                          f"unset it or give one, e.g. {STALE_ENV}=1200")
    return seconds


def heartbeat_s() -> float:
    """How often a running trial's owner writes its heartbeat: every 30 s, or four times
    within the silence limit if that is shorter."""
    return min(HEARTBEAT_S, stale_after_s() / 4)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LOCK_FOLDER = ".hpo-locks"  # beside a journal or SQLite file: the studies' lock files
LOCK_SUFFIX = ".hpo-lock"  # (Optuna's own lock of a journal, FILE.lock, comes and goes)


def lock_path(storage: str | None, name: str) -> Path | None:
    """The lock file of study ``name`` in a file storage (journal, SQLite): one per study,
    in one hidden folder beside the file (``runs/.hpo-locks/hpo.journal.NAME.hpo-lock``), so
    the storage's folder does not fill with them; None for a database server (its lock is
    an advisory lock). A lock file stays after its holder is done: removing it would let a
    process that opened it before the removal hold a lock no other process takes."""
    path = storage_file(storage)
    if path is None:
        return None
    return path.parent / LOCK_FOLDER / f"{path.name}.{name}{LOCK_SUFFIX}"


@contextmanager
def study_lock(storage: str | None, name: str) -> Iterator[None]:
    """Hold study ``name``'s lock in ``storage`` (see the module's docstring)."""
    path = lock_path(storage, name)
    if path is not None:
        with file_lock(path):
            yield
        return
    with advisory_lock(storage or "", name):
        yield


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a dead process (this host: its pid is gone; any host: no
    heartbeat for ``stale_after_s()``): mark FAIL and enqueue their parameters again. Call it
    under the study's lock."""
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial)
        if reason is None:
            continue
        set_trial_attr(study, trial_id(trial), FAIL_REASON_ATTR,
                       f"{reason}; configuration re-enqueued")
        fail_trial(study, trial)
        study.enqueue_trial(trial.params,
                            user_attrs=retry_attrs(trial.number, trial.user_attrs))
        stale.append(trial.number)
    if stale:
        log.warning("marked trials %s failed (their process died) and re-enqueued them", stale)
    return stale


def stale_reason(trial: optuna.trial.FrozenTrial, now: float | None = None) -> str | None:
    """Why a RUNNING trial is stale, or None while its owner may be alive."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    if owner is not None and owner_on_this_host(owner) and not owner_alive(owner):
        return "worker died (process gone)"
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    age = (time.time() if now is None else now) - float(beat or 0)
    if age > stale_after_s():
        return f"worker silent for {age:.0f} s (no heartbeat; host gone?)"
    return None


class Heartbeat:
    """While a trial runs, a thread of its owner writes ``HEARTBEAT_ATTR`` (now) every
    ``heartbeat_s()`` into each trial ``trial_ids()`` names (storage ids), so that a process on
    another host can tell a silent (dead) owner from a busy one (``stale_reason``)."""

    def __init__(self, study: optuna.Study, trial_ids: Callable[[], list[int]]) -> None:
        self._study, self._trial_ids = study, trial_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            self.beat()

    def beat(self) -> None:
        for storage_id in self._trial_ids():
            try:
                set_trial_attr(self._study, storage_id, HEARTBEAT_ATTR, time.time())
            except Exception as err:  # finished meanwhile, storage briefly away: next beat
                log.debug("heartbeat of trial id %s not written: %s", storage_id, err)
