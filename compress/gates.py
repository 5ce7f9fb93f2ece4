"""Hardware-aware pruning of whole operations (the thesis's review of "Adaptation of the
architecture of the deep learning model with performance control"): every edge of every
cell gets a gate z_e ~ RelaxedBernoulli(temperature, logits theta_e), its output is
multiplied by z_e while training, and the loss adds lambda times the expected latency of the
gated network, sum_e sigmoid(theta_e) * latency_e (ms, measured per edge on this device).
Afterwards a gate is kept when sigmoid(theta_e) >= 0.5; every node keeps at least its most
probable input, so the network is never cut in two. Pruned edges compute nothing.

Works on networks whose cells have an ``edges`` ``ModuleList`` (search_core's
``DiscreteNetwork``); the edges are the prunable units.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import RelaxedBernoulli

from compress.base import Context, StageRecord, fit, measure, timed_record
from compress.settings import EdgeMagnitudeSettings, GateSettings
from search_core.data import DataSplits
from search_core.timing import TimingSettings, measure_many


class GatedEdge(nn.Module):
    """An edge whose output is scaled by a relaxed Bernoulli gate (sampled in training, its
    probability in evaluation)."""

    def __init__(self, op: nn.Module, init_logit: float, temperature: float) -> None:
        super().__init__()
        self.op = op
        self.logit = nn.Parameter(torch.tensor(float(init_logit)))
        self.temperature = temperature

    @property
    def probability(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            gate = RelaxedBernoulli(torch.tensor(self.temperature), logits=self.logit).rsample()
        else:
            gate = self.probability
        return gate * self.op(x)


class PrunedEdge(nn.Module):
    """A removed edge: zeros of the edge's output shape (for the input size it was pruned
    at), nothing computed."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)  # (channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], *self.shape)


def edge_names(model: nn.Module) -> list[str]:
    """``cells.i.edges.e`` for every edge of every cell."""
    return [f"{name}.edges.{e}" for name, module in model.named_modules()
            if isinstance(getattr(module, "edges", None), nn.ModuleList)
            for e in range(len(module.edges))]


def _edge_slot(model: nn.Module, name: str) -> tuple[nn.ModuleList, int]:
    owner, _, index = name.rpartition(".")
    return model.get_submodule(owner), int(index)


def gate_edges(model: nn.Module, settings: GateSettings) -> dict[str, GatedEdge]:
    gated = {}
    for name in edge_names(model):
        edges, index = _edge_slot(model, name)
        gated[name] = GatedEdge(edges[index], settings.init_logit, settings.temperature)
        edges[index] = gated[name]
    return gated


def expected_latency(gated: dict[str, GatedEdge], unit_ms: dict[str, float]) -> torch.Tensor:
    """sum over edges of P(kept) * latency (ms): the differentiable cost the loss adds."""
    return sum((g.probability * unit_ms[name] for name, g in gated.items()),
               torch.tensor(0.0))


def kept_edges(probabilities: dict[str, float], threshold: float,
               node_inputs: dict[str, list[str]]) -> set[str]:
    """Edges whose probability reaches ``threshold``, plus the most probable input of every
    node that would otherwise have none."""
    kept = {name for name, p in probabilities.items() if p >= threshold}
    for inputs in node_inputs.values():
        if not kept & set(inputs):
            kept.add(max(inputs, key=lambda name: probabilities[name]))
    return kept


def node_inputs(model: nn.Module) -> dict[str, list[str]]:
    """For every node of every cell, the names of its input edges (node k of a cell takes
    k + 2 edges, in order)."""
    nodes: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not isinstance(getattr(module, "edges", None), nn.ModuleList):
            continue
        edge = 0
        for node in range(module.nodes):
            count = node + 2
            nodes[f"{name}.node{node}"] = [f"{name}.edges.{e}" for e in range(edge, edge + count)]
            edge += count
    return nodes


def observe_edges(model: nn.Module, example: torch.Tensor,
                  observe: Callable[[str, torch.Tensor, torch.Tensor], None]) -> None:
    """Run ``model`` on ``example`` (no gradients) calling ``observe(edge name, input,
    output)`` for every edge."""
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: observe(name, args[0], out))
        for name in edge_names(model)]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()


def edge_io(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[torch.Tensor,
                                                                       tuple[int, ...]]]:
    """Each edge's input as the network feeds it ``example``, and its output shape."""
    seen: dict[str, tuple[torch.Tensor, tuple[int, ...]]] = {}
    observe_edges(model, example, lambda name, x, out: seen.__setitem__(
        name, (x.detach(), tuple(out.shape[1:]))))
    return seen


