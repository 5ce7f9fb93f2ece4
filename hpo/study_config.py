"""A study's trial as a search's configuration: the study's fixed ``search`` settings, its
``data``, ``fidelity`` and the trial's ``params`` (by alias or dotted path) become a
``search_core.config.SearchConfig``; and the probes every family is evaluated on. Nothing
here loads torch: a study file is checked in a process that may never train."""


from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from hpo.pipeline import is_pipeline_param
from hpo.study_spec import StudySpec
from search_core.config import SearchConfig
from search_core.configtools import shown
from search_core.errors import ConfigError
from search_core.probes import Probe, lattice_probes, seed_probes

# Short names for the settings users tune most; any dotted SearchConfig path works too.
ALIASES = {
    "kappa": "train.kappa",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "w_lr": "train.w_lr",
    "a_lr": "train.a_lr",
    "s_draws": "train.s_draws",
    "optimizer": "train.optimizer",
    "t_start": "temperature.t_start",
    "t_end": "temperature.t_end",
    "schedule": "temperature.schedule",
    "temperature_per": "temperature.per",
    "num_refs": "hypernet.num_refs",
    "placement": "hypernet.placement",
    "bandwidth": "hypernet.bandwidth",
    "cells": "space.cells",
    "nodes": "space.nodes",
    "channels": "space.channels",
}
SECTIONS = ("space", "hypernet", "temperature", "train")
RUN_KEYS = ("device", "precision")  # top-level keys only, never under search:


def param_path(name: str) -> str:
    """The SearchConfig path a parameter name sets (alias or dotted path)."""
    return ALIASES.get(name, name)


def build_search_config(
    spec: StudySpec, params: Mapping[str, Any], seed: int = 0, where: str = "params"
) -> SearchConfig:
    """The study's fixed ``search`` settings, ``data``, its ``fidelity`` and ``params``.

    A section of ``search`` (``space``, ``train``, ...) that is not a mapping is a
    ``ConfigError`` naming it, like every other bad value."""
    tree: dict[str, Any] = copy.deepcopy(dict(spec.search))
    try:
        for key in RUN_KEYS:
            if key in tree:
                raise ConfigError(f"search.{key}: set {key} at the top level of the study "
                                  f"file ({key}: {shown(tree[key])}), not under search")
        if "data" in tree:  # the study's data section would silently replace it
            raise ConfigError("search.data: set the data set in the top-level data section "
                              "of the study file, not under search")
        if "seed" in tree:  # the run's seed would silently replace it
            raise ConfigError("search.seed: a trial's search seed is the run's --seed "
                              "(and training_seed: common or per_trial); remove it")
        tree["train"] = {**_section(tree, "train"), "epochs": spec.epochs}
        tree["data"] = dict(spec.data)
        tree["seed"] = seed
        tree["device"], tree["precision"] = spec.device, spec.precision
        settings = {**spec.fidelity.settings(),
                    **{param_path(name): value for name, value in params.items()
                       if not is_pipeline_param(name)}}
        for path, value in settings.items():
            section, _, key = path.partition(".")
            tree[section] = {**_section(tree, section), key: value}
        return SearchConfig.from_dict(tree)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _section(tree: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The settings under ``search.<section>`` (none when absent); they must be a mapping."""
    body = tree.get(section, {})
    if not isinstance(body, Mapping):
        raise ConfigError(f"search.{section}: got {shown(body)}; expected a mapping of "
                          f"settings, e.g. {section}: {{key: value}}")
    return dict(body)


def study_probes(spec: StudySpec, ops: tuple[str, ...]) -> list[Probe]:
    """The probes every trial's family is evaluated on: the thesis's A-D and a lattice."""
    probes = seed_probes(ops) if spec.probes.seed else []
    return probes + lattice_probes(len(ops), spec.probes.lattice_divisions)


