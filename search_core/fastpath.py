"""CPU kernels of the supernet's soft path (used by ``search_core.supernet.SearchCell``).

Each function computes exactly what the op modules of ``search_core.layers`` compute, reusing
their parameters and BN buffers, but shares work between the edges that leave one node:

- ``SharedInput``: the ReLU every conv op starts with, and a factorized reduce's two pixel
  grids, computed once per source node;
- ``batch_norm``: a scalar edge weight folded into BN's scale (``w * bn(y)`` in one kernel);
- ``shared_batch_norm``: BN of a pooled input normalised once for all edges in train mode;
- group tails: the convs of all edges leaving a node as one grouped conv each (depthwise
  weights concatenated along channels, pointwise as a grouped 1x1 conv, BN over the
  concatenated channels). Per-channel maths is unchanged. They win on small maps; on large
  maps separate per-edge convs are faster (cache), hence ``GROUP_MAX_ELEMENTS``.

Every BN module's buffers (running mean and variance, batch counter) move exactly as if the
module had run by itself. The convs of ``search_core.layers`` carry no bias, and these kernels
pass none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from search_core.layers import DilConv, FactorizedReduce, ReLUConvBN, SepConv

CHANNELS_LAST = torch.channels_last
# Group the convs of the n edges leaving a node when their outputs hold at most this many
# elements together. On one thread of a 2-core EPYC, grouped convs were 1.5-2x faster than
# per-edge ones at 4 x 64x8x8x8 and 1.3-2x slower from 4 x 64x16x8x8 up (the grouped maps
# leave the cache); a whole supernet step confirmed 2**17 (digits shape: 60 -> 44 ms).
GROUP_MAX_ELEMENTS = 1 << 17


# ---------------------------------------------------------------- batch norm


def advance(bn: nn.BatchNorm2d) -> float:
    """What ``nn.BatchNorm2d.forward`` does before normalising: count the batch (train mode)
    and return the running-average factor."""
    if not bn.training:
        return 0.0
    bn.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
    if bn.momentum is None:  # cumulative average
        return 1.0 / float(bn.num_batches_tracked)  # type: ignore[arg-type]
    return bn.momentum


def _channel_scale(scale: torch.Tensor, channels: int) -> torch.Tensor:
    """(n,) or () -> (n * channels,): a real tensor, since BN kernels misread a stride-0
    ``expand``-ed weight in eval-mode backward (torch 2.13; the oracle tests caught it)."""
    return scale.reshape(-1).repeat_interleave(channels)


def batch_norm(bn: nn.BatchNorm2d, y: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * bn(y)`` in one kernel; ``scale`` is a scalar tensor or None."""
    factor = advance(bn)
    weight, bias = bn.weight, bn.bias
    if scale is not None:
        factors = _channel_scale(scale, bn.num_features)
        weight = factors if weight is None else weight * factors
        bias = None if bias is None else bias * factors
    return F.batch_norm(
        y, bn.running_mean, bn.running_var, weight, bias, bn.training, factor, bn.eps
    )


def _blend_running_stats(
    bns: Sequence[nn.BatchNorm2d], mean: torch.Tensor, var: torch.Tensor
) -> None:
    """Train mode: count the batch in every module and move its running statistics towards
    its channel block of the batch statistics (the whole of them if they are one block), as
    ``nn.BatchNorm2d.forward`` would; a few multi-tensor calls for all the modules."""
    channels = bns[0].num_features
    means = mean.split(channels) if len(mean) > channels else [mean] * len(bns)
    variances = var.split(channels) if len(var) > channels else [var] * len(bns)
    with torch.no_grad():
        torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)  # type: ignore[misc]
        factors = [
            bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            for bn in bns  # type: ignore[arg-type]
        ]
        for running, batch in (("running_mean", means), ("running_var", variances)):
            buffers = [getattr(bn, running) for bn in bns]
            if len(set(factors)) == 1:  # the usual case: one momentum
                torch._foreach_lerp_(buffers, list(batch), factors[0])
            else:
                torch._foreach_mul_(buffers, [1.0 - f for f in factors])
                torch._foreach_add_(buffers, torch._foreach_mul(list(batch), factors))


