"""Project exceptions: bad input raises these, never ``assert``."""

from __future__ import annotations

import errno

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
