"""What every compression stage shares: its context and record, a plain training loop for
any ``nn.Module`` and the size of a model in bytes. The stages' settings are in the torch-free
``compress.settings``, the registry of stages and ``run_stage`` in ``compress.stages``.

A stage is a function ``(model, data, settings, context) -> (model, StageRecord)``: it never
changes the model it is given (it works on a copy), takes its settings as a frozen
dataclass, draws randomness only from ``settings.seed``, and measures accuracy on the
validation split (the test split is for reporting, never for choosing).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.settings import FitSettings
from search_core.data import DataSplits, Split, batches
from search_core.ops import FLOAT_BYTES
from search_core.train import accuracy

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Context:
    """What a stage may need besides the model: the teacher of distillation, the cost per
    prunable unit of latency-aware pruning (ms, from the device's latency table)."""

    teacher: nn.Module | None = None
    unit_latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class StageRecord:
    """What a stage did: validation accuracy, parameters that are not zero, size in bytes
    and seconds, before and after, plus the stage's own numbers (``extra``)."""

    stage: str
    settings: dict[str, Any]
    before: dict[str, float]
    after: dict[str, float]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "settings": self.settings, "before": self.before,
                "after": self.after, "seconds": self.seconds, "extra": self.extra}


def weights(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The prunable and quantisable weights: of every convolution and linear layer."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            yield f"{name}.weight", module.weight


def nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def size_bytes(model: nn.Module, bits: dict[str, int] | None = None,
               sparse: bool = False) -> int:
    """Bytes to store the model's parameters: 4 per float32 value, ``bits[name] / 8`` for a
    weight quantised to that width (plus its 4-byte threshold), and with ``sparse`` only the
    non-zero values are counted (a lower bound: the index overhead of a sparse format is
    left out)."""
    bits = bits or {}
    total = 0.0
    for name, param in model.named_parameters():
        count = int(torch.count_nonzero(param)) if sparse else param.numel()
        if name in bits:
            total += count * bits[name] / 8 + FLOAT_BYTES
        else:
            total += count * FLOAT_BYTES
    return math.ceil(total)


def measure(model: nn.Module, split: Split) -> dict[str, float]:
    """Validation accuracy, parameters that are not zero, and dense float32 bytes."""
    return {"accuracy": accuracy(model, split), "nonzero_params": float(nonzero_params(model)),
            "bytes": float(size_bytes(model))}


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def fit(model: nn.Module, data: DataSplits, fit_settings: FitSettings,
        loss_fn: LossFn = cross_entropy, after_step: Callable[[int], None] | None = None,
        parameters: list[nn.Parameter] | None = None) -> int:
    """Train ``model`` in place on ``data.train`` for ``fit_settings.epochs``; ``after_step``
    runs after every optimiser step with the step count (pruning masks re-apply themselves
    there); returns the number of steps. The caller's random state is left as it was."""
    params = parameters if parameters is not None else [p for p in model.parameters()
                                                        if p.requires_grad]
    if not params or fit_settings.epochs == 0:
        return 0
    optimizer = torch.optim.SGD(params, lr=fit_settings.lr, momentum=fit_settings.momentum,
                                weight_decay=fit_settings.weight_decay)
    steps_per_epoch = math.ceil(len(data.train) / fit_settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(fit_settings.epochs * steps_per_epoch, 1))
    generator = torch.Generator().manual_seed(fit_settings.seed)
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fit_settings.seed)
        model.train()
        for _ in range(fit_settings.epochs):
            for x, y in batches(data.train, fit_settings.batch_size, generator):
                loss = loss_fn(model, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
                if after_step is not None:
                    after_step(step)
    model.eval()
    return step


def timed_record(stage: str, settings: Any, before: dict[str, float], model: nn.Module,
                 data: DataSplits, started: float, **extra: Any) -> StageRecord:
    """The record of a finished stage: ``after`` measured now on the validation split."""
    from dataclasses import asdict

    return StageRecord(stage, asdict(settings), before, measure(model, data.val),
                       time.perf_counter() - started, extra)
