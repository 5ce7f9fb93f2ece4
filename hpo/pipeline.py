"""The ``pipeline:`` section of a study file: compression stages (``compress``) applied to
chosen family members after the search, with tunable settings.

```yaml
pipeline:
  probes: [A, B, C, D]             # the members compressed (default: the thesis's probes)
  stages:
    - {stage: train, epochs: 2}    # fine-tune from the supernet's weights
    - {stage: gates, lam: 0.1}     # latency-aware pruning of whole operations
    - {stage: quantise, bits: 8}
params:
  pipeline.gates.lam: {type: float, low: 0.01, high: 1.0, log: true}
```

A parameter ``pipeline.STAGE.KEY`` (or ``pipeline.STAGE.fit.KEY``) sets that stage's setting.
The trial's family is then the compressed members: their validation accuracy, parameters
that are not zero and measured latency (batch 1, this machine), and the front and
hypervolume over them; each stage's before/after is recorded in the trial (``pipeline``).
Neither importing this module nor checking a pipeline loads torch (the stage registry,
``compress.stages``, and the stages' settings, ``compress.settings``, are torch-free);
running one does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search_core.configtools import shown
from search_core.errors import ConfigError

if TYPE_CHECKING:
    from search_core.data import DataSplits
    from search_core.family import FamilyTable
    from search_core.result import SearchResult

PREFIX = "pipeline."
MAX_STAGES = 8


@dataclass(frozen=True)
class StageSpec:
    stage: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    probes: tuple[str, ...] = ("A", "B", "C", "D")
    stages: tuple[StageSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"probes": list(self.probes),
                "stages": [{"stage": s.stage, **s.settings} for s in self.stages]}


def parse_pipeline(raw: Any) -> PipelineSpec:
    """The ``pipeline:`` section as written; stage names and keys are checked later,
    against the stages' settings (``check_pipeline``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"pipeline: expected a mapping with stages, got {shown(raw)}")
    unknown = set(raw) - {"probes", "stages"}
    if unknown:
        raise ConfigError(f"pipeline: unknown key(s) {sorted(map(str, unknown))}; valid keys: "
                          "probes, stages")
    stages = raw.get("stages") or []
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise ConfigError(f"pipeline.stages: expected a list of 1..{MAX_STAGES} stages like "
                          f"{{stage: quantise, bits: 8}}, got {shown(stages)}")
    parsed = []
    for index, body in enumerate(stages):
        if not isinstance(body, Mapping) or not isinstance(body.get("stage"), str):
            raise ConfigError(f"pipeline.stages[{index}]: expected {{stage: NAME, ...}}, got "
                              f"{shown(body)}")
        settings = {str(k): v for k, v in body.items() if k != "stage"}
        parsed.append(StageSpec(body["stage"], settings))
    names = [s.stage for s in parsed]
    if len(set(names)) < len(names):
        raise ConfigError(f"pipeline.stages: {names} names a stage twice; each stage once")
    probes = raw.get("probes", PipelineSpec.probes)
    if not isinstance(probes, list | tuple) or not probes or not all(
            isinstance(p, str) for p in probes):
        raise ConfigError(f"pipeline.probes: expected a list of probe names like [A, B], got "
                          f"{shown(probes)}")
    return PipelineSpec(tuple(probes), tuple(parsed))


def is_pipeline_param(name: str) -> bool:
    return name.startswith(PREFIX)