def _batch_statistics_buffers(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh running mean and variance buffers: BN with momentum 1 fills them with the batch
    mean and (unbiased) variance, which ``_blend_running_stats`` hands on to the modules."""
    channels = y.shape[1]  # float32 whatever y is: the modules' buffers are (autocast)
    return (torch.zeros(channels, dtype=torch.float32, device=y.device),
            torch.ones(channels, dtype=torch.float32, device=y.device))


def shared_batch_norm(y: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """Train mode, non-affine ``bns`` that all see ``y``: their (equal) output, once."""
    mean, var = _batch_statistics_buffers(y)
    out = F.batch_norm(y, mean, var, None, None, True, 1.0, bns[0].eps)  # mean, var := batch
    _blend_running_stats(bns, mean, var)
    return out


def grouped_batch_norm(
    bns: Sequence[nn.BatchNorm2d], y: torch.Tensor, scale: torch.Tensor | None
) -> torch.Tensor:
    """Non-affine ``bns[i]`` on channel block i of ``y`` (B, n*C, H, W), times ``scale[i]``
    (scale (n,) or None)."""
    weight = None if scale is None else _channel_scale(scale, bns[0].num_features)
    if not bns[0].training:
        mean = torch.cat([bn.running_mean for bn in bns])  # type: ignore[misc]
        var = torch.cat([bn.running_var for bn in bns])  # type: ignore[misc]
        return F.batch_norm(y, mean, var, weight, None, False, 0.0, bns[0].eps)
    mean, var = _batch_statistics_buffers(y)
    out = F.batch_norm(y, mean, var, weight, None, True, 1.0, bns[0].eps)  # mean, var := batch
    _blend_running_stats(bns, mean, var)
    return out


# ---------------------------------------------------------------- shared inputs


def halves(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two grids a factorized reduce reads: even pixels (what its stride-2 1x1 ``conv_1``
    sees) and odd pixels zero-padded to the same size (``conv_2`` on the shifted input)."""
    even = r[:, :, ::2, ::2]
    odd = r[:, :, 1::2, 1::2]
    odd = F.pad(odd, (0, even.shape[3] - odd.shape[3], 0, even.shape[2] - odd.shape[2]))
    return (even.contiguous(memory_format=CHANNELS_LAST),
            odd.contiguous(memory_format=CHANNELS_LAST))


class SharedInput:
    """A source node's tensor and the parameter-free work on it that every edge leaving it
    shares, computed on first use: its ReLU and a factorized reduce's two pixel grids."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self._relu: torch.Tensor | None = None
        self._halves: tuple[torch.Tensor, torch.Tensor] | None = None
        self._repeated: dict[int, torch.Tensor] = {}

    @property
    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu

    @property
    def halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._halves is None:
            self._halves = halves(self.relu)
        return self._halves

    def relu_repeated(self, n: int) -> torch.Tensor:
        """The ReLU output repeated n times along channels (input of grouped depthwise convs)."""
        if n not in self._repeated:
            self._repeated[n] = torch.cat([self.relu] * n, dim=1)  # keeps channels-last
        return self._repeated[n]


# ---------------------------------------------------------------- one edge

Tail = Callable[[nn.Module, SharedInput, "torch.Tensor | None"], torch.Tensor]


def conv(module: nn.Module, x: torch.Tensor, weight: torch.Tensor | None = None,
         groups: int | None = None) -> torch.Tensor:
    """``module``'s conv of ``x`` (with ``weight`` and ``groups`` in place of its own, for
    grouped kernels). Under a CPU autocast a strided grouped conv runs unstrided and keeps
    every stride-th output pixel (the same numbers): oneDNN's bfloat16 backward of strided
    depthwise convs was about 7x slower than its float32 one here (AVX-512 BF16, torch
    2.13), while unstrided ones are faster in bfloat16 than in float32."""
    weight = module.weight if weight is None else weight  # type: ignore[assignment]
    groups = module.groups if groups is None else groups  # type: ignore[assignment]
    stride = module.stride
    if stride != (1, 1) and groups > 1 and x.device.type == "cpu" \
            and torch.is_autocast_enabled("cpu"):  # unstrided, then every stride-th pixel
        y = F.conv2d(x, weight, None, 1, module.padding, module.dilation, groups)  # type: ignore[arg-type]
        return y[:, :, ::stride[0], ::stride[1]].contiguous(memory_format=CHANNELS_LAST)
    return F.conv2d(x, weight, None, stride, module.padding, module.dilation, groups)  # type: ignore[arg-type]


def _dil(op: nn.Module, r: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """DilConv after its ReLU: depthwise, pointwise, BN."""
    return batch_norm(op[3], op[2](conv(op[1], r)), scale)  # type: ignore[index]


def _dil_tail(op: nn.Module, source: SharedInput, scale: torch.Tensor | None) -> torch.Tensor:
    return _dil(op, source.relu, scale)


def _sep_tail(op: nn.Module, source: SharedInput, scale: torch.Tensor | None) -> torch.Tensor:
    first, second = op[0], op[1]  # type: ignore[index]
    y = first[3](first[2](conv(first[1], source.relu)))
    return _dil(second, torch.relu_(y), scale)


def _conv_tail(op: nn.Module, source: SharedInput, scale: torch.Tensor | None) -> torch.Tensor:
    return batch_norm(op[2], op[1](source.relu), scale)  # type: ignore[index]


def _reduce_tail(op: nn.Module, source: SharedInput, scale: torch.Tensor | None) -> torch.Tensor:
    """A factorized reduce on the shared grids: its stride-2 1x1 convs as stride-1 ones."""
    even, odd = source.halves
    a = F.conv2d(even, op.conv_1.weight)  # type: ignore[union-attr,arg-type]
    b = F.conv2d(odd, op.conv_2.weight)  # type: ignore[union-attr,arg-type]
    return batch_norm(op.bn, torch.cat([a, b], dim=1), scale)  # type: ignore[arg-type]


# Ops that start with a ReLU: the rest of the op, applied to the shared ReLU output.
TAILS: dict[type, Tail] = {
    SepConv: _sep_tail,
    DilConv: _dil_tail,
    ReLUConvBN: _conv_tail,
    FactorizedReduce: _reduce_tail,
}


def preprocess(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A cell input's ReLU-conv-BN, or its factorized reduce on the two pixel grids."""
    if isinstance(module, FactorizedReduce):
        return _reduce_tail(module, SharedInput(x), None)
    return module(x)


