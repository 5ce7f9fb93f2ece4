"""Backends: where a study's trials run. One module per backend, one registry line each.

``local``: this process (``--jobs 1``) or ``--jobs`` worker processes on one machine.
``ray``: Ray Tune on a cluster (Ray is imported only when it runs).
A backend implements ``hpo.backends.base.Backend``; see README, "Extending". The registry
holds factories that import their module when called, so checking a backend's name (before
anything else, in ``hpo.options.check_run_flags``) imports neither torch nor Ray.
"""

from __future__ import annotations

from collections.abc import Callable

from hpo.backends.base import Backend, RunJob
from search_core.registry import Registry


def _local() -> Backend:
    from hpo.backends.local import LocalBackend

    return LocalBackend()


def _ray() -> Backend:
    from hpo.backends.ray import RayBackend

    return RayBackend()


BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")
BACKENDS.add("local", _local)
BACKENDS.add("ray", _ray)

__all__ = ["BACKENDS", "Backend", "RunJob"]
