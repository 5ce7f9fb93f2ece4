"""The backend registry: each backend's name, where its class lives and its capabilities.
A backend's module is imported by name when the backend is created (as an entry point is),
so that checking a backend's name and capabilities (``hpo.options.checked``, before
anything else) imports neither torch nor Ray, nor the backends' own modules, which import
``hpo.options`` themselves."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from search_core.registry import Registry


@dataclass(frozen=True)
class BackendEntry:
    """A backend and what it can do; the harness asks these, never the backend's name."""

    module: str  # the module that defines the backend's class
    class_name: str  # a hpo.backends.base.Backend, made without arguments
    local_workers: bool  # runs --jobs worker processes on this machine (threads = CPUs / jobs)
    cluster: bool  # schedules trials on a cluster: --address, --concurrency, CPUs and GPU
    # shares per trial; a joined cluster's nodes, not this machine, must have the device
    description: str = ""
    needs: tuple[str, str] = ()  # (module, pip extra) of an optional dependency

    def create(self) -> Any:
        """A new backend (its module imported now)."""
        return getattr(importlib.import_module(self.module), self.class_name)()


BACKENDS: Registry[BackendEntry] = Registry("backend")
BACKENDS.add("local", BackendEntry("hpo.backends.local", "LocalBackend", local_workers=True,
                                   cluster=False,
                                   description="this process, or --jobs worker processes"))
BACKENDS.add("ray", BackendEntry("hpo.backends.ray", "RayBackend", local_workers=False,
                                 cluster=True,
                                 description="Ray Tune on a started or joined cluster",
                                 needs=("ray", "ray")))