def unit_latencies(model: nn.Module, example: torch.Tensor, settings: TimingSettings,
                   io: dict[str, tuple[torch.Tensor, tuple[int, ...]]] | None = None
                   ) -> dict[str, float]:
    """Each edge's latency (ms) on its own input, as the network feeds it ``example``
    (``io``: ``edge_io``'s result when the caller has it)."""
    io = io if io is not None else edge_io(model, example)
    names = list(io)
    calls = [_call(model.get_submodule(name), io[name][0]) for name in names]
    return {name: t.median_ms for name, t in zip(names, measure_many(calls, settings))}


def _call(op: nn.Module, x: torch.Tensor) -> Any:
    return lambda: op(x)


def network_latency(model: nn.Module, example: torch.Tensor, settings: TimingSettings) -> float:
    model.eval()
    return measure_many([lambda: model(example)], settings)[0].median_ms


@dataclass
class EdgePruning:
    """What pruning edges starts from: the model's validation numbers and batch-1 latency,
    every edge's latency (the context's, else measured here) and output shape."""

    started: float
    example: torch.Tensor
    before: dict[str, float]
    unit_ms: dict[str, float]
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, model: nn.Module, data: DataSplits, timing: TimingSettings,
           context: Context) -> EdgePruning:
        started, example = time.perf_counter(), data.val.x[:1]
        before = measure(model, data.val) | {
            "latency_ms": network_latency(model, example, timing)}
        io = edge_io(model, example)
        unit_ms = context.unit_latency_ms or unit_latencies(model, example, timing, io)
        shapes = {name: shape for name, (_, shape) in io.items()}
        return cls(started, example, before, unit_ms, shapes)

    def remove(self, model: nn.Module, name: str) -> None:
        edges, index = _edge_slot(model, name)
        edges[index] = PrunedEdge(self.shapes[name])

    def record(self, stage: str, settings: Any, model: nn.Module, data: DataSplits,
               timing: TimingSettings, kept: set[str], **extra: Any) -> StageRecord:
        record = timed_record(stage, settings, self.before, model, data, self.started,
                              kept=sorted(kept), pruned=sorted(set(self.shapes) - kept),
                              kept_latency_ms=sum(self.unit_ms[e] for e in kept),
                              unit_latency_ms=self.unit_ms, **extra)
        record.after["latency_ms"] = network_latency(model, self.example, timing)
        return record


def gates(model: nn.Module, data: DataSplits, settings: GateSettings,
          context: Context) -> tuple[nn.Module, StageRecord]:
    start = EdgePruning.of(model, data, settings.timing, context)
    unit_ms = start.unit_ms
    nodes = node_inputs(model)
    gated = gate_edges(model, settings)
    gate_params = [g.logit for g in gated.values()]
    others = [p for p in model.parameters() if all(p is not q for q in gate_params)]

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x), y) + settings.lam * expected_latency(gated, unit_ms)

    groups: list[Any] = [{"params": others}, {"params": gate_params, "lr": settings.gate_lr}]
    fit(model, data, settings.fit, loss, parameters=groups)
    probabilities = {name: float(g.probability.detach()) for name, g in gated.items()}
    expected = float(expected_latency(gated, unit_ms).detach())
    kept = kept_edges(probabilities, settings.threshold, nodes)
    for name, gate in gated.items():
        edges, index = _edge_slot(model, name)
        edges[index] = gate.op
        if name not in kept:
            start.remove(model, name)
    return model, start.record("gates", settings, model, data, settings.timing, kept,
                               probabilities=probabilities, expected_latency_ms=expected)


def output_magnitudes(model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Mean |output| of every edge on ``example``."""
    seen: dict[str, float] = {}
    observe_edges(model, example, lambda name, x, out: seen.__setitem__(
        name, float(out.abs().mean())))
    return seen


def edges_under_budget(scores: dict[str, float], unit_ms: dict[str, float], budget_ms: float,
                       nodes: dict[str, list[str]]) -> set[str]:
    """The highest-scoring edges whose latencies sum to at most ``budget_ms``, removing the
    lowest-scoring first; a node's last input is never removed (so the result may exceed a
    budget too small for a connected network)."""
    kept = set(scores)
    node_of = {edge: node for node, edges in nodes.items() for edge in edges}
    for edge in sorted(scores, key=scores.__getitem__):
        if sum(unit_ms[e] for e in kept) <= budget_ms:
            break
        if len(kept & set(nodes[node_of[edge]])) > 1:
            kept.discard(edge)
    return kept


def edge_magnitude(model: nn.Module, data: DataSplits, settings: EdgeMagnitudeSettings,
                   context: Context) -> tuple[nn.Module, StageRecord]:
    start = EdgePruning.of(model, data, settings.timing, context)
    scores = output_magnitudes(model, data.val.x[:256])
    kept = edges_under_budget(scores, start.unit_ms, settings.latency_budget_ms,
                              node_inputs(model))
    for name in set(scores) - kept:
        start.remove(model, name)
    fit(model, data, settings.fit)
    return model, start.record("edge_magnitude", settings, model, data, settings.timing, kept)
