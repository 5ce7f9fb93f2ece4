"""After the search: compression stages for a trained network, pure PyTorch.

One module per method, each a function ``(model, data, settings, context) -> (model,
record)`` registered in ``compress.base.STAGES``: ``train`` (fine-tuning), ``gates``
(latency-aware pruning of whole operations), ``lottery`` (iterative magnitude pruning
with rewinding, and its controls), ``quantise`` (trained quantisation thresholds,
bit-widths under a size budget), ``distill`` (soft targets of a teacher).
``run_stage(name, model, data, settings)`` runs one on a copy.

A package of its own rather than ``search_core`` modules: the stages take any trained
``nn.Module`` (a family member, or a network from elsewhere) and know nothing of the
supernet, the hypernetwork or the complexity vector; ``search_core`` stays the search.
Importing ``compress`` registers the stages (torch is imported with it).
"""

from compress import distill, finetune, gates, lottery, quantise
from compress.base import STAGES, Context, FitSettings, StageRecord, run_stage

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
