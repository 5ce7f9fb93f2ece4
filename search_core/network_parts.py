"""A derived network as a sum of *parts*: the stem, each cell's two input preprocessings,
the op chosen on every edge, each node's sum, each cell's concatenation and the head. Every
part is identified by a ``PartKey`` (kind, op name, channels, resolution, stride); a
``NetworkLayout`` says which parts a space's networks are made of, and ``part_callable``
runs one part alone (what the latency table times)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_core.config import SearchSpace
from search_core.discrete import node_sum
from search_core.errors import ConfigError
from search_core.genotype import Genotype
from search_core.layers import FactorizedReduce, ReLUConvBN
from search_core.ops import build_op
from search_core.supernet import cell_shapes, make_stem

# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True, order=True)
class PartKey:
    """One measurable part of a derived network, at one input geometry."""

    kind: str  # stem | pre_conv | pre_reduce | op | sum | concat | head
    name: str  # op name for kind "op", else ""
    c_in: int
    c_out: int
    height: int
    width: int
    stride: int = 1
    arity: int = 1  # inputs of a sum or a concatenation

    @property
    def label(self) -> str:
        op = f"{self.kind}:{self.name}" if self.name else self.kind
        return (f"{op} c{self.c_in}->{self.c_out} {self.height}x{self.width} "
                f"s{self.stride} n{self.arity}")


@dataclass(frozen=True)
class Slot:
    """An edge of one cell: which op runs there is the genotype's choice."""

    cell_kind: str  # normal | reduce
    edge: int
    channels: int
    height: int
    width: int
    stride: int

    def key(self, op: str) -> PartKey:
        return PartKey("op", op, self.channels, self.channels, self.height, self.width,
                       self.stride)


@dataclass(frozen=True)
class NetworkLayout:
    """The parts of every network of a search space at one input shape."""

    space: SearchSpace
    in_channels: int
    image: tuple[int, int]
    num_classes: int
    fixed: tuple[PartKey, ...]  # parts every architecture has
    slots: tuple[Slot, ...]  # one per edge of every cell

    @property
    def signature(self) -> str:
        """Identifies the space and input shape a correction was fitted for."""
        s = self.space
        return (f"ops={','.join(s.ops)} cells={s.cells} nodes={s.nodes} channels={s.channels} "
                f"stem={s.stem_multiplier} input={self.in_channels}x{self.image[0]}x"
                f"{self.image[1]} classes={self.num_classes}")

    def part_keys(self) -> list[PartKey]:
        """Every part any architecture of the space can contain."""
        ops = {slot.key(op) for slot in self.slots for op in self.space.ops}
        return sorted(set(self.fixed) | ops)

    def op_keys(self, genotype: Genotype) -> list[PartKey]:
        return [slot.key(genotype.cell(slot.cell_kind)[slot.edge]) for slot in self.slots]


def _halve(size: int) -> int:
    return (size + 1) // 2  # every stride-2 part maps H to ceil(H / 2)


def network_layout(
    space: SearchSpace, in_channels: int, image: tuple[int, int], num_classes: int
) -> NetworkLayout:
    """Walk the macro-structure (the same ``cell_shapes`` the networks are built from)."""
    height, width = image
    c_stem = space.stem_multiplier * space.channels
    fixed = [PartKey("stem", "", in_channels, c_stem, height, width)]
    slots: list[Slot] = []
    prev_prev, prev = (height, width), (height, width)
    for shape in cell_shapes(space):
        kind = "reduce" if shape.reduction else "normal"
        pre0 = "pre_reduce" if shape.reduction_prev else "pre_conv"
        fixed.append(PartKey(pre0, "", shape.c_prev_prev, shape.c, *prev_prev,
                             stride=2 if shape.reduction_prev else 1))
        fixed.append(PartKey("pre_conv", "", shape.c_prev, shape.c, *prev))
        out = (_halve(prev[0]), _halve(prev[1])) if shape.reduction else prev
        for e, (source, target) in enumerate(space.edges):
            stride = shape.edge_stride(source)
            at = prev if source < 2 else out
            slots.append(Slot(kind, e, shape.c, at[0], at[1], stride))
            if source == target - 1:  # the last edge into this node: the node's sum
                fixed.append(PartKey("sum", "", shape.c, shape.c, *out, arity=target))
        fixed.append(PartKey("concat", "", shape.c, space.nodes * shape.c, *out,
                             arity=space.nodes))
        prev_prev, prev = prev, out
    c_last = space.nodes * cell_shapes(space)[-1].c
    fixed.append(PartKey("head", "", c_last, num_classes, *prev))
    return NetworkLayout(space, in_channels, (height, width), num_classes, tuple(fixed),
                         tuple(slots))


class Head(nn.Module):
    """Global average pool -> linear, as in the networks."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(x).flatten(1))


def part_callable(key: PartKey, batch: int, device: torch.device) -> Callable[[], Any]:
    """A no-argument function running the part once on a fixed random input."""
    if key.kind in ("sum", "concat"):
        inputs = [torch.randn(batch, key.c_in, key.height, key.width, device=device)
                  for _ in range(key.arity)]
        if key.kind == "sum":
            return lambda: node_sum(inputs)
        return lambda: torch.cat(inputs, dim=1)
    module: nn.Module
    if key.kind == "stem":
        module = make_stem(key.c_in, SearchSpace(channels=key.c_out, stem_multiplier=1))
    elif key.kind == "pre_conv":
        module = ReLUConvBN(key.c_in, key.c_out, 1, 1, affine=True)
    elif key.kind == "pre_reduce":
        module = FactorizedReduce(key.c_in, key.c_out, affine=True)
    elif key.kind == "op":
        module = build_op(key.name, key.c_in, key.stride, affine=True)
    elif key.kind == "head":
        module = Head(key.c_in, key.c_out)
    else:
        raise ConfigError(f"latency part kind {key.kind!r} is unknown")
    module = module.to(device).eval()
    x = torch.randn(batch, key.c_in, key.height, key.width, device=device)
    return lambda: module(x)


