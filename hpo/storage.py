"""Optuna storages from URLs: journal files (default), SQLite and PostgreSQL (through
``hpo.database``). A URL's password is never shown: see ``hpo.storage_urls``."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend

import hpo.journal as journal
from hpo.database import open_database
from hpo.storage_urls import DEFAULT_STORAGE, RDB_PREFIXES, storage_file, storage_label
from search_core.errors import ConfigError

log = logging.getLogger(__name__)


def open_storage(url: str | None, must_exist: bool = False) -> BaseStorage:
    """``runs/hpo.journal`` by default; ``journal:///path``, a ``.journal``/``.log`` path, or an
    SQLAlchemy URL (sqlite:///f.db, postgresql://user@host/db) otherwise."""
    url = url or DEFAULT_STORAGE
    if url.startswith(RDB_PREFIXES):
        if url.startswith("sqlite:///"):
            _check_sqlite_file(url, must_exist)
        return open_database(url)
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


def open_journal(path: Path) -> JournalStorage:
    """A journal file storage, repaired first if a write was cut short (hpo/journal.py)."""
    lock = journal.OwnedJournalLock(str(path))
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
