"""nas-hpo's harness: a complexity-controlled architecture search as an Optuna/Ray objective.

``hpo.__version__`` is the installed distribution's version (``hpo --version`` prints it).
"""

from __future__ import annotations

DISTRIBUTION = "nas-hpo"


def installed_version() -> str:
    """The version of the installed ``nas-hpo`` (``0+unknown`` run from an uninstalled
    checkout)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":  # read when asked, not at import
        return installed_version()
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
