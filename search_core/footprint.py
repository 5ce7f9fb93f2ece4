"""How much memory training a supernet needs at least, from shapes alone (nothing is built),
so that a study too large for the machine is refused before anything runs."""

from __future__ import annotations

import os
from typing import Any

from search_core.config import SearchSpace
from search_core.costs import op_param_table
from search_core.network_parts import network_layout
from search_core.ops import FLOAT_BYTES, op_role

COPIES_PER_WEIGHT = 3  # the weight, its gradient and the optimiser's momentum
ACTIVATION_BYTES = 2  # the narrowest precision a search trains in (bf16, fp16)
# what training really takes over ``training_bytes_floor`` (one output kept per op): a
# separable conv keeps ~8 tensors for its backward pass. Measured peak RSS above the
# process's baseline on digits (batch 64, 8 cells, 4 nodes): 32 channels 400 MB (7.3x the
# floor), 64 channels 840 MB (5.5x). 4 stays below both: a study is refused only if even
# this underestimate does not fit.
ESTIMATE_FACTOR = 4


def supernet_params(space: SearchSpace) -> int:
    """Weights of every op on every edge of every cell (stem, preprocessing and classifier,
    a small share, left out: this is a lower bound)."""
    return int(op_param_table(space).sum())


def activation_floats(space: SearchSpace, info: dict[str, Any], batch_size: int) -> int:
    """Numbers the forward pass keeps for the backward pass, at least: the output of every
    op that makes a new tensor (all but identities), on every edge of every cell (a supernet
    runs all ops and weighs each output, which the backward pass needs), for one batch."""
    layout = network_layout(space, info["in_channels"], tuple(info["image_size"]),
                            info["num_classes"])
    per_image = sum(
        slot.channels * -(-slot.height // slot.stride) * -(-slot.width // slot.stride)
        for slot in layout.slots)
    making = sum(op_role(name) != "identity" for name in space.ops)
    return per_image * making * batch_size


def training_bytes_floor(space: SearchSpace, info: dict[str, Any], batch_size: int) -> int:
    """A lower bound on the memory one training process of this supernet needs."""
    weights = FLOAT_BYTES * COPIES_PER_WEIGHT * supernet_params(space)
    return weights + ACTIVATION_BYTES * activation_floats(space, info, batch_size)


def training_bytes_estimate(space: SearchSpace, info: dict[str, Any], batch_size: int) -> int:
    """What training this supernet takes, estimated on the low side (``ESTIMATE_FACTOR``)."""
    return ESTIMATE_FACTOR * training_bytes_floor(space, info, batch_size)


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
