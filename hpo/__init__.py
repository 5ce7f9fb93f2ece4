"""nas-hpo's harness: a complexity-controlled architecture search as an Optuna/Ray objective.

The Python API (``hpo.api``), importable from here::

    import hpo

    results = hpo.run("low-dim-synthetic", sampler="random", trials=8)
    results.trials()              # pandas, one row per trial

``hpo.run``, ``hpo.load``, ``hpo.read_study``, ``hpo.Results``, ``hpo.OptunaObjective``,
``hpo.TrialFailed``; the search itself is ``search_core``. ``hpo.__version__`` is the
installed distribution's version (``hpo --version`` prints it). Importing ``hpo`` loads
nothing else: each name is imported when first used.
"""

from __future__ import annotations

from typing import Any

DISTRIBUTION = "nas-hpo"
API = ("run", "load", "read_study", "Results", "OptunaObjective", "TrialFailed")
__all__ = [*API, "__version__"]


def installed_version() -> str:
    """The version of the installed ``nas-hpo`` (``0+unknown`` run from an uninstalled
    checkout)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read when asked, not at import
        return installed_version()
    if name in API:
        import hpo.api

        return getattr(hpo.api, name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API, "__version__"])
