"""Reports for studies, comparison groups and latency tables: ``data`` (frames),
``latency`` (a latency table read as JSON), ``figures`` (matplotlib), ``html`` (one
self-contained index.html), ``cli`` (``hpo report``). Never imports torch."""
