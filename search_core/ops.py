"""Candidate operations, registered by name (the ``OPS`` table of DARTS, without its globals).

Every op maps (N, C, H, W) to (N, C, H, W) at stride 1 and to (N, C, ceil(H/2), ceil(W/2))
at stride 2. Search-time ops use BatchNorm with ``affine=False`` (DARTS); a derived network
uses ``affine=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from search_core.registry import Registry


@dataclass(frozen=True)
class OpSpec:
    """A candidate op: its role (used by the seed's probes) and a factory (C, stride, affine)."""

    role: str
    build: Callable[[int, int, bool], nn.Module]


OPS: Registry[OpSpec] = Registry("op")


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv k x k -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise dilated conv -> pointwise conv -> BN."""

    def __init__(
        self, c: int, kernel: int, stride: int, dilation: int, affine: bool
    ) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride, padding, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convs, the first carrying the stride (DARTS)."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__(
            DilConv(c, kernel, stride, 1, affine),
            DilConv(c, kernel, 1, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves H and W with two offset stride-2 1x1 convs (identity at stride 2)."""

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        a = self.conv_1(x)
        b = self.conv_2(nn.functional.pad(shifted, (0, 1, 0, 1)))  # keep the grid of conv_1
        return self.bn(torch.cat([a, b], dim=1))


def _pool(kind: str, c: int, stride: int, affine: bool) -> nn.Module:
    pool: nn.Module
    if kind == "max":
        pool = nn.MaxPool2d(3, stride=stride, padding=1)
    else:
        pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=affine))


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS.add("max_pool_3x3", OpSpec("pool", lambda c, s, a: _pool("max", c, s, a)))
OPS.add("avg_pool_3x3", OpSpec("pool", lambda c, s, a: _pool("avg", c, s, a)))
OPS.add("skip_connect", OpSpec("identity", _skip))
OPS.add("conv_3x3", OpSpec("conv", lambda c, s, a: ReLUConvBN(c, c, 3, s, a)))
OPS.add("conv_5x5", OpSpec("conv", lambda c, s, a: ReLUConvBN(c, c, 5, s, a)))
OPS.add("sep_conv_3x3", OpSpec("conv", lambda c, s, a: SepConv(c, 3, s, a)))
OPS.add("sep_conv_5x5", OpSpec("conv", lambda c, s, a: SepConv(c, 5, s, a)))
OPS.add("dil_conv_3x3", OpSpec("conv", lambda c, s, a: DilConv(c, 3, s, 2, a)))
OPS.add("dil_conv_5x5", OpSpec("conv", lambda c, s, a: DilConv(c, 5, s, 2, a)))


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Instantiate the op registered as ``name``."""
    return OPS.get(name).build(channels, stride, affine)


def op_role(name: str) -> str:
    return OPS.get(name).role


FLOAT_BYTES = 4  # bytes of a float32 parameter, as stored


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
