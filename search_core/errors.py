"""Project exceptions: bad input raises these, never ``assert``."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # no space, quota, size


class NasHpoError(Exception):
    """Base of every error the user can cause and fix; the CLI prints it as one line."""


class ConfigError(NasHpoError, ValueError):
    """A configuration value is invalid; the message names the key, the value and the fix."""


class DataError(NasHpoError):
    """A data set cannot be loaded; the message says which files are expected and where."""


class DivergenceError(NasHpoError, FloatingPointError):
    """Training produced a non-finite loss."""


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full: not a trial's fault."""
    return isinstance(err, OSError) and err.errno in DISK_FULL


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the valid name closest to a mistyped one, else ``""``."""
    if not isinstance(name, str):
        return ""
    choices = list(valid)
    by_case = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(by_case), n=1, cutoff=0.6)
    return f" (did you mean {by_case[close[0]]}?)" if close else ""


def require_extra(module: str, extra: str, feature: str) -> None:
    """Raise one line naming the pip extra that installs ``module`` when it is missing
    (ray, scikit-optimize and matplotlib each serve one optional feature)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{feature} needs {module}, which is not installed; install it with "
                          f"pip install \"nas-hpo[{extra}]\"")
