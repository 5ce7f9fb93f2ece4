"""Evaluate the family of architectures one search produced, over a set of probes s.

Per probe: the hard one-hot architecture's validation accuracy on the shared supernet weights
with BN statistics recalibrated for that genotype, whole-network and in-cell op parameters,
op counts per cell type. For the family: the accuracy/complexity Pareto front, its
hypervolume against a recorded reference point, and the controllability score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch

from search_core.config import CELL_TYPES, SearchSpace
from search_core.costs import heaviest_genotype
from search_core.data import DataSplits
from search_core.device import autocast
from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError
from search_core.genotype import Genotype, derive
from search_core.latency import profile_parts
from search_core.metrics import hypervolume_2d, pareto_front, spearman
from search_core.network_parts import NetworkLayout, network_layout
from search_core.ops import FLOAT_BYTES
from search_core.probes import Probe, default_probes
from search_core.supernet import SuperNet, recalibrated_bn
from search_core.timing import TimingSettings, measure_networks
from search_core.train import TrainRecipe, fine_tuned_accuracy

if TYPE_CHECKING:
    import pandas as pd

    from search_core.config import SearchConfig


class TrainedSearch(Protocol):
    """What ``evaluate_family`` reads of a search (``search_core.result.SearchResult``)."""

    config: SearchConfig
    supernet: SuperNet
    data_info: dict[str, Any]

    def genotype(self, s: Sequence[float] | torch.Tensor) -> Genotype: ...

Complexity = Literal["params", "cell_params", "latency", "bytes"]
COMPLEXITIES = ("params", "cell_params", "latency", "bytes")


@dataclass(frozen=True)
class FamilyMember:
    probe: str
    s: tuple[float, ...]
    genotype: Genotype
    accuracy: float
    params: int
    cell_params: int
    op_counts: dict[str, dict[str, int]]
    latency_ms: float | None = None  # measured end to end, batch 1
    bytes: int | None = None  # the stored weights, when compressed (else float32: 4 x params)

    @property
    def size_bytes(self) -> int:
        return self.bytes if self.bytes is not None else FLOAT_BYTES * self.params

    def complexity(self, axis: Complexity) -> float:
        if axis == "latency":
            if self.latency_ms is None:
                raise ConfigError(f"probe {self.probe}: latency was not measured")
            return self.latency_ms
        if axis == "bytes":
            return float(self.size_bytes)
        return float(self.params if axis == "params" else self.cell_params)


@dataclass(frozen=True)
class FamilyTable:
    ops: tuple[str, ...]
    members: tuple[FamilyMember, ...]
    complexity: Complexity
    reference: tuple[float, float]  # (accuracy, complexity) of the hypervolume box
    front: tuple[int, ...]
    hypervolume: float
    controllability: float
    controllability_per_op: dict[str, float] = field(default_factory=dict)
    accuracy_kind: str = "proxy"  # how members' accuracy was measured: proxy or finetune

    def member(self, probe: str) -> FamilyMember:
        for m in self.members:
            if m.probe == probe:
                return m
        raise KeyError(probe)

    def rows(self) -> list[dict[str, Any]]:
        """One flat, JSON-able row per probe."""
        rows = []
        for index, m in enumerate(self.members):
            row: dict[str, Any] = {"probe": m.probe}
            row |= {f"s_{op}": s for op, s in zip(self.ops, m.s)}
            row |= {"accuracy": m.accuracy, "params": m.params, "cell_params": m.cell_params,
                    "latency_ms": m.latency_ms, "bytes": m.size_bytes}
            for kind in ("total", *CELL_TYPES):
                prefix = "n" if kind == "total" else kind
                row |= {f"{prefix}_{op}": m.op_counts[kind].get(op, 0) for op in self.ops}
            row["on_front"] = index in self.front
            row["genotype"] = m.genotype.to_json()
            rows.append(row)
        return rows

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows())

    def summary(self) -> dict[str, Any]:
        return {
            "hypervolume": self.hypervolume,
            "reference": list(self.reference),
            "complexity": self.complexity,
            "controllability": self.controllability,
            "controllability_per_op": self.controllability_per_op,
            "front": [self.members[i].probe for i in self.front],
            "accuracy": self.accuracy_kind,
        }


@torch.no_grad()
def hard_accuracy(supernet: SuperNet, choice: torch.Tensor, data: DataSplits,
                  split: Literal["val", "test"] = "val", precision: str = "fp32") -> float:
    """Accuracy of the one-hot architecture with recalibrated BN statistics on the
    validation split (the proxy; ``test``: for reporting only, never to choose), on the
    supernet's device, its forward passes in ``precision``."""
    device = next(supernet.parameters()).device
    held_out = (data.val if split == "val" else data.test).to(device)
    with recalibrated_bn(supernet, choice, data.train.to(device), precision=precision):
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for start in range(0, len(held_out), 256):
            x, y = held_out.x[start : start + 256], held_out.y[start : start + 256]
            with autocast(device, precision):
                correct += (supernet(x, choice=choice).argmax(1) == y).sum()
    return int(correct) / max(len(held_out), 1)


def parameter_counts(genotype: Genotype, space: SearchSpace, info: dict[str, Any]) -> tuple[
    int, int
]:
    with torch.device("meta"):  # counted from shapes: nothing allocated or initialised
        net = DiscreteNetwork(genotype, space, info["in_channels"], info["num_classes"])
    return net.num_params(), net.cell_op_params()


