"""One trial = one search run + family evaluation, as a black-box objective.

``build_search_config`` turns a study and sampled parameters into a ``SearchConfig``;
``evaluate`` runs it and returns the objective value(s) and everything worth recording.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_core.config import SearchConfig
from search_core.configtools import shown
from search_core.data import DataConfig
from search_core.errors import ConfigError

if TYPE_CHECKING:
    from hpo.study import StudySpec
    from search_core.data import DataSplits
    from search_core.engine import EpochMetrics
    from search_core.family import FamilyTable, Probe


def build_search_config(
    spec: StudySpec, params: Mapping[str, Any], seed: int = 0, where: str = "params"
) -> SearchConfig:
    """The study's fixed ``search`` settings, ``fidelity.epochs``, ``data`` and ``params``.

    A section of ``search`` (``space``, ``train``, ...) that is not a mapping is a
    ``ConfigError`` naming it, like every other bad value."""
    from hpo.study import param_path

    tree: dict[str, Any] = copy.deepcopy(dict(spec.search))
    try:
        tree["train"] = {**_section(tree, "train"), "epochs": spec.epochs}
        tree["data"] = dict(spec.data)
        tree["seed"] = seed
        for name, value in params.items():
            section, _, key = param_path(name).partition(".")
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


@functools.lru_cache(maxsize=4)
def cached_data(config: DataConfig) -> DataSplits:
    """Data sets are loaded once per process and shared by its trials."""
    from search_core.data import load_data

    return load_data(config)


def study_probes(spec: StudySpec, ops: tuple[str, ...]) -> list[Probe]:
    from search_core.family import lattice_probes, seed_probes

    probes = seed_probes(ops) if spec.probes.seed else []
    return probes + lattice_probes(len(ops), spec.probes.lattice_divisions)


def reference_complexity(spec: StudySpec) -> float:
    """The hypervolume box's complexity end: the study's value, else the heaviest architecture
    of the largest cells/nodes/channels the study can sample (same for every trial)."""
    if spec.objective.reference_complexity is not None:
        return spec.objective.reference_complexity
    if spec.objective.kind == "synthetic":
        return 0.0  # no family, no hypervolume
    from search_core.family import heaviest_complexity

    largest = {
        name: param.values_range()[1]
        for name, param in spec.params.items()
        if name in ("cells", "nodes", "channels")
    }
    config = build_search_config(spec, largest)
    info = cached_data(config.data).summary()
    check_latency_table(config, info)
    return heaviest_complexity(config.space, info, spec.objective.complexity)


def check_latency_table(config: SearchConfig, info: Mapping[str, Any]) -> None:
    """With ``train.op_costs: latency``, the table must exist and cover the space: fail
    before anything is written, not in every trial."""
    if config.train.op_costs == "latency":
        from search_core.costs import op_cost_weights

        op_cost_weights(config, info["in_channels"], tuple(info["image_size"]),
                        info["num_classes"])


@dataclass
class TrialOutcome:
    values: list[float]
    family: FamilyTable | None  # None for synthetic objectives
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str | None = None
    threads: dict[str, Any] = field(default_factory=dict)  # what the trial ran with


def objective_values(spec: StudySpec, table: FamilyTable) -> list[float]:
    obj = spec.objective
    if obj.kind == "hypervolume":
        return [table.hypervolume]
    try:
        member = table.member(obj.probe)
    except KeyError:
        names = ", ".join(m.probe for m in table.members)
        raise ConfigError(f"objective.probe: {obj.probe!r} is not a probe; valid: {names}") \
            from None
    if obj.kind == "probe_accuracy":
        return [member.accuracy]
    return [member.accuracy, member.complexity(obj.complexity)]


def evaluate(
    spec: StudySpec,
    params: Mapping[str, Any],
    seed: int,
    reference: float,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    checkpoint: Path | None = None,
    threads: int | None = None,
) -> TrialOutcome:
    """Run one search with ``params`` and evaluate its family (or a synthetic objective)."""
    started = time.perf_counter()
    if spec.objective.kind == "synthetic":  # no training: torch is not even imported
        from hpo.synthetic import SYNTHETIC

        value = SYNTHETIC.get(spec.objective.name or "").fn(params)
        return TrialOutcome([value], None, seconds=time.perf_counter() - started)
    from search_core.engine import search
    from search_core.family import evaluate_family
    from search_core.threads import in_effect, torch_threads

    config = build_search_config(spec, params, seed=seed).replace(threads=threads)
    data = cached_data(config.data)
    with torch_threads(threads):  # the family evaluation too, not only the search
        threads_used = in_effect()
        result = search(config, data, on_epoch=on_epoch)
        table = evaluate_family(
            result,
            data,
            study_probes(spec, config.space.ops),
            complexity=spec.objective.complexity,
            reference=(spec.objective.reference_accuracy, reference),
        )
    saved = str(result.save(checkpoint)) if checkpoint is not None else None
    return TrialOutcome(
        values=objective_values(spec, table),
        family=table,
        history=result.history,
        seconds=time.perf_counter() - started,
        checkpoint=saved,
        threads=threads_used,
    )
