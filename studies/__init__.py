"""The study files shipped with nas-hpo (installed as ``hpo.studies``): ``hpo studies list``."""