# ---------------------------------------------------------------- all edges of a node

GroupTail = Callable[[Sequence[nn.Module], SharedInput, "torch.Tensor | None"], torch.Tensor]


def _cat_weights(convs: Sequence[nn.Module]) -> torch.Tensor:
    return torch.cat([conv.weight for conv in convs])  # type: ignore[misc]


def _grouped_conv(convs: Sequence[nn.Module], y: torch.Tensor, groups: int) -> torch.Tensor:
    """``convs[i]`` on channel block i of ``y``: one conv with ``groups`` groups."""
    return conv(convs[0], y, _cat_weights(convs), groups)


def _dil_group(dils: Sequence[nn.Module], y: torch.Tensor,
               scale: torch.Tensor | None) -> torch.Tensor:
    """DilConvs after their ReLU, ``dils[i]`` on channel block i of ``y``."""
    n, channels = len(dils), dils[0][1].in_channels  # type: ignore[index]
    y = _grouped_conv([d[1] for d in dils], y, n * channels)  # type: ignore[index]
    y = _grouped_conv([d[2] for d in dils], y, n)  # type: ignore[index]
    return grouped_batch_norm([d[3] for d in dils], y, scale)  # type: ignore[index]


def _dil_group_tail(ops: Sequence[nn.Module], source: SharedInput,
                    scale: torch.Tensor | None) -> torch.Tensor:
    return _dil_group(ops, source.relu_repeated(len(ops)), scale)


