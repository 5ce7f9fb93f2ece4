"""Optuna storages in a database server (PostgreSQL, MySQL) or SQLite: opened with the race
of two processes creating the tables handled, kept working through a restarted or briefly
unreachable server (``RetryingRDBStorage``), and the study's advisory lock."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

from optuna.storages import RDBStorage

from hpo.storage_urls import mask_secrets, storage_label
from search_core.errors import ConfigError, NasHpoError

log = logging.getLogger(__name__)

SCHEMA_RACE = ("duplicate key", "already exists")  # two processes creating the tables at once
SCHEMA_TRIES = 5


RETRY_ENV = "HPO_STORAGE_RETRY_S"  # how long a call waits for the database to come back
DEFAULT_RETRY_S = 60.0
FIRST_WAIT_S, LONGEST_WAIT_S = 0.5, 5.0  # backoff between attempts: 0.5, 1, 2, 4, 5, 5, ...
T = TypeVar("T")


class StorageUnavailable(NasHpoError):
    """The database did not answer for the whole retry budget (``hpo`` exits 5)."""


def open_database(url: str) -> RDBStorage:
    """Optuna's storage in a database. Processes that open a new database at the same time
    race to create its tables; the losers try again (bounded backoff: 0.2, 0.4, ... s). Any
    other failure (driver missing, server down, bad URL) is one line at once. Once open, a
    call that meets a restarting or unreachable server is retried (``RetryingRDBStorage``)."""
    for attempt in range(SCHEMA_TRIES):
        try:
            return RetryingRDBStorage(url)
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0][:300]
            if attempt + 1 < SCHEMA_TRIES and any(word in first for word in SCHEMA_RACE):
                time.sleep(0.2 * 2**attempt)
                continue
            raise ConfigError(mask_secrets(f"--storage {url}: cannot open "
                                           f"({type(err).__name__}: {first})", url)) from None
    raise AssertionError("unreachable")


def retry_budget() -> float:
    """Seconds a storage call keeps retrying: ``HPO_STORAGE_RETRY_S``, else 60."""
    value = os.environ.get(RETRY_ENV, "").strip()
    if not value:
        return DEFAULT_RETRY_S
    try:
        return max(float(value), 0.0)
    except ValueError:
        raise ConfigError(f"{RETRY_ENV}={value[:40]!r}: not a number of seconds; unset it "
                          f"or give one, e.g. {RETRY_ENV}=120") from None


def cause_of(err: BaseException,
             matches: Callable[[BaseException], bool]) -> BaseException | None:
    """``err`` or the first exception in its chain of causes that ``matches`` (Optuna wraps
    SQLAlchemy's error, which wraps the driver's; Tune wraps what a searcher raised)."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None or matches(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def lost_connection(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the server could not be reached or dropped
    the connection, as opposed to a query it refused."""
    import sqlalchemy.exc as sa

    def dropped(seen: BaseException) -> bool:
        return isinstance(seen, (sa.OperationalError, sa.InterfaceError)) or (
            isinstance(seen, sa.DBAPIError) and seen.connection_invalidated)

    return cause_of(err, dropped) is not None


def first_line(err: BaseException) -> str:
    """``err``'s root cause as ``Type: first line``, bounded."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = (str(err).strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {text}"


_CALLING = threading.local()  # a retried call in progress on this thread (inner calls run once)


