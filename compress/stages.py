"""The registry of compression stages: each stage's name, settings dataclass and function,
and ``run_stage``. Importing it loads no torch: a study file's stage names and settings are
checked against it in a process that never trains. Each registered function imports its
stage's module (and torch) when the stage first runs.

A stage of your own is one line: ``STAGES.add("name", Stage(MySettings, my_stage, "what"))``
with ``my_stage(model, data, settings, context) -> (model, StageRecord)``.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compress.settings import (
    DistillSettings,
    EdgeMagnitudeSettings,
    FitSettings,
    GateSettings,
    LotterySettings,
    QuantiseSettings,
)
from search_core.errors import ConfigError
from search_core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from compress.base import Context, StageRecord
    from search_core.data import DataSplits

    Result = tuple[nn.Module, StageRecord]


@dataclass(frozen=True)
class Stage:
    """One kind of compression: its settings dataclass and its function."""

    settings: type
    run: Callable[[nn.Module, DataSplits, Any, Context], Result]
    description: str = ""


STAGES: Registry[Stage] = Registry("compression stage")


def run_stage(name: str, model: nn.Module, data: DataSplits, settings: Any,
              context: Context | None = None) -> Result:
    """Run the registered stage ``name`` on a copy of ``model``."""
    from compress.base import Context

    stage = STAGES.get(name, "pipeline")
    if not isinstance(settings, stage.settings):
        raise ConfigError(f"pipeline: stage {name!r} takes {stage.settings.__name__}, got "
                          f"{type(settings).__name__}")
    return stage.run(copy.deepcopy(model), data, settings, context or Context())


def imported_when_run(module: str, function: str) -> Callable[..., Result]:
    """A stage function that imports ``module`` (and with it torch) when the stage runs,
    then calls its ``function``."""

    def run(model: nn.Module, data: DataSplits, settings: Any, context: Context) -> Result:
        return getattr(importlib.import_module(module), function)(model, data, settings,
                                                                  context)

    run.__qualname__ = f"{module}.{function}"
    return run


# The stages shipped here, their modules imported when a stage runs.
_distill = imported_when_run("compress.distill", "distill")
_train = imported_when_run("compress.finetune", "train")
_edge_magnitude = imported_when_run("compress.gates", "edge_magnitude")
_gates = imported_when_run("compress.gates", "gates")
_lottery = imported_when_run("compress.lottery", "lottery")
_quantise = imported_when_run("compress.quantise", "quantise")

STAGES.add("distill", Stage(DistillSettings, _distill,
                            "soft targets of a teacher at temperature T, weight alpha"))
STAGES.add("train", Stage(FitSettings, _train, "cross-entropy fine-tuning (SGD, cosine)"))
STAGES.add("edge_magnitude", Stage(EdgeMagnitudeSettings, _edge_magnitude,
                                   "baseline: drop the weakest edges to a latency budget"))
STAGES.add("gates", Stage(GateSettings, _gates,
                          "latency-aware RelaxedBernoulli gates per operation, then a threshold"))
STAGES.add("lottery", Stage(LotterySettings, _lottery,
                            "iterative magnitude pruning with rewinding, and its controls"))
STAGES.add("quantise", Stage(QuantiseSettings, _quantise,
                             "weights to b bits with calibrated, then trained, thresholds"))
