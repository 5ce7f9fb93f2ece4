"""Backends: where a study's trials run. One module per backend, one registry line each
(``hpo.backends.registry``).

``local``: this process (``--jobs 1``) or ``--jobs`` worker processes on one machine.
``ray``: Ray Tune on a cluster (Ray is imported only when it runs).
A backend implements ``hpo.backends.base.Backend``; see README, "Extending".
"""

from __future__ import annotations

from hpo.backends.base import Backend, RunJob
from hpo.backends.registry import BACKENDS

__all__ = ["BACKENDS", "Backend", "RunJob"]
