"""What a trial returns: the objective kinds (one registry) and the study's ``objective:``
section (``ObjectiveSpec``).

An objective declares its directions and how it reads a trial's result: ``from_family``
reads the family table of a trained search (hypervolume, a probe's accuracy, ...);
``from_params`` computes the value from the parameters alone (synthetic objectives: no
training). A study file names one with ``objective: {kind: NAME}``.

Adding one is a module with a function and one ``OBJECTIVES.add`` line here
(docs/guides/extending.md). torch-free: the study parser and the reports import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from search_core.configtools import shown
from search_core.errors import ConfigError, did_you_mean
from search_core.registry import Registry

if TYPE_CHECKING:
    from search_core.family import FamilyTable

MAXIMIZE, MINIMIZE = "maximize", "minimize"


@dataclass(frozen=True)
class Objective:
    """One kind of objective.

    ``directions``: one per value, "maximize" or "minimize" (two or more: a Pareto study).
    ``from_family(spec, table)``: the values, from the trained family; or
    ``from_params(spec, params, seed)``: the values without training (exactly one of the
    two).
    ``reads_probe``: ``objective.probe`` must name one of the study's probes.
    ``complexity_axis``: the value depends on ``objective.complexity`` (reports draw fronts
    on that axis). ``validate(spec, param_names)``: extra checks of the study (ConfigError).
    ``optimum(spec)``: the best value when known (strategy comparisons report regret).
    ``clock(spec, params)``: the seconds a ``from_params`` evaluation stands for (a table
    objective's simulated run time; recorded as the trial's seconds).
    ``metric_names(spec)``: a short name per value, as Optuna's dashboard and our
    summaries show it (default: the kind's name).
    ``expected(spec, params_list)``: the value's mean over training seeds at each of
    ``params_list`` (one call for many: a forest predicts them together), where the
    objective knows it (a table's surrogate mean): what an incumbent chosen on one
    seed's noisy value is worth on fresh seeds; comparisons also judge samplers by it."""

    directions: tuple[str, ...]
    description: str
    from_family: Callable[[ObjectiveSpec, FamilyTable], list[float]] | None = None
    from_params: Callable[[ObjectiveSpec, Mapping[str, Any], int], list[float]] | None = None
    reads_probe: bool = False
    complexity_axis: bool = False
    validate: Callable[[ObjectiveSpec, Collection[str]], None] | None = None
    optimum: Callable[[ObjectiveSpec], float | None] | None = None
    clock: Callable[[ObjectiveSpec, Mapping[str, Any]], float] | None = None
    metric_names: Callable[[ObjectiveSpec], tuple[str, ...]] | None = None
    expected: Callable[[ObjectiveSpec, Sequence[Mapping[str, Any]]], list[float]] | None = None

    def __post_init__(self) -> None:
        if (self.from_family is None) == (self.from_params is None):
            raise ValueError("an objective reads either the family or the parameters")

    @property
    def trains(self) -> bool:
        """Whether a trial runs a search (else the value comes from the parameters)."""
        return self.from_family is not None


OBJECTIVES: Registry[Objective] = Registry("objective kind")


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a trial returns: ``kind`` names an objective of ``hpo.objectives.OBJECTIVES``
    (hypervolume, probe_accuracy, multi, synthetic, ...), which declares its directions.

    ``probe``: the probe a probe objective reads; ``complexity``: the complexity axis;
    ``name``: the built-in function of a synthetic objective (hpo/synthetic.py); ``path``:
    the table file of a table objective (hpo/surrogate.py)."""

    kind: str = "hypervolume"
    name: str | None = None  # the built-in objective, for kind "synthetic"
    probe: str = "A"
    complexity: Literal["params", "cell_params", "latency", "bytes"] = "params"
    reference_accuracy: float = 0.0
    reference_complexity: float | None = None
    path: str | None = None  # the table, for kind "table"

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ConfigError(f"objective.kind: got {shown(self.kind)}"
                              f"{did_you_mean(self.kind, OBJECTIVES.names())}; expected one of "
                              f"{', '.join(OBJECTIVES.names())}")
        if not (math.isfinite(self.reference_accuracy) and 0 <= self.reference_accuracy <= 1):
            raise ConfigError(f"objective.reference_accuracy: got {shown(self.reference_accuracy)}"
                              "; need an accuracy in [0, 1] (the hypervolume's reference point)")
        ref = self.reference_complexity
        if ref is not None and not (math.isfinite(ref) and ref > 0):
            raise ConfigError(f"objective.reference_complexity: got {shown(ref)}; need a finite "
                              "value > 0 (or leave it out: the heaviest architecture's)")

    @property
    def entry(self) -> Objective:
        return OBJECTIVES.get(self.kind, "objective.kind")

    @property
    def directions(self) -> list[str]:
        return list(self.entry.directions)

    @property
    def metric_names(self) -> list[str]:
        """One short name per value ("hypervolume"; "probe A accuracy", "parameters")."""
        names = self.entry.metric_names
        return list(names(self) if names else (self.kind,) * len(self.directions))


def probe_member(spec: ObjectiveSpec, table: FamilyTable) -> Any:
    """The family member of probe ``spec.probe``."""
    try:
        return table.member(spec.probe)
    except KeyError:
        names = ", ".join(m.probe for m in table.members)
        raise ConfigError(f"objective.probe: {spec.probe!r} is not a probe; valid: {names}") \
            from None


def hypervolume(spec: ObjectiveSpec, table: FamilyTable) -> list[float]:
    return [table.hypervolume]


def probe_accuracy(spec: ObjectiveSpec, table: FamilyTable) -> list[float]:
    return [probe_member(spec, table).accuracy]


def accuracy_and_complexity(spec: ObjectiveSpec, table: FamilyTable) -> list[float]:
    member = probe_member(spec, table)
    return [member.accuracy, member.complexity(spec.complexity)]


def synthetic_value(spec: ObjectiveSpec, params: Mapping[str, Any], seed: int) -> list[float]:
    from hpo.synthetic import SYNTHETIC

    return [SYNTHETIC.get(spec.name or "", "objective.name").value(params, seed)]


def synthetic_expected(spec: ObjectiveSpec, params_list: Sequence[Mapping[str, Any]]
                       ) -> list[float]:
    """A noisy synthetic objective's mean (a deterministic one's value is its mean: no
    separate worth to report, ConfigError)."""
    from hpo.synthetic import SYNTHETIC

    objective = SYNTHETIC.get(spec.name or "", "objective.name")
    if not objective.noise_sd:
        raise ConfigError(f"synthetic objective {spec.name} has no seed noise")
    return [objective.fn(params) for params in params_list]


def check_synthetic(spec: ObjectiveSpec, param_names: Collection[str]) -> None:
    """The named synthetic objective exists and the study declares the parameters it reads."""
    from hpo.synthetic import SYNTHETIC

    name = spec.name
    if name is None or name not in SYNTHETIC:
        raise ConfigError(f"objective.name: got {shown(name)}; a synthetic objective needs "
                          f"one of {', '.join(SYNTHETIC.names())}")
    missing = [p for p in SYNTHETIC.get(name).params if p not in param_names]
    if missing:
        raise ConfigError(f"params: objective {shown(name)} reads {missing}; declare "
                          "them under params")


def synthetic_optimum(spec: ObjectiveSpec) -> float | None:
    from hpo.synthetic import SYNTHETIC

    return SYNTHETIC.get(spec.name or "", "objective.name").optimum


def table_value(spec: ObjectiveSpec, params: Mapping[str, Any], seed: int) -> list[float]:
    from hpo.surrogate import surrogate_for

    return [surrogate_for(spec.path).value(params, seed)]


def table_expected(spec: ObjectiveSpec, params_list: Sequence[Mapping[str, Any]]
                   ) -> list[float]:
    from hpo.surrogate import surrogate_for

    return [float(v) for v in surrogate_for(spec.path).predict(list(params_list))]


def table_seconds(spec: ObjectiveSpec, params: Mapping[str, Any]) -> float:
    from hpo.surrogate import surrogate_for

    return surrogate_for(spec.path).seconds(params)


def check_table(spec: ObjectiveSpec, param_names: Collection[str]) -> None:
    from hpo.surrogate import check_table as check

    check(spec.path, param_names)


COMPLEXITY_NAMES = {"params": "parameters", "cell_params": "cell parameters",
                    "latency": "latency ms", "bytes": "bytes"}


def probe_accuracy_name(spec: ObjectiveSpec) -> tuple[str, ...]:
    return (f"probe {spec.probe} accuracy",)


def accuracy_and_complexity_names(spec: ObjectiveSpec) -> tuple[str, ...]:
    return (*probe_accuracy_name(spec), COMPLEXITY_NAMES[spec.complexity])


def table_metric_name(spec: ObjectiveSpec) -> tuple[str, ...]:
    """The tabulated study's metric, marked as a surrogate's."""
    from pathlib import Path

    from hpo.table_file import read_meta

    try:
        tabulated = ObjectiveSpec(**read_meta(Path(spec.path or "")).get("study", {})
                                  .get("objective", {}))
        return (f"{tabulated.metric_names[0]} (surrogate)",)
    except (ConfigError, TypeError):
        return ("surrogate value",)


OBJECTIVES.add("hypervolume", Objective(
    (MAXIMIZE,), "hypervolume of the family's accuracy/complexity front",
    from_family=hypervolume, complexity_axis=True))
OBJECTIVES.add("probe_accuracy", Objective(
    (MAXIMIZE,), "validation accuracy of probe `probe`",
    from_family=probe_accuracy, reads_probe=True, metric_names=probe_accuracy_name))
OBJECTIVES.add("multi", Objective(
    (MAXIMIZE, MINIMIZE), "(accuracy, complexity) of probe `probe`: a Pareto set of trials",
    from_family=accuracy_and_complexity, reads_probe=True, complexity_axis=True,
    metric_names=accuracy_and_complexity_names))
OBJECTIVES.add("synthetic", Objective(
    (MAXIMIZE,), "a built-in function with a known optimum, named by `name` (no training)",
    from_params=synthetic_value, validate=check_synthetic, optimum=synthetic_optimum,
    metric_names=lambda spec: (spec.name or "synthetic",), expected=synthetic_expected))
OBJECTIVES.add("table", Objective(
    (MAXIMIZE,), "a surrogate of a tabulated objective (hpo table build) at `path`: the "
    "predicted mean plus the table's seed noise, with a simulated run time (no training)",
    from_params=table_value, validate=check_table, clock=table_seconds,
    metric_names=table_metric_name, expected=table_expected))
