"""Optuna storages from URLs: journal files (default), SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from search_core.errors import ConfigError

DEFAULT_STORAGE = "runs/hpo.journal"
RDB_PREFIXES = ("sqlite://", "postgresql://", "postgresql+psycopg2://", "mysql://")


def open_storage(url: str | None, must_exist: bool = False) -> BaseStorage:
    """``runs/hpo.journal`` by default; ``journal:///path``, a ``.journal``/``.log`` path, or an
    SQLAlchemy URL (sqlite:///f.db, postgresql://user@host/db) otherwise."""
    url = url or DEFAULT_STORAGE
    if url.startswith(RDB_PREFIXES):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            return RDBStorage(url)
        except Exception as err:  # driver missing, server down, bad URL
            raise ConfigError(f"--storage {url}: cannot open ({type(err).__name__}: "
                              f"{str(err).splitlines()[0]})") from None
    if "://" in url and not url.startswith("journal://"):
        raise ConfigError(f"--storage {url}: unknown scheme; use a journal file path, "
                          "sqlite:///FILE.db or postgresql://USER@HOST/DB")
    path = Path(url.removeprefix("journal://"))
    if must_exist and not path.exists():
        raise ConfigError(f"--storage {url}: no such journal file; run `hpo run` first or "
                          "pass the --storage the study was run with")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def storage_label(url: str | None) -> str:
    return url or DEFAULT_STORAGE


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]
