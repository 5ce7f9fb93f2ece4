"""A standalone network built from a genotype: only the chosen op on each edge.

Module names mirror the supernet (``cells.i.edges.e``) so that weights of the chosen ops can
be inherited from a trained supernet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from search_core.config import SearchSpace
from search_core.genotype import Genotype
from search_core.ops import build_op, count_params
from search_core.supernet import (
    CellShape,
    SuperNet,
    cell_input_preprocess,
    cell_shapes,
    make_stem,
)


def node_sum(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The sum a node computes over its inputs (the latency table measures this function)."""
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class DiscreteCell(nn.Module):
    def __init__(self, ops: tuple[str, ...], space: SearchSpace, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.nodes = space.nodes
        self.preprocess0, self.preprocess1 = cell_input_preprocess(
            shape.c_prev_prev, shape.c_prev, shape.c, shape.reduction_prev, affine=True
        )
        self.edges = nn.ModuleList(
            build_op(name, shape.c, shape.edge_stride(i), affine=True)
            for name, (i, _) in zip(ops, space.edges)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for _ in range(self.nodes):
            inputs = [self.edges[edge + i](state) for i, state in enumerate(states)]
            edge += len(states)
            states.append(node_sum(inputs))
        return torch.cat(states[2:], dim=1)


class DiscreteNetwork(nn.Module):
    """stem -> cells with fixed ops -> global average pool -> linear classifier."""

    def __init__(
        self, genotype: Genotype, space: SearchSpace, in_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        genotype.choice(space)  # validates edges and op names against the space
        self.genotype = genotype
        self.space = space
        self.stem = make_stem(in_channels, space)
        shapes = cell_shapes(space)
        self.cells = nn.ModuleList(
            DiscreteCell(genotype.reduce if shape.reduction else genotype.normal, space, shape)
            for shape in shapes
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.nodes * shapes[-1].c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))

    def num_params(self) -> int:
        """Parameters of the whole network."""
        return count_params(self)

    def cell_op_params(self) -> int:
        """Parameters of the chosen ops inside the cells (the thesis's tables count these)."""
        return sum(count_params(cell.edges) for cell in self.cells)

    @torch.no_grad()
    def inherit_from(self, supernet: SuperNet) -> DiscreteNetwork:
        """Copy stem, preprocessing, chosen-op and classifier weights (and BN statistics)
        from a supernet with the same space; BN scales stay 1 and shifts 0 (the supernet's
        BN layers are not affine), so outputs match the supernet's hard path."""
        choice = self.genotype.choice(self.space).tolist()
        self.stem.load_state_dict(supernet.stem.state_dict())
        self.classifier.load_state_dict(supernet.classifier.state_dict())
        for cell, super_cell in zip(self.cells, supernet.cells):
            kind = 1 if cell.reduction else 0
            for name in ("preprocess0", "preprocess1"):
                getattr(cell, name).load_state_dict(
                    getattr(super_cell, name).state_dict(), strict=False
                )
            for edge, index in enumerate(choice[kind]):
                source = super_cell.edges[edge].ops[index].state_dict()
                cell.edges[edge].load_state_dict(source, strict=False)
        return self
