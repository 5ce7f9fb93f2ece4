"""Optuna storages from URLs: journal files (default), SQLite and PostgreSQL.

A URL's password is never printed or recorded: everything that shows a storage goes through
``storage_label``, and errors are masked the same way.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from hpo import journal
from search_core.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "runs/hpo.journal"
STORAGE_HELP = (f"Optuna storage: journal file path (default {DEFAULT_STORAGE}), "
                "sqlite:///FILE.db or postgresql://USER@HOST/DB")
RDB_PREFIXES = ("sqlite://", "postgresql://", "postgresql+psycopg2://",
                "postgresql+psycopg://", "mysql://")
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<secret>[^@\s]*)@")


_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|pass)=)(?P<secret>[^&\s]*)",
                           re.IGNORECASE)


def storage_label(url: str | None) -> str:
    """The storage as it may be shown: the default path, or the URL without its password."""
    return mask_secrets(url or DEFAULT_STORAGE, url)


def url_secrets(url: str | None) -> list[str]:
    """The passwords ``url`` carries: its user info's (which may hold spaces or a raw ``@``)
    and any ``password=`` query value."""
    if not url or "://" not in url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:  # e.g. a port that is not a number
        found = []
    found += [m["secret"] for m in _QUERY_SECRET.finditer(url)]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def mask_secrets(text: str, url: str | None = None) -> str:
    """``text`` with every ``scheme://user:password@`` password and ``password=`` query value
    replaced by ``***`` (and, given ``url``, that URL's passwords wherever else they appear,
    e.g. in a driver's error)."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    masked = _CREDENTIALS.sub(lambda m: f"{m['head']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", masked)


def open_storage(url: str | None, must_exist: bool = False) -> BaseStorage:
    """``runs/hpo.journal`` by default; ``journal:///path``, a ``.journal``/``.log`` path, or an
    SQLAlchemy URL (sqlite:///f.db, postgresql://user@host/db) otherwise."""
    url = url or DEFAULT_STORAGE
    if url.startswith(RDB_PREFIXES):
        if url.startswith("sqlite:///"):
            _check_sqlite_file(url, must_exist)
        return _open_database(url)
    if "://" in url and not url.startswith("journal://"):
        raise ConfigError(f"--storage {storage_label(url)}: unknown scheme; use a journal file "
                          "path, sqlite:///FILE.db or postgresql://USER@HOST/DB")
    path = storage_file(url)
    assert path is not None
    if not str(path).strip() or path.is_dir():
        raise ConfigError(f"--storage {storage_label(url)}: a folder, not a journal file; "
                          "pass a file path such as runs/hpo.journal")
    if must_exist and not path.exists():
        raise ConfigError(f"--storage {url}: no such journal file; run `hpo run` first or "
                          "pass the --storage the study was run with")
    path.parent.mkdir(parents=True, exist_ok=True)
    return open_journal(path)


def _check_sqlite_file(url: str, must_exist: bool) -> None:
    """A command that reads studies does not create a database (nor its folders); one that
    writes creates the folder its file goes in."""
    path = storage_file(url)
    assert path is not None
    if path.is_dir():
        raise ConfigError(f"--storage {storage_label(url)}: a folder, not a database file")
    if must_exist and not path.exists():
        raise ConfigError(f"--storage {storage_label(url)}: no such database file; run `hpo "
                          "run` first or pass the --storage the study was run with")
    path.parent.mkdir(parents=True, exist_ok=True)


SCHEMA_RACE = ("duplicate key", "already exists")  # two processes creating the tables at once
SCHEMA_TRIES = 5


def _open_database(url: str) -> RDBStorage:
    """Optuna's storage in a database. Processes that open a new database at the same time
    race to create its tables; the losers try again (bounded backoff: 0.2, 0.4, ... s). Any
    other failure (driver missing, server down, bad URL) is one line at once."""
    for attempt in range(SCHEMA_TRIES):
        try:
            return RDBStorage(url)
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0][:300]
            if attempt + 1 < SCHEMA_TRIES and any(word in first for word in SCHEMA_RACE):
                time.sleep(0.2 * 2**attempt)
                continue
            raise ConfigError(mask_secrets(f"--storage {url}: cannot open "
                                           f"({type(err).__name__}: {first})", url)) from None
    raise AssertionError("unreachable")


def storage_file(url: str | None) -> Path | None:
    """The file a journal or SQLite storage lives in; None for a database server."""
    url = url or DEFAULT_STORAGE
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if url.startswith(RDB_PREFIXES):
        return None
    return Path(url.removeprefix("journal://"))


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
            connection.execute(text(give), {"key": key})


def open_journal(path: Path) -> JournalStorage:
    """A journal file storage, repaired first if a write was cut short (hpo/journal.py)."""
    lock = JournalFileOpenLock(str(path))
    _report(journal.repair_tail(path, lock))
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except ValueError as err:  # json.JSONDecodeError, Optuna's "Invalid log format."
        _report(journal.repair_after_error(path, lock, err))
    except FORGED as err:  # operations that parse but that Optuna cannot replay
        raise _forged(path, err) from None
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except ValueError as err:
        raise journal.JournalError(f"{path}: unreadable after a repair ({str(err)[:200]}); "
                                   "restore it from its backup") from None
    except FORGED as err:
        raise _forged(path, err) from None


# what Optuna raises replaying an operation with a missing or changed key, an unknown op code
# or a value of the wrong type (a bit flip, an edit by hand)
FORGED = (KeyError, TypeError, AttributeError, IndexError, AssertionError)


def _forged(path: Path, err: Exception) -> journal.JournalError:
    return journal.JournalError(
        f"{path}: holds an operation Optuna cannot replay ({type(err).__name__}: "
        f"{str(err)[:120]}); it was edited or damaged: restore it from a backup (the tool "
        "changed nothing)")


def _report(done: str | None) -> None:
    if done is not None:
        log.warning("repaired the journal: %s", done)


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def load_existing_study(url: str | None, name: str) -> optuna.Study:
    """The study ``name`` in the storage at ``url``; one line naming the studies there if it
    does not exist."""
    storage = open_storage(url, must_exist=True)
    if name not in study_names(storage):
        known = ", ".join(study_names(storage)) or "none"
        raise ConfigError(f"no study {name!r} in {storage_label(url)}; studies there: {known}")
    return optuna.load_study(study_name=name, storage=storage)
