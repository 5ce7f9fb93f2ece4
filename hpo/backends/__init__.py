"""Backends: where a study's trials run. One module per backend, one registry line each.

``local``: this process (``--jobs 1``) or ``--jobs`` worker processes on one machine.
``ray``: Ray Tune on a cluster (Ray is imported only when it runs).
A backend implements ``hpo.backends.base.Backend``; see README, "Extending".
"""

from __future__ import annotations

from collections.abc import Callable

from hpo.backends.base import Backend, RunJob
from hpo.backends.local import LocalBackend
from hpo.backends.ray import RayBackend
from search_core.registry import Registry

BACKENDS: Registry[Callable[[], Backend]] = Registry("backend")
BACKENDS.add("local", LocalBackend)
BACKENDS.add("ray", RayBackend)

__all__ = ["BACKENDS", "Backend", "RunJob"]
