"""The torch modules behind the candidate ops of ``search_core.ops`` (DARTS's building blocks).

Every op maps (N, C, H, W) to (N, C, H, W) at stride 1 and to (N, C, ceil(H/2), ceil(W/2))
at stride 2. Search-time ops use BatchNorm with ``affine=False`` (DARTS); a derived network
uses ``affine=True``. The names, roles and factories are in ``search_core.ops``, which loads
this module (and torch) only when an op is built.
"""

from __future__ import annotations

import torch
from torch import nn


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


def pool(kind: str, c: int, stride: int, affine: bool) -> nn.Module:
    """3x3 max (``kind`` "max") or average pooling -> BN."""
    pool: nn.Module
    if kind == "max":
        pool = nn.MaxPool2d(3, stride=stride, padding=1)
    else:
        pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=affine))


def skip(c: int, stride: int, affine: bool) -> nn.Module:
    """The identity at stride 1; ``FactorizedReduce`` at stride 2."""
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
