"""Backends: where a study's trials run. One module per backend, one registry line each
(``hpo.backend_registry``).

``local``: this process (``--jobs 1``) or ``--jobs`` worker processes on one machine.
``ray``: Ray Tune on a cluster (Ray is imported only when it runs).
A backend implements ``hpo.backends.base.Backend``; see docs/guides/extending.md. The registry
lives outside this package (``hpo.options`` reads it, and the backends import hpo.options).
"""