class Retry:
    """Calls that wait out a database outage: on a lost connection, try again after 0.5, 1, 2,
    4, 5, 5, ... s until ``retry_budget()`` has passed since the first failure, then raise
    ``StorageUnavailable``. One warning when an outage starts (whichever call meets it
    first), none for the calls that meet the same outage."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outage_since: float | None = None

    def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if getattr(_CALLING, "active", False):
            return method(*args, **kwargs)
        _CALLING.active = True
        try:
            return self._attempts(method, args, kwargs)
        finally:
            _CALLING.active = False

    def _attempts(self, method: Callable[..., T], args: tuple, kwargs: dict) -> T:
        deadline, wait = None, FIRST_WAIT_S
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as err:
                if not lost_connection(err):
                    raise
                now, budget = time.monotonic(), retry_budget()
                deadline = deadline or now + budget
                self._warn_once(err, budget)
                if now >= deadline:
                    raise StorageUnavailable(mask_secrets(
                        f"--storage {self.url}: no answer for {budget:.0f} s "
                        f"({first_line(err)}); every finished trial is stored: run the same "
                        "command again once the database is back to resume", self.url)
                    ) from None
                time.sleep(min(wait, deadline - now))
                wait = min(2 * wait, LONGEST_WAIT_S)
                continue
            if self.outage_since is not None:
                log.info("%s answers again after %.1f s", storage_label(self.url),
                         time.monotonic() - self.outage_since)
                self.outage_since = None
            return result

    def _warn_once(self, err: BaseException, budget: float) -> None:
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning(mask_secrets(f"--storage {self.url}: the database did not answer "
                                     f"({first_line(err)}); retrying for up to {budget:.0f} "
                                     f"s (set {RETRY_ENV} to change)", self.url))


def _retried(names: tuple[str, ...]) -> Callable[[type], type]:
    """A class decorator: each named method of the class's base goes through ``self.retry``."""

    def wrap(cls: type) -> type:
        for name in names:
            method = getattr(cls.__mro__[1], name)

            def call(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
                return self.retry.call(_method, self, *args, **kwargs)

            call.__name__ = call.__qualname__ = name
            call.__doc__ = method.__doc__
            setattr(cls, name, call)
        return cls

    return wrap


# every call Optuna makes on a storage (BaseStorage's interface and the heartbeat's)
STORAGE_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "create_new_trial",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_n_trials", "get_best_trial", "get_trial_params", "get_trial_user_attrs",
    "get_trial_system_attrs", "check_trial_is_updatable", "record_heartbeat",
    "_get_stale_trial_ids")


@_retried(STORAGE_CALLS)
class RetryingRDBStorage(RDBStorage):
    """Optuna's ``RDBStorage`` that survives a database restart: connections are checked
    before use (``pool_pre_ping``), and every call waits out an outage (``Retry``). A write
    whose commit reached the server just as the connection died may be applied twice; the
    server's clean shutdown (``pg_ctl stop -m fast``) rolls back what it had not committed."""

    def __init__(self, url: str) -> None:
        super().__init__(url, engine_kwargs={"pool_pre_ping": True})
        self.retry = Retry(url)


@lru_cache(maxsize=4)
def _lock_engine(url: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _lock_key(name: str) -> int:
    """A signed 64-bit key for study ``name`` (PostgreSQL's advisory lock space)."""
    digest = hashlib.sha256(f"nas-hpo:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def advisory_lock(url: str, name: str) -> Iterator[None]:
    """Study ``name``'s lock held in the database at ``url`` (PostgreSQL
    ``pg_advisory_lock``, MySQL ``GET_LOCK``): every host that reaches the database shares
    it, and the server releases it when the holder's connection dies."""
    from sqlalchemy import text

    mysql = url.startswith("mysql")
    take = "SELECT GET_LOCK(:key, -1)" if mysql else "SELECT pg_advisory_lock(:key)"
    give = "SELECT RELEASE_LOCK(:key)" if mysql else "SELECT pg_advisory_unlock(:key)"
    key: Any = f"nas-hpo:{name}"[:64] if mysql else _lock_key(name)
    try:
        connection = _lock_engine(url).connect()
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ConfigError(mask_secrets(f"--storage {url}: cannot take the study's lock "
                                       f"({type(err).__name__}: {first})", url)) from None
    with connection:
        connection.execute(text(take), {"key": key})
        try:
            yield
        finally:
            _release(connection, text(give), key)


def _release(connection: Any, give: Any, key: Any) -> None:
    """Give the lock back; if the connection died meanwhile, the server already has."""
    try:
        connection.execute(give, {"key": key})
    except Exception as err:
        if not lost_connection(err):
            raise
        log.debug("the study's lock went with its connection: %s", first_line(err))


