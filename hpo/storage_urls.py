"""Storage URLs as they may be shown: the default storage, the file a URL names, and every
password masked (``storage_label``, ``mask_secrets``): a URL's password is never printed or
recorded."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

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



def storage_file(url: str | None) -> Path | None:
    """The file a journal or SQLite storage lives in; None for a database server."""
    url = url or DEFAULT_STORAGE
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if url.startswith(RDB_PREFIXES):
        return None
    return Path(url.removeprefix("journal://"))