def heaviest_complexity(space: SearchSpace, info: dict[str, Any], complexity: Complexity,
                        latency: TimingSettings | None = None) -> float:
    """Complexity of the heaviest architecture of the space: the default hypervolume box.
    For latency: the measured latency of the slowest architecture (the slowest op on every
    edge, by a quick part table). For bytes: its parameters in float32."""
    if complexity == "latency":
        return slowest_latency(space, info, latency or TimingSettings())
    params, cell_params = parameter_counts(heaviest_genotype(space), space, info)
    return float({"params": params, "cell_params": cell_params,
                  "bytes": FLOAT_BYTES * params}[complexity])


def info_layout(space: SearchSpace, info: dict[str, Any]) -> NetworkLayout:
    return network_layout(space, info["in_channels"], tuple(info["image_size"]),
                          info["num_classes"])


def slowest_latency(space: SearchSpace, info: dict[str, Any], settings: TimingSettings) -> float:
    layout = info_layout(space, info)
    quick = dataclasses.replace(settings, rounds=7, passes=1)
    table = profile_parts([layout], [1], quick)
    slowest = derive(table.op_cost_table(layout), space)  # the slowest op on every edge
    return measure_networks([slowest], layout, 1, settings)[0].median_ms


def with_latency(members: Sequence[FamilyMember], space: SearchSpace, info: dict[str, Any],
                 settings: TimingSettings) -> list[FamilyMember]:
    """The members with their measured latency (each distinct architecture measured once,
    all of them interleaved)."""
    genotypes = list(dict.fromkeys(m.genotype for m in members))
    timings = measure_networks(genotypes, info_layout(space, info), 1, settings)
    latency = {g: t.median_ms for g, t in zip(genotypes, timings)}
    return [dataclasses.replace(m, latency_ms=latency[m.genotype]) for m in members]


def controllability(
    ops: Sequence[str], members: Sequence[FamilyMember]
) -> tuple[float, dict[str, float]]:
    """Per op m: Spearman correlation of s_m with the count of op m across probes; the score
    is the mean over ops where both vary (NaN if none). Negative = control works."""
    per_op = {
        op: spearman([m.s[i] for m in members], [m.op_counts["total"].get(op, 0) for m in members])
        for i, op in enumerate(ops)
    }
    defined = [v for v in per_op.values() if not np.isnan(v)]
    return (float(np.mean(defined)) if defined else float("nan")), per_op


def evaluate_family(
    result: TrainedSearch,
    data: DataSplits,
    probes: Sequence[Probe] | None = None,
    complexity: Complexity = "params",
    reference: tuple[float, float] | None = None,
    latency: TimingSettings | None = None,
    finetune: TrainRecipe | None = None,
) -> FamilyTable:
    """Evaluate every probe; ``reference`` defaults to (accuracy 0, complexity of the
    heaviest architecture in the space) and is recorded in the table. Latency (batch 1,
    end to end, ``latency`` settings) is measured when it is the complexity axis or when
    ``latency`` is given. A member's accuracy is the proxy (``hard_accuracy``) or, with
    ``finetune``, its validation accuracy after that recipe's epochs from the shared
    weights (each distinct genotype once)."""
    if complexity not in COMPLEXITIES:
        raise ConfigError(f"complexity: got {complexity!r}; expected one of {COMPLEXITIES}")
    space, info = result.config.space, result.data_info
    probes = list(probes) if probes is not None else default_probes(space.ops)
    cache: dict[Genotype, tuple[float, int, int]] = {}
    data = data.to(next(result.supernet.parameters()).device)  # each split moved once
    members = []
    for probe in probes:
        genotype = result.genotype(probe.s)
        if genotype not in cache:
            acc = (hard_accuracy(result.supernet, genotype.choice(space), data,
                                 precision=result.config.precision)
                   if finetune is None else
                   fine_tuned_accuracy(genotype, space, data, result.supernet, finetune))
            cache[genotype] = (acc, *parameter_counts(genotype, space, info))
        acc, params, cell_params = cache[genotype]
        counts = {k: dict(v) for k, v in genotype.op_counts().items()}
        members.append(FamilyMember(probe.name, probe.s, genotype, acc, params, cell_params,
                                    counts))
    if complexity == "latency" or latency is not None:
        members = with_latency(members, space, info, latency or TimingSettings())
    if reference is None:
        reference = (0.0, heaviest_complexity(space, info, complexity, latency))
    return family_table(space.ops, members, complexity, reference,
                        "proxy" if finetune is None else "finetune")


def family_table(ops: tuple[str, ...], members: Sequence[FamilyMember], complexity: Complexity,
                 reference: tuple[float, float], accuracy_kind: str = "proxy") -> FamilyTable:
    """The table of ``members``: their Pareto front and hypervolume on ``complexity`` inside
    ``reference``, and the family's controllability."""
    accs = [m.accuracy for m in members]
    cxs = [m.complexity(complexity) for m in members]
    score, per_op = controllability(ops, members)
    return FamilyTable(
        ops=ops,
        members=tuple(members),
        complexity=complexity,
        reference=reference,
        front=tuple(pareto_front(accs, cxs)),
        hypervolume=hypervolume_2d(accs, cxs, reference),
        controllability=score,
        controllability_per_op=per_op,
        accuracy_kind=accuracy_kind,
    )
