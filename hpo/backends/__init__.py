"""Backends: where a study's trials run. One module per backend, one registry line each
(``hpo.backends.registry``).

``local``: this process (``--jobs 1``) or ``--jobs`` worker processes on one machine.
``ray``: Ray Tune on a cluster (Ray is imported only when it runs).
A backend implements ``hpo.backends.base.Backend``; see README, "Extending". Nothing is
imported here: the registry is light (``hpo.options`` reads it), the contract is not.
"""
