"""The evaluation tables shipped with nas-hpo (installed as ``hpo.tables``), for table studies."""
