"""Candidate operations, registered by name (the ``OPS`` table of DARTS, without its globals).

Every op maps (N, C, H, W) to (N, C, H, W) at stride 1 and to (N, C, ceil(H/2), ceil(W/2))
at stride 2. Search-time ops use BatchNorm with ``affine=False`` (DARTS); a derived network
uses ``affine=True``.

This table loads no torch: a study file's op names are checked against it in a process that
never trains. The torch modules are in ``search_core.layers``, imported when the first op is
built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from search_core.registry import Registry

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class OpSpec:
    """A candidate op: its role (used by the thesis's probes) and a factory (C, stride, affine)."""

    role: str
    build: Callable[[int, int, bool], nn.Module]


OPS: Registry[OpSpec] = Registry("op")


def _layers() -> ModuleType:
    """``search_core.layers`` (and so torch), loaded when an op is first built."""
    from search_core import layers

    return layers


OPS.add("max_pool_3x3", OpSpec("pool", lambda c, s, a: _layers().pool("max", c, s, a)))
OPS.add("avg_pool_3x3", OpSpec("pool", lambda c, s, a: _layers().pool("avg", c, s, a)))
OPS.add("skip_connect", OpSpec("identity", lambda c, s, a: _layers().skip(c, s, a)))
OPS.add("conv_3x3", OpSpec("conv", lambda c, s, a: _layers().ReLUConvBN(c, c, 3, s, a)))
OPS.add("conv_5x5", OpSpec("conv", lambda c, s, a: _layers().ReLUConvBN(c, c, 5, s, a)))
OPS.add("sep_conv_3x3", OpSpec("conv", lambda c, s, a: _layers().SepConv(c, 3, s, a)))
OPS.add("sep_conv_5x5", OpSpec("conv", lambda c, s, a: _layers().SepConv(c, 5, s, a)))
OPS.add("dil_conv_3x3", OpSpec("conv", lambda c, s, a: _layers().DilConv(c, 3, s, 2, a)))
OPS.add("dil_conv_5x5", OpSpec("conv", lambda c, s, a: _layers().DilConv(c, 5, s, 2, a)))


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Instantiate the op registered as ``name``."""
    return OPS.get(name).build(channels, stride, affine)


def op_role(name: str) -> str:
    return OPS.get(name).role


FLOAT_BYTES = 4  # bytes of a float32 parameter, as stored


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
