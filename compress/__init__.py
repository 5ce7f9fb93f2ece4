"""After the search: compression stages for a trained network, pure PyTorch.

One module per method, each a function ``(model, data, settings, context) -> (model,
record)`` registered in ``compress.stages.STAGES``: ``train`` (fine-tuning), ``gates``
(latency-aware pruning of whole operations), ``lottery`` (iterative magnitude pruning
with rewinding, and its controls), ``quantise`` (trained quantisation thresholds,
bit-widths under a size budget), ``distill`` (soft targets of a teacher).
``run_stage(name, model, data, settings)`` runs one on a copy.

A package of its own rather than ``search_core`` modules: the stages take any trained
``nn.Module`` (a family member, or a network from elsewhere) and know nothing of the
supernet, the hypernetwork or the complexity vector; ``search_core`` stays the search.
Importing ``compress`` loads no torch: the registry (``compress.stages``) and every stage's
settings (``compress.settings``) are torch-free, so a study file's ``pipeline:`` is checked
at once; a stage's module, and torch, load when the stage first runs (or when ``Context``,
``StageRecord`` or a stage module is first used from here).
"""

from __future__ import annotations

import importlib
from typing import Any

from compress.settings import FitSettings
from compress.stages import STAGES, run_stage

_LAZY = {"Context": "compress.base", "StageRecord": "compress.base"}
_MODULES = ("distill", "finetune", "gates", "lottery", "quantise")

__all__ = [
           "STAGES",
           "Context",
           "FitSettings",
           "StageRecord",
           "distill",
           "finetune",
           "gates",
           "lottery",
           "quantise",
           "run_stage",
]


def __getattr__(name: str) -> Any:
    """``Context``, ``StageRecord`` and the stage modules, imported (with torch) when first
    asked for."""
    if name in _MODULES:
        return importlib.import_module(f"compress.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'compress' has no attribute {name!r}")
