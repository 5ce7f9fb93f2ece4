"""Study files (YAML) validated into frozen dataclasses.

A study file declares the data, the fixed search settings, the fidelity, the probes, the
objective and the hyperparameter space (``params``, with an optional explicit ``grid``).
Every error names the file, the key, the value and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from search_core.configtools import coerce, from_mapping, to_plain
from search_core.errors import ConfigError

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
STUDY_KEYS = ("name", "data", "search", "fidelity", "probes", "objective", "params", "grid")
DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "studies" / "digits.yaml"


class StudyError(ConfigError):
    """A study file is malformed; the message names the file, key, value and fix."""


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: float/int range (low, high, log, step) or categorical choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("choices: a categorical parameter needs a non-empty list")
            return
        if self.low is None or self.high is None:
            raise ConfigError(f"low/high: a {self.type} parameter needs both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ConfigError(f"low={self.low}, high={self.high}: need finite low <= high")
        if self.log and self.low <= 0:
            raise ConfigError(f"low={self.low}: a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ConfigError("step: cannot be combined with log: true")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"step={self.step}: need step > 0")
        if self.type == "int" and not (float(self.low).is_integer()
                                       and float(self.high).is_integer()):
            raise ConfigError(f"low={self.low}, high={self.high}: an int range needs integers")

    def values_range(self) -> tuple[Any, Any]:
        """(smallest, largest) value the parameter can take (categorical: sorted choices)."""
        if self.type == "categorical":
            ordered = sorted(self.choices or (), key=lambda v: (str(type(v)), v))
            return ordered[0], ordered[-1]
        if self.type == "int":
            return int(self.low), int(self.high)  # type: ignore[arg-type]
        return self.low, self.high


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a trial returns.

    ``hypervolume``: hypervolume of the family's accuracy/complexity front (maximise).
    ``probe_accuracy``: validation accuracy of probe ``probe`` (maximise).
    ``multi``: (accuracy, complexity) of probe ``probe`` (maximise, minimise): a Pareto set
    of trials. ``synthetic``: a built-in objective with a known optimum (no training), named
    by ``name`` (see hpo/synthetic.py).
    """

    kind: Literal["hypervolume", "probe_accuracy", "multi", "synthetic"] = "hypervolume"
    name: str | None = None  # the built-in objective, for kind "synthetic"
    probe: str = "A"
    complexity: Literal["params", "cell_params", "latency"] = "params"
    reference_accuracy: float = 0.0
    reference_complexity: float | None = None

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.kind == "multi" else ["maximize"]


@dataclass(frozen=True)
class ProbeSpec:
    seed: bool = True  # the seed's A-D probes
    lattice_divisions: int | None = None  # Das-Dennis lattice (None: >= 12 points)

    def __post_init__(self) -> None:
        if self.lattice_divisions is not None and self.lattice_divisions < 1:
            raise ConfigError(f"probes.lattice_divisions: got {self.lattice_divisions}; need "
                              ">= 1 (or leave it out for the default lattice)")