def _sep_group_tail(ops: Sequence[nn.Module], source: SharedInput,
                    scale: torch.Tensor | None) -> torch.Tensor:
    firsts = [op[0] for op in ops]  # type: ignore[index]
    y = torch.relu_(_dil_group(firsts, source.relu_repeated(len(ops)), None))
    return _dil_group([op[1] for op in ops], y, scale)  # type: ignore[index]


def _conv_group_tail(ops: Sequence[nn.Module], source: SharedInput,
                     scale: torch.Tensor | None) -> torch.Tensor:
    y = _grouped_conv([op[1] for op in ops], source.relu, 1)  # type: ignore[index]
    return grouped_batch_norm([op[2] for op in ops], y, scale)  # type: ignore[index]


def _reduce_group_tail(ops: Sequence[nn.Module], source: SharedInput,
                       scale: torch.Tensor | None) -> torch.Tensor:
    even, odd = source.halves
    a = F.conv2d(even, _cat_weights([op.conv_1 for op in ops]))  # type: ignore[union-attr]
    b = F.conv2d(odd, _cat_weights([op.conv_2 for op in ops]))  # type: ignore[union-attr]
    half_a, half_b = ops[0].conv_1.out_channels, ops[0].conv_2.out_channels  # type: ignore[union-attr]
    blocks = [t for pair in zip(a.split(half_a, 1), b.split(half_b, 1)) for t in pair]
    return grouped_batch_norm([op.bn for op in ops], torch.cat(blocks, 1), scale)  # type: ignore[misc]


GROUP_TAILS: dict[type, GroupTail] = {
    SepConv: _sep_group_tail,
    DilConv: _dil_group_tail,
    ReLUConvBN: _conv_group_tail,
    FactorizedReduce: _reduce_group_tail,
}


# ---------------------------------------------------------------- weighted sums


def op_kind(op: nn.Module) -> str:
    """How the cell runs an op: shared by all edges of a source ("identity", "pool"), after
    the source's shared ReLU ("relu_tail"), or called as it is ("generic")."""
    if isinstance(op, nn.Identity):
        return "identity"
    if (
        isinstance(op, nn.Sequential)
        and len(op) == 2
        and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))
        and isinstance(op[1], nn.BatchNorm2d)
        and not op[1].affine
    ):
        return "pool"
    return "relu_tail" if type(op) in TAILS and not _has_affine_bn(op) else "generic"


def _has_affine_bn(op: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) and m.affine for m in op.modules())


class NodeSums:
    """The running sums of a cell's intermediate nodes. A sum that is a tensor of its own
    (not an op's output, which may be a view or shared) is updated in place: autograd saves
    none of these sums, and it spares a fresh tensor per term."""

    def __init__(self, nodes: int) -> None:
        self.sums: list[torch.Tensor | None] = [None] * nodes
        self._owned = [False] * nodes

    def add(self, node: int, value: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """sums[node] += weight * value (weight: None, a scalar or one per example (B,))."""
        total = self.sums[node]
        if weight is not None and weight.dim() > 0:
            weight = weight.view(-1, 1, 1, 1)
        if total is None:
            self.sums[node] = value if weight is None else weight * value
            self._owned[node] = weight is not None
        elif self._owned[node]:
            total.add_(value) if weight is None else total.addcmul_(weight, value)
        else:
            self.sums[node] = total + value if weight is None else torch.addcmul(
                total, weight, value)
            self._owned[node] = True


def add(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value
