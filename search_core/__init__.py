"""Complexity-controlled differentiable architecture search (pure PyTorch).

    from search_core import SearchConfig, search
    result = search(SearchConfig())
    table = result.family(load_data(result.config.data))
    table.to_frame()
    model = result.model([1/3, 1/3, 1/3])

Names are imported lazily, so ``import search_core.metrics`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SearchConfig": "search_core.config",
    "SearchSpace": "search_core.config",
    "HyperNetConfig": "search_core.config",
    "TemperatureConfig": "search_core.config",
    "TrainConfig": "search_core.config",
    "DataConfig": "search_core.data",
    "DataSplits": "search_core.data",
    "load_data": "search_core.data",
    "search": "search_core.engine",
    "EpochMetrics": "search_core.engine",
    "SearchResult": "search_core.result",
    "save_model": "search_core.result",
    "load_model": "search_core.result",
    "Genotype": "search_core.genotype",
    "DiscreteNetwork": "search_core.discrete",
    "FamilyTable": "search_core.family",
    "Probe": "search_core.probes",
    "default_probes": "search_core.probes",
    "seed_probes": "search_core.probes",
    "lattice_probes": "search_core.probes",
    "evaluate_family": "search_core.family",
    "LatencyTable": "search_core.latency",
    "TimingSettings": "search_core.timing_settings",
    "network_layout": "search_core.network_parts",
    "profile_parts": "search_core.latency",
    "calibrate": "search_core.latency",
    "measure_networks": "search_core.timing",
    "select_under_budget": "search_core.selection",
    "ConfigError": "search_core.errors",
    "DataError": "search_core.errors",
    "DivergenceError": "search_core.errors",
    "NasHpoError": "search_core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