def stage_settings(pipeline: PipelineSpec, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Each stage's settings dataclass: the study's values, then the trial's parameters
    ``pipeline.STAGE.KEY`` (one nested level: ``pipeline.STAGE.fit.KEY``)."""
    from compress.stages import STAGES
    from search_core.configtools import from_mapping

    built = []
    for stage in pipeline.stages:
        entry = STAGES.get(stage.stage, "pipeline.stages")
        tree: dict[str, Any] = copy.deepcopy(dict(stage.settings))
        for name, value in params.items():
            head, _, rest = name.removeprefix(PREFIX).partition(".")
            if is_pipeline_param(name) and head == stage.stage:
                section, _, key = rest.partition(".")
                if key:
                    tree[section] = {**dict(tree.get(section) or {}), key: value}
                else:
                    tree[section] = value
        built.append((stage.stage, from_mapping(entry.settings, tree,
                                                f"pipeline.{stage.stage}")))
    return built


def check_pipeline(pipeline: PipelineSpec, params: Mapping[str, Any],
                   probe_names: list[str]) -> None:
    """Every stage exists, its settings (with each parameter at ``params``) are valid, every
    ``pipeline.*`` parameter names a stage of the pipeline, every probe exists."""
    names = {s.stage for s in pipeline.stages}
    for name in params:
        if is_pipeline_param(name) and name.removeprefix(PREFIX).split(".")[0] not in names:
            raise ConfigError(f"params.{name}: no stage {name.split('.')[1]!r} in the "
                              f"pipeline; stages: {', '.join(sorted(names))}")
    missing = [p for p in pipeline.probes if p not in probe_names]
    if missing:
        raise ConfigError(f"pipeline.probes: {missing} are not probes of this study; probes: "
                          f"{', '.join(probe_names)}")
    stage_settings(pipeline, params)


def compressed_family(result: SearchResult, data: DataSplits, pipeline: PipelineSpec,
                      params: Mapping[str, Any], table: FamilyTable,
                      timing: Any = None) -> tuple[FamilyTable, list[dict[str, Any]]]:
    """The pipeline's probes, each run through the stages from the supernet's weights: a
    family table of the compressed members (accuracy, parameters that are not zero, stored
    bytes, measured latency) on ``table``'s axis and reference, and per member its stage
    records and the searched member it came from (``searched``: accuracy, parameters,
    float32 bytes and latency measured beside the compressed one), for the extended front.

    A member quantised to 8 bits everywhere is deployed as torch's int8 model: its accuracy
    and latency are that model's; other widths are simulated (``kernels``)."""
    from dataclasses import replace

    from compress.base import Context, nonzero_params
    from compress.stages import run_stage
    from search_core.family import family_table
    from search_core.timing import TimingSettings, measure_many
    from search_core.train import accuracy

    timing = timing or TimingSettings(rounds=14, passes=7)
    settings = stage_settings(pipeline, params)
    members, records = [], []
    x = data.val.x[:1]
    for member in (m for m in table.members if m.probe in pipeline.probes):
        searched = model = result.model(member.s, data)  # run_stage works on a copy
        stages = []
        for name, stage_settings_ in settings:
            model, record = run_stage(name, model, data, stage_settings_, Context(model))
            stages.append(record.to_dict())
        deployed, kernels = deployed_model(model, stages, data)
        before, after = measure_many([lambda net=searched: net(x),
                                      lambda net=deployed: net(x)], timing)
        score = (accuracy(deployed, data.val) if kernels == "int8"
                 else stages[-1]["after"]["accuracy"])
        stored = stored_bytes(model, stages)
        members.append(replace(member, accuracy=score, params=nonzero_params(model),
                               latency_ms=after.median_ms, bytes=stored))
        records.append({"probe": member.probe, "stages": stages, "accuracy": score,
                        "latency_ms": after.median_ms, "bytes": stored, "kernels": kernels,
                        "searched": {"accuracy": member.accuracy, "params": member.params,
                                     "bytes": member.size_bytes,
                                     "latency_ms": before.median_ms}})
    return family_table(table.ops, members, table.complexity, table.reference,
                        accuracy_kind="compressed"), records


def stored_bytes(model: Any, stages: list[dict[str, Any]]) -> int:
    """The compressed model's weights: the last quantise stage's widths, non-zeros only."""
    from compress.base import size_bytes

    bits = next((s["extra"]["bits"] for s in reversed(stages) if "bits" in s["extra"]), None)
    return size_bytes(model, bits, sparse=True)


def deployed_model(model: Any, stages: list[dict[str, Any]],
                   data: DataSplits) -> tuple[Any, str]:
    """What a compressed member runs as: torch's int8 model where the last quantise stage
    ran on int8 kernels (8 bits everywhere), else the float model ("float"; quantised
    widths without kernels are simulated: "simulated")."""
    quantised = next((s for s in reversed(stages) if s["stage"] == "quantise"), None)
    if quantised is None:
        return model, "float"
    if "int8" not in quantised["extra"]:
        return model, "simulated"
    from compress.quantise import to_int8

    return to_int8(model, data), "int8"
