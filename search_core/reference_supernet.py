"""The plain per-edge DARTS supernet: every op on every edge, one Python call at a time.

This is the obviously-correct version of ``search_core.supernet.SuperNet``: the oracle its
fast path is tested against (``tests/test_core_fastpath.py``) and the baseline of
``hpo bench supernet --impl per-edge``. Module names and the state_dict layout are the same
as ``SuperNet``'s (``cells.i.edges.e.ops.m``), so weights load from one into the other.
Not used for training.
"""

from __future__ import annotations

import torch
from torch import nn

from search_core.config import SearchSpace
from search_core.ops import build_op
from search_core.supernet import CellShape, cell_input_preprocess, cell_shapes, make_stem


class ReferenceMixedOp(nn.Module):
    """g(x) = sum_m gamma_m o_m(x) over the candidate ops of one edge."""

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(n, channels, stride, affine=False) for n in op_names)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        if gamma.dim() == 1:  # (k,)
            return sum(w * op(x) for w, op in zip(gamma, self.ops))  # type: ignore[return-value]
        per_example = gamma.t()[:, :, None, None, None]  # (k, B, 1, 1, 1)
        return sum(w * op(x) for w, op in zip(per_example, self.ops))  # type: ignore[return-value]


class ReferenceCell(nn.Module):
    """A cell of ``nodes`` intermediate nodes, every earlier node feeding every later one."""

    def __init__(self, space: SearchSpace, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.nodes = space.nodes
        self.preprocess0, self.preprocess1 = cell_input_preprocess(
            shape.c_prev_prev, shape.c_prev, shape.c, shape.reduction_prev, affine=False
        )
        self.edges = nn.ModuleList(
            ReferenceMixedOp(space.ops, shape.c, shape.edge_stride(i)) for i, _ in space.edges
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
                    total = total + mixed.ops[choice[edge]](state)
                else:
                    total = total + mixed(state, gamma[edge])  # type: ignore[index]
                edge += 1
            states.append(total)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)


class ReferenceSuperNet(nn.Module):
    """stem -> cells -> global average pool -> linear classifier; same call as ``SuperNet``:
    ``net(x, gamma=(2, E, k) or (2, E, B, k))`` or ``net(x, choice=(2, E))``."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.stem = make_stem(in_channels, space)
        shapes = cell_shapes(space)
        self.cells = nn.ModuleList(ReferenceCell(space, shape) for shape in shapes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.nodes * shapes[-1].c, num_classes)

    def forward(
        self,
        x: torch.Tensor,
        gamma: torch.Tensor | None = None,
        choice: torch.Tensor | None = None,
    ) -> torch.Tensor:
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
