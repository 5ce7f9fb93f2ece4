"""The complexity term of the loss and per-op cost weights c_m (METHOD.md section 4)."""

from __future__ import annotations

import torch

from search_core.config import CELL_TYPES, SearchConfig, SearchSpace
from search_core.genotype import Genotype
from search_core.ops import build_op, count_params
from search_core.supernet import cell_shapes


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
    """(2, E, k): parameters op m adds on edge e summed over all cells of that type."""
    table = torch.zeros(len(CELL_TYPES), space.num_edges, space.num_ops)
    for shape in cell_shapes(space):
        kind = 1 if shape.reduction else 0
        for e, (i, _) in enumerate(space.edges):
            for m, name in enumerate(space.ops):
                op = build_op(name, shape.c, shape.edge_stride(i), affine=True)
                table[kind, e, m] += count_params(op)
    return table


def op_cost_weights(config: SearchConfig) -> torch.Tensor | None:
    """c_m per ``train.op_costs``: None (all ones), parameter counts, or a user mapping.

    Parameter costs are scaled to mean 1 so kappa keeps its scale."""
    costs = config.train.op_costs
    if costs == "none":
        return None
    if costs == "params":
        table = op_param_table(config.space)
        mean = table.mean()
        return table / mean if mean > 0 else torch.ones_like(table)
    return torch.tensor([float(costs[name]) for name in config.space.ops])  # type: ignore[index]


def heaviest_genotype(space: SearchSpace) -> Genotype:
    """The genotype with the most parameters: the heaviest op on every edge."""
    best = op_param_table(space).argmax(dim=-1).tolist()
    names = [tuple(space.ops[m] for m in row) for row in best]
    return Genotype(normal=names[0], reduce=names[1], edges=space.edges)
