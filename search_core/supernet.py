"""The DARTS supernet: mixed edges, search cells and the network around them.

Shapes: x (B, C_in, H, W); architecture weights ``gamma`` (2, E, k) — one weight vector per
edge and cell type — or (2, E, B, k) when Gumbel noise is drawn per example. A hard
architecture is ``choice`` (2, E) of op indices: only the chosen op runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from search_core.config import SearchSpace
from search_core.ops import FactorizedReduce, ReLUConvBN, build_op


class MixedOp(nn.Module):
    """g(x) = sum_m gamma_m o_m(x) over the candidate ops of one edge."""

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(n, channels, stride, affine=False) for n in op_names)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        if gamma.dim() == 1:  # (k,)
            return sum(w * op(x) for w, op in zip(gamma, self.ops))  # type: ignore[return-value]
        per_example = gamma.t()[:, :, None, None, None]  # (k, B, 1, 1, 1)
        return sum(w * op(x) for w, op in zip(per_example, self.ops))  # type: ignore[return-value]

    def forward_choice(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return self.ops[index](x)


def cell_input_preprocess(
    c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool, affine: bool
) -> tuple[nn.Module, nn.Module]:
    """ReLU-conv1x1-BN for both inputs; factorized reduce for s0 after a reduction cell."""
    pre0: nn.Module
    if reduction_prev:
        pre0 = FactorizedReduce(c_prev_prev, c, affine)
    else:
        pre0 = ReLUConvBN(c_prev_prev, c, 1, 1, affine)
    return pre0, ReLUConvBN(c_prev, c, 1, 1, affine)


@dataclass(frozen=True)
class CellShape:
    """Channels in and inside one cell of the macro-structure."""

    c_prev_prev: int
    c_prev: int
    c: int
    reduction: bool
    reduction_prev: bool

    def edge_stride(self, source: int) -> int:
        """Edges leaving the cell inputs (nodes 0, 1) of a reduction cell have stride 2."""
        return 2 if self.reduction and source < 2 else 1


def cell_shapes(space: SearchSpace) -> list[CellShape]:
    """Shapes of the L cells: reduction cells double C; each cell outputs nodes * C."""
    c = space.channels
    c_prev_prev = c_prev = space.stem_multiplier * c
    shapes, reduction_prev = [], False
    for index in range(space.cells):
        reduction = index in space.reduction_cells
        c = 2 * c if reduction else c
        shapes.append(CellShape(c_prev_prev, c_prev, c, reduction, reduction_prev))
        c_prev_prev, c_prev, reduction_prev = c_prev, space.nodes * c, reduction
    return shapes


def make_stem(in_channels: int, space: SearchSpace) -> nn.Sequential:
    """conv3x3 (C_in -> stem_multiplier * C) + BN."""
    c_stem = space.stem_multiplier * space.channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
    )


class SearchCell(nn.Module):
    """A cell of ``nodes`` intermediate nodes, every earlier node feeding every later one."""

    def __init__(self, space: SearchSpace, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.nodes = space.nodes
        self.preprocess0, self.preprocess1 = cell_input_preprocess(
            shape.c_prev_prev, shape.c_prev, shape.c, shape.reduction_prev, affine=False
        )
        self.edges = nn.ModuleList(
            MixedOp(space.ops, shape.c, shape.edge_stride(i)) for i, _ in space.edges
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        gamma: torch.Tensor | None = None,
        choice: list[int] | None = None,
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for _ in range(self.nodes):
            total = 0
            for state in states:
                mixed = self.edges[edge]
                if choice is not None:
                    total = total + mixed.forward_choice(state, choice[edge])
                else:
                    total = total + mixed(state, gamma[edge])  # type: ignore[index]
                edge += 1
            states.append(total)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)


class SuperNet(nn.Module):
    """stem -> cells -> global average pool -> linear classifier."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.stem = make_stem(in_channels, space)
        shapes = cell_shapes(space)
        self.cells = nn.ModuleList(SearchCell(space, shape) for shape in shapes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.nodes * shapes[-1].c, num_classes)

    def forward(
        self,
        x: torch.Tensor,
        gamma: torch.Tensor | None = None,
        choice: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, classes) under soft weights ``gamma`` or a hard ``choice`` (2, E)."""
        if (gamma is None) == (choice is None):
            raise ValueError("pass exactly one of gamma (soft) or choice (hard)")
        choice_lists = choice.tolist() if choice is not None else None
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            kind = 1 if cell.reduction else 0
            if choice_lists is not None:
                out = cell(s0, s1, choice=choice_lists[kind])
            else:
                out = cell(s0, s1, gamma=gamma[kind])  # type: ignore[index]
            s0, s1 = s1, out
        return self.classifier(self.pool(s1).flatten(1))


def gumbel_softmax(
    alpha: torch.Tensor, temperature: float, generator: torch.Generator, samples: int = 0
) -> torch.Tensor:
    """Soft Gumbel-Softmax sample of ``alpha`` (..., k); ``samples`` > 0 draws one per
    example and returns (..., samples, k). Noise comes from ``generator`` only."""
    shape = alpha.shape if samples == 0 else (*alpha.shape[:-1], samples, alpha.shape[-1])
    logits = alpha if samples == 0 else alpha.unsqueeze(-2)
    uniform = torch.rand(shape, generator=generator, dtype=alpha.dtype)
    neg_log_u = (-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20)
    gumbel = -torch.log(neg_log_u)
    return torch.softmax((logits + gumbel) / temperature, dim=-1)
