"""Fine-tuning as a stage: the model trained on the labels (cross-entropy), e.g. a family
member from the supernet's weights before it is compressed."""

from __future__ import annotations

import time

from torch import nn

from compress.base import Context, StageRecord, fit, measure, timed_record
from compress.settings import FitSettings
from search_core.data import DataSplits


def train(model: nn.Module, data: DataSplits, settings: FitSettings,
          context: Context) -> tuple[nn.Module, StageRecord]:
    started = time.perf_counter()
    before = measure(model, data.val)
    steps = fit(model, data, settings)
    return model, timed_record("train", settings, before, model, data, started, steps=steps)
