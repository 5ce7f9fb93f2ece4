"""Fine-tuning as a stage: the model trained on the labels (cross-entropy), e.g. a family
member from the supernet's weights before it is compressed."""

from __future__ import annotations

import time

from torch import nn

from compress.base import (
    STAGES,
    Context,
    FitSettings,
    Stage,
    StageRecord,
    fit,
    measure,
    timed_record,
)
from search_core.data import DataSplits


def train(model: nn.Module, data: DataSplits, settings: FitSettings,
          context: Context) -> tuple[nn.Module, StageRecord]:
    started = time.perf_counter()
    before = measure(model, data.val)
    steps = fit(model, data, settings)
    return model, timed_record("train", settings, before, model, data, started, steps=steps)


STAGES.add("train", Stage(FitSettings, train, "cross-entropy fine-tuning (SGD, cosine)"))
