"""The complexity term of the loss and per-op cost weights c_m (docs/concepts.md)."""

from __future__ import annotations

import logging

import torch

from search_core.config import CELL_TYPES, SearchConfig, SearchSpace
from search_core.genotype import Genotype, derive
from search_core.ops import build_op, count_params
from search_core.supernet import cell_shapes

log = logging.getLogger(__name__)


def complexity_cost(
    alpha: torch.Tensor,
    s: torch.Tensor,
    temperature: float | None,
    op_costs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cost(gammabar; s) = mean over edges of sum_m gammabar_m s_m c_m.

    ``alpha`` (2, E, k); ``s`` (k,); gammabar = softmax(alpha / t), or softmax(alpha) when
    ``temperature`` is None; ``op_costs`` c of shape (k,) or (2, E, k), default all ones.
    Averaging over the 2E edges makes kappa independent of cell size and op count.
    """
    logits = alpha if temperature is None else alpha / temperature
    penalty = s if op_costs is None else s * op_costs
    return (torch.softmax(logits, dim=-1) * penalty).sum(-1).mean()


def op_param_table(space: SearchSpace) -> torch.Tensor:
    """(2, E, k): parameters op m adds on edge e summed over all cells of that type. Each
    distinct op is built once, on the meta device (shapes only: no memory, no init), so a
    space too large to train is still counted in milliseconds."""
    table = torch.zeros(len(CELL_TYPES), space.num_edges, space.num_ops)
    counted: dict[tuple[str, int, int], int] = {}
    for shape in cell_shapes(space):
        kind = 1 if shape.reduction else 0
        for e, (i, _) in enumerate(space.edges):
            for m, name in enumerate(space.ops):
                key = (name, shape.c, shape.edge_stride(i))
                if key not in counted:
                    with torch.device("meta"):
                        counted[key] = count_params(build_op(*key, affine=True))
                table[kind, e, m] += counted[key]
    return table


def op_cost_weights(
    config: SearchConfig,
    in_channels: int = 1,
    image: tuple[int, int] = (8, 8),
    num_classes: int = 10,
) -> torch.Tensor | None:
    """c_m per ``train.op_costs``: None (all ones), parameter counts, measured latencies
    (the input shape picks the table's entries) or a user mapping.

    Parameter and latency costs are scaled to mean 1 so kappa keeps its scale."""
    costs = config.train.op_costs
    if costs == "none":
        return None
    if not isinstance(costs, str):
        return torch.tensor([float(costs[name]) for name in config.space.ops])
    if costs == "params":
        table = op_param_table(config.space)
    else:
        table = op_latency_table(config, in_channels, image, num_classes)
    mean = table.mean()
    return table / mean if mean > 0 else torch.ones_like(table)


def op_latency_table(
    config: SearchConfig, in_channels: int, image: tuple[int, int], num_classes: int
) -> torch.Tensor:
    """(2, E, k): measured batch-1 latency of op m on edge e, summed over the cells of each
    type, from ``train.latency_table`` (a table from another machine is used with a
    warning: relative op costs often carry over, absolute latencies do not)."""
    from search_core.latency import LatencyTable
    from search_core.network_parts import network_layout
    from search_core.timing import fingerprint, fingerprint_mismatch

    path = config.train.latency_table
    table = LatencyTable.load(path)  # type: ignore[arg-type]
    differs = fingerprint_mismatch(table.fingerprint, fingerprint(table.settings))
    if differs:
        log.warning("latency table %s was measured elsewhere (%s)", path, "; ".join(differs))
    layout = network_layout(config.space, in_channels, image, num_classes)
    return table.op_cost_table(layout, batch=1)


def heaviest_genotype(space: SearchSpace) -> Genotype:
    """The genotype with the most parameters: the heaviest op on every edge."""
    return derive(op_param_table(space), space)
