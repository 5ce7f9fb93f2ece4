"""Reports for studies and comparison groups: ``data`` (frames), ``figures`` (matplotlib),
``html`` (one self-contained index.html), ``cli`` (``hpo report``). Never imports torch."""
