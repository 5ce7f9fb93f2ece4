"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): a trained teacher (a larger
family member, or the supernet's heaviest architecture) teaches the model through its
softened outputs."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from compress.base import Context, StageRecord, fit, measure, timed_record
from compress.settings import DistillSettings
from search_core.data import DataSplits
from search_core.errors import ConfigError


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      targets: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) *
    cross-entropy(student, targets), averaged over the batch. The T^2 keeps the soft term's
    gradients on the scale of the hard term's as T changes."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1), log_target=True,
                    reduction="batchmean")
    return alpha * t * t * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)


def distill(model: nn.Module, data: DataSplits, settings: DistillSettings,
            context: Context) -> tuple[nn.Module, StageRecord]:
    """Train ``model`` (the student) on the distillation loss against ``context.teacher``."""
    teacher = context.teacher
    if teacher is None:
        raise ConfigError("distill: no teacher; give one (a trained larger model) in the "
                          "stage's context")
    teacher.eval()
    started = time.perf_counter()
    before = measure(model, data.val)

    def loss(student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            taught = teacher(x)
        return distillation_loss(student(x), taught, y, settings.temperature, settings.alpha)

    fit(model, data, settings.fit, loss)
    return model, timed_record("distill", settings, before, model, data, started,
                               teacher_accuracy=measure(teacher, data.val)["accuracy"])
