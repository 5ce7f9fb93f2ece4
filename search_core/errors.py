"""Project exceptions: bad input raises these, never ``assert``."""

from __future__ import annotations


class NasHpoError(Exception):
    """Base of every error the user can cause and fix; the CLI prints it as one line."""


class ConfigError(NasHpoError, ValueError):
    """A configuration value is invalid; the message names the key, the value and the fix."""


class DataError(NasHpoError):
    """A data set cannot be loaded; the message says which files are expected and where."""


class DivergenceError(NasHpoError, FloatingPointError):
    """Training produced a non-finite loss."""
