"""The DARTS supernet: mixed edges, search cells and the network around them.

Shapes: x (B, C_in, H, W); architecture weights ``gamma`` (2, E, k) — one weight vector per
edge and cell type — or (2, E, B, k) when Gumbel noise is drawn per example. A hard
architecture is ``choice`` (2, E) of op indices: only the chosen op runs.

The soft path computes exactly sum_m gamma_m o_m(x) on every edge (the plain per-edge version
is ``search_core.reference_supernet``, its oracle), organised for CPUs
(``search_core.fastpath`` holds the kernels): activations are channels-last; a cell visits
its nodes as *sources* and, for all edges leaving a source, runs the parameter-free work once
(the pool, the BN of a pooled input in train mode, the ReLU every conv op starts with); on
small maps the convs of those edges run as one grouped conv per layer; a weight shared by
the batch is folded into the scale of the op's last BatchNorm; node sums are fused
multiply-adds, in place. Parameters stay stored per edge (``cells.i.edges.e.ops.m``), so
state dicts, the hard path and ``DiscreteNetwork.inherit_from`` see the same modules as
before, and every BN module's running statistics move as if it had run on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from search_core.config import SearchSpace
from search_core.device import autocast
from search_core.fastpath import (
    CHANNELS_LAST,
    GROUP_MAX_ELEMENTS,
    GROUP_TAILS,
    TAILS,
    NodeSums,
    SharedInput,
    add,
    batch_norm,
    op_kind,
    preprocess,
    shared_batch_norm,
)
from search_core.layers import FactorizedReduce, ReLUConvBN
from search_core.ops import build_op

if TYPE_CHECKING:
    from search_core.data import Split


class MixedOp(nn.Module):
    """The candidate ops of one edge. The cell computes g(x) = sum_m gamma_m o_m(x) over
    all edges at once, so this only holds the ops (the per-edge sum is the reference's,
    ``ReferenceMixedOp``); its parameter names match the reference's."""

    def __init__(self, op_names: tuple[str, ...], channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(n, channels, stride, affine=False) for n in op_names)


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


@dataclass(frozen=True)
class _Source:
    """A node of a cell, the edges leaving it and the intermediate nodes they enter
    (offsets 0..nodes-1)."""

    node: int
    edges: tuple[int, ...]
    targets: tuple[int, ...]
    stride: int


def _sources(space: SearchSpace, shape: CellShape) -> tuple[_Source, ...]:
    """Sources 0..nodes (the last node feeds no edge), in the order the cell visits them."""
    leaving: dict[int, list[tuple[int, int]]] = {i: [] for i in range(space.nodes + 1)}
    for edge, (i, j) in enumerate(space.edges):
        leaving[i].append((edge, j - 2))
    return tuple(
        _Source(i, tuple(e for e, _ in out), tuple(t for _, t in out), shape.edge_stride(i))
        for i, out in leaving.items()
    )