@dataclass(frozen=True)
class StudySpec:
    name: str
    data: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str = ""  # path of the study file

    def to_dict(self) -> dict[str, Any]:
        plain = to_plain(self)
        plain.pop("source")
        return plain

    def fingerprint(self) -> str:
        """Hash of the resolved study (what it computes), to refuse a changed file on resume."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def param_path(name: str) -> str:
    """The SearchConfig path a parameter name sets (alias or dotted path)."""
    return ALIASES.get(name, name)


def load_study(path: str | Path | None = None) -> StudySpec:
    """Read and validate a study file (default: studies/digits.yaml)."""
    path = Path(path) if path is not None else DEFAULT_STUDY
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: study file not found; pass --study with an existing "
                         "YAML file (see studies/)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise StudyError(f"{path}: not valid YAML{where}; fix the syntax") from None
    try:
        return parse_study(raw, source=str(path))
    except ConfigError as err:
        raise StudyError(f"{path}: {err}") from None


def parse_study(raw: Any, source: str = "") -> StudySpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(raw).__name__}")
    top = dict(raw)
    unknown = sorted(set(map(str, top)) - set(STUDY_KEYS))
    if unknown:  # checked here: StudySpec's own fields (epochs, source) are not file keys
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(STUDY_KEYS)}")
    params = _parse_params(top.pop("params", {}) or {})
    grid = _parse_grid(top.pop("grid", {}) or {}, params)
    fidelity = top.pop("fidelity", {}) or {}
    if not isinstance(fidelity, Mapping):
        raise ConfigError(f"fidelity: expected a mapping like {{epochs: 10}}, got {fidelity!r}")
    unknown_fidelity = set(fidelity) - {"epochs"}
    if unknown_fidelity:
        raise ConfigError(f"fidelity: unknown key(s) {sorted(unknown_fidelity)}; valid: epochs")
    top["epochs"] = coerce(int, fidelity.get("epochs", 10), "fidelity.epochs")
    top.setdefault("name", Path(source).stem or "study")
    spec = from_mapping(StudySpec, top)
    spec = StudySpec(**{**spec.__dict__, "params": params, "grid": grid, "source": source})
    _validate_against_search(spec)
    return spec


def _parse_params(raw: Any) -> dict[str, ParamSpec]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params: expected a mapping name -> range, got {raw!r}")
    params = {}
    for name, body in raw.items():
        if isinstance(body, list):  # shorthand: a list is a categorical
            body = {"type": "categorical", "choices": body}
        try:
            params[str(name)] = from_mapping(ParamSpec, body, f"params.{name}")
        except ConfigError as err:
            message = str(err)
            prefix = "" if message.startswith(f"params.{name}") else f"params.{name}: "
            raise ConfigError(prefix + message) from None
    return params


def _parse_grid(raw: Any, params: Mapping[str, ParamSpec]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"grid: expected a mapping name -> list of values, got {raw!r}")
    grid = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{name}: got {values!r}; expected a non-empty list")
        if name not in params:
            raise ConfigError(f"grid.{name}: not declared under params; declare its range "
                              "there too (the grid must lie inside it)")
        spec = params[name]
        for value in values:
            if not _in_range(spec, value):
                raise ConfigError(f"grid.{name}: value {value!r} lies outside params.{name}")
        grid[str(name)] = tuple(values)
    return grid


def _in_range(spec: ParamSpec, value: Any) -> bool:
    if spec.type == "categorical":
        return value in (spec.choices or ())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if spec.type == "int" and not float(value).is_integer():
        return False
    return spec.low <= value <= spec.high  # type: ignore[operator]


def _validate_against_search(spec: StudySpec) -> None:
    """Build the search config with each parameter at each end of its range, so that a bad
    path or an impossible value fails now, not in the middle of a study."""
    from hpo.objective import build_search_config  # local: keeps torch out of parsing

    if spec.objective.kind == "synthetic":
        _check_synthetic(spec)
        return
    config = build_search_config(spec, {}, where="search")
    _check_objective_probe(spec, config.space.ops)
    for name, param in spec.params.items():
        path = param_path(name)
        section, _, key = path.partition(".")
        if section not in SECTIONS or not key:
            raise ConfigError(
                f"params.{name}: not a tunable setting; use one of {', '.join(sorted(ALIASES))} "
                "or a dotted path like train.a_lr"
            )
        for value in param.values_range():
            build_search_config(spec, {name: value}, where=f"params.{name}={value!r}")
    _check_temperature_order(spec)


def _check_synthetic(spec: StudySpec) -> None:
    from hpo.synthetic import SYNTHETIC

    if spec.objective.name is None:
        raise ConfigError(f"objective.name: a synthetic objective needs a name; one of "
                          f"{', '.join(SYNTHETIC.names())}")
    objective = SYNTHETIC.get(spec.objective.name, "objective.name")
    missing = [p for p in objective.params if p not in spec.params]
    if missing:
        raise ConfigError(f"params: objective {spec.objective.name!r} reads {missing}; declare "
                          "them under params")


def _check_objective_probe(spec: StudySpec, ops: tuple[str, ...]) -> None:
    """A probe objective must name one of the study's probes (else every trial would fail)."""
    if spec.objective.kind == "hypervolume":
        return
    from hpo.objective import study_probes

    names = [probe.name for probe in study_probes(spec, ops)]
    if spec.objective.probe not in names:
        raise ConfigError(f"objective.probe: {spec.objective.probe!r} is not a probe of this "
                          f"study; valid: {', '.join(names)}")


def _check_temperature_order(spec: StudySpec) -> None:
    t_start, t_end = spec.params.get("t_start"), spec.params.get("t_end")
    if not (t_start and t_end) or "categorical" in (t_start.type, t_end.type):
        return
    if t_end.high > t_start.low:  # type: ignore[operator]
        raise ConfigError(
            f"params.t_end: high {t_end.high} > params.t_start low {t_start.low}, so some "
            "trials would get t_end > t_start, which annealing schedules forbid; make the "
            "ranges not overlap"
        )
