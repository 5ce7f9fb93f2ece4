"""The backend registry: names to factories that import their module when called, so that
checking a backend's name (``hpo.flags.check_run_flags``, before anything else) imports
neither torch nor Ray, nor the backends' own modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search_core.registry import Registry


def _local() -> Any:  # a hpo.backends.base.Backend (not imported: it imports hpo.options)
    from hpo.backends.local import LocalBackend

    return LocalBackend()


def _ray() -> Any:
    from hpo.backends.ray import RayBackend

    return RayBackend()


BACKENDS: Registry[Callable[[], Any]] = Registry("backend")
BACKENDS.add("local", _local)
BACKENDS.add("ray", _ray)