class SearchCell(nn.Module):
    """A cell of ``nodes`` intermediate nodes, every earlier node feeding every later one.

    The soft path visits nodes as sources and adds every op of every edge leaving a source
    to the sum of the edge's target node (see the module docstring)."""

    def __init__(
        self, space: SearchSpace, shape: CellShape, group_max_elements: int = GROUP_MAX_ELEMENTS
    ) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.nodes = space.nodes
        self.preprocess0, self.preprocess1 = cell_input_preprocess(
            shape.c_prev_prev, shape.c_prev, shape.c, shape.reduction_prev, affine=False
        )
        self.edges = nn.ModuleList(
            MixedOp(space.ops, shape.c, shape.edge_stride(i)) for i, _ in space.edges
        )
        self.group_max_elements = group_max_elements
        # per source: (kind, op m on each edge leaving it) for every op m; plain attributes,
        # so the modules stay registered (and named) under ``edges`` only
        self._sources = _sources(space, shape)
        self._groups = tuple(
            tuple(
                (op_kind(ops[0]), ops)
                for ops in zip(*(self.edges[e].ops for e in source.edges))
            )
            for source in self._sources
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        gamma: torch.Tensor | None = None,
        choice: list[int] | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Soft: ``gamma`` (E, k) or (E, B, k). Hard: ``choice`` (E op indices), optionally
        scaled by ``weights`` (E,) (single-path training)."""
        states = [preprocess(self.preprocess0, s0), preprocess(self.preprocess1, s1)]
        if choice is not None:
            return self._forward_hard(states, choice, weights)
        if gamma is None:
            raise ValueError("pass gamma (soft) or choice (hard)")
        sums = NodeSums(self.nodes)
        for source, groups in zip(self._sources, self._groups):
            self._push(states[source.node], source, groups, gamma[list(source.edges)], sums)
            if source.node >= 1:  # node source.node + 1 has all its inputs now
                states.append(sums.sums[source.node - 1])  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)

    def _forward_hard(
        self, states: list[torch.Tensor], choice: list[int], weights: torch.Tensor | None
    ) -> torch.Tensor:
        edge = 0
        for _ in range(self.nodes):
            total: torch.Tensor | None = None
            for state in states:
                out = self.edges[edge].ops[choice[edge]](state)
                if weights is not None:
                    out = weights[edge] * out
                total = add(total, out)
                edge += 1
            states.append(total)  # type: ignore[arg-type]
        return torch.cat(states[2:], dim=1)

    def _push(
        self,
        x: torch.Tensor,
        source: _Source,
        groups: tuple[tuple[str, tuple[nn.Module, ...]], ...],
        gamma: torch.Tensor,
        sums: NodeSums,
    ) -> None:
        """Add every op of every edge leaving ``source`` (tensor ``x``; ``gamma`` (n, k) or
        (n, B, k) for its n edges) to the sums of the edges' target nodes."""
        shared = SharedInput(x)
        for m, (kind, ops) in enumerate(groups):
            weights = gamma[..., m]  # (n,) or (n, B)
            if kind == "identity":
                outs, scaled = [x] * len(ops), False
            elif kind == "pool":
                outs, scaled = self._pools(ops, x, weights)
            elif kind == "relu_tail":
                outs, scaled = self._tails(ops, shared, weights, source.stride)
            else:
                outs, scaled = [op(x) for op in ops], False
            for t, out, w in zip(source.targets, outs, weights.unbind(0)):
                sums.add(t, out, None if scaled else w)

    def _tails(
        self, ops: tuple[nn.Module, ...], shared: SharedInput, weights: torch.Tensor, stride: int
    ) -> tuple[list[torch.Tensor], bool]:
        """Outputs of ops that start with a ReLU, already scaled by their edge weight if it is
        shared by the batch; grouped into one conv per layer on small maps."""
        n, kind = len(ops), type(ops[0])
        fold = weights.dim() == 1
        outputs = n * shared.x.numel() // stride**2  # elements the n ops write
        if n > 1 and kind in GROUP_TAILS and outputs <= self.group_max_elements:
            out = GROUP_TAILS[kind](ops, shared, weights if fold else None)
            return list(out.split(out.shape[1] // n, dim=1)), fold
        tail = TAILS[kind]
        return [tail(op, shared, w if fold else None) for op, w in zip(ops, weights)], fold

    def _pools(
        self, ops: tuple[nn.Module, ...], x: torch.Tensor, weights: torch.Tensor
    ) -> tuple[list[torch.Tensor], bool]:
        """Pool once. Train mode: normalise once (batch statistics are the same for every
        edge). Eval mode: each edge's BN with its running statistics, scaled if it can be."""
        pooled = ops[0][0](x)  # type: ignore[index]
        if self.training:
            return [shared_batch_norm(pooled, [op[1] for op in ops])] * len(ops), False  # type: ignore[index]
        fold = weights.dim() == 1
        return [batch_norm(op[1], pooled, w if fold else None)  # type: ignore[index]
                for op, w in zip(ops, weights)], fold


class SuperNet(nn.Module):
    """stem -> cells -> global average pool -> linear classifier."""

    def __init__(
        self,
        space: SearchSpace,
        in_channels: int,
        num_classes: int,
        group_max_elements: int = GROUP_MAX_ELEMENTS,
    ) -> None:
        super().__init__()
        self.space = space
        self.stem = make_stem(in_channels, space)
        shapes = cell_shapes(space)
        self.cells = nn.ModuleList(
            SearchCell(space, shape, group_max_elements) for shape in shapes
        )
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
        if choice is not None:
            return self._run(x, choice=choice.tolist())
        return self._run(x, gamma=gamma)

    def single_path(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Logits when ``gamma`` (2, E, k) is one-hot in value (a straight-through hard
        sample): only the op with the largest weight runs on each edge, scaled by that weight,
        so the output equals the soft path's and gamma still gets gradients."""
        if gamma.dim() != 3:
            raise ValueError(f"single_path: gamma must be (2, E, k); got {tuple(gamma.shape)}")
        index = gamma.detach().argmax(-1)  # (2, E)
        weights = gamma.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # (2, E), value 1
        return self._run(x, choice=index.tolist(), weights=weights)

    def _run(
        self,
        x: torch.Tensor,
        gamma: torch.Tensor | None = None,
        choice: list[list[int]] | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # channels-last from the stem on (an input with one channel cannot carry the format)
        s0 = s1 = self.stem(x).contiguous(memory_format=CHANNELS_LAST)
        for cell in self.cells:
            kind = 1 if cell.reduction else 0
            if choice is not None:
                w = weights[kind] if weights is not None else None
                out = cell(s0, s1, choice=choice[kind], weights=w)
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
    # drawn on the generator's device (the CPU): the same noise on every device
    uniform = torch.rand(shape, generator=generator, dtype=alpha.dtype).to(alpha.device)
    neg_log_u = (-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20)
    gumbel = -torch.log(neg_log_u)
    return torch.softmax((logits + gumbel) / temperature, dim=-1)


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """Hard one-hot sample of a soft sample (..., k): exactly one-hot in value, with the soft
    sample's gradient (GDAS's straight-through estimator)."""
    index = soft.detach().argmax(-1)
    hard = F.one_hot(index, soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


@contextmanager
def recalibrated_bn(
    net: nn.Module, choice: torch.Tensor, train: Split, batches: int = 8, batch_size: int = 128,
    precision: str = "fp32",
) -> Iterator[None]:
    """Inside the block, ``net``'s BN statistics are re-estimated for the hard architecture
    ``choice`` on up to ``batches`` train batches; outside, they are restored."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
              m.momentum) for m in bns]  # type: ignore[union-attr]
    was_training = net.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
        net.train()
        device = next(net.parameters()).device
        with torch.no_grad(), autocast(device, precision):
            for start in range(0, min(len(train), batches * batch_size), batch_size):
                net(train.x[start : start + batch_size].to(device), choice=choice)
        net.eval()
        yield
    finally:
        for m, (mean, var, count, momentum) in zip(bns, saved):
            m.running_mean.copy_(mean)  # type: ignore[union-attr]
            m.running_var.copy_(var)  # type: ignore[union-attr]
            m.num_batches_tracked.copy_(count)  # type: ignore[union-attr]
            m.momentum = momentum
        net.train(was_training)
