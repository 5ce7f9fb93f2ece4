"""Timing on the target device: medians of interleaved rounds (``measure_many``,
``measure_networks``) under ``TimingSettings`` (rounds, threads, device; defined in the
torch-free ``search_core.timing_settings``), and the fingerprint of the machine and settings
a timing is valid for (``fingerprint``, ``fingerprint_mismatch``). Read alone by the
compression stages and ``hpo export``; the latency table builds on it."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError
from search_core.genotype import Genotype
from search_core.machine import cpu_model
from search_core.network_parts import NetworkLayout
from search_core.threads import torch_threads
from search_core.timing_settings import TimingSettings

FINGERPRINT_KEYS = ("device", "device_name", "cpu_model", "cores", "threads", "torch")

# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Latency of one call in milliseconds: median over rounds, quartiles, calls per round."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    calls_per_round: int

    @property
    def spread_ms(self) -> float:
        """Half the interquartile range of the rounds."""
        return (self.p75_ms - self.p25_ms) / 2

    @classmethod
    def from_rounds(cls, per_call_ms: Sequence[float], calls: int) -> Timing:
        p25, median, p75 = np.percentile(per_call_ms, [25, 50, 75])
        return cls(float(median), float(p25), float(p75), calls)


def resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA device on this machine "
                              "(torch.cuda.is_available() is False); use --device cpu")
        return torch.device("cuda")
    raise ConfigError(f"--device: got {name!r}; expected 'cpu' or 'cuda'")


def _timed(fn: Callable[[], Any], calls: int, device: torch.device) -> float:
    """Seconds for ``calls`` calls (device work included)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return time.perf_counter() - start


def measure_many(fns: Sequence[Callable[[], Any]], settings: TimingSettings) -> list[Timing]:
    """Latencies of several functions, their rounds interleaved over ``settings.passes``
    passes so that a slow spell of the machine spreads over all of them instead of biasing
    the one that happened to run then."""
    device = resolve_device(settings.device)
    per_pass = max(1, math.ceil(settings.rounds / settings.passes))
    samples: list[list[float]] = [[] for _ in fns]
    calls: list[int] = []
    with torch_threads(settings.threads), torch.inference_mode():
        for _ in range(settings.passes):
            for i, fn in enumerate(fns):
                for _ in range(settings.warmup):
                    fn()
                if len(calls) <= i:
                    one = max(_timed(fn, 1, device), 1e-7)
                    calls.append(max(1, math.ceil(settings.round_ms / 1000 / one)))
                samples[i] += [_timed(fn, calls[i], device) * 1000 / calls[i]
                               for _ in range(per_pass)]
    return [Timing.from_rounds(rounds, n) for rounds, n in zip(samples, calls)]


def network_callable(
    genotype: Genotype, layout: NetworkLayout, batch: int, device: torch.device
) -> Callable[[], Any]:
    """A no-argument function running the derived network (eval mode, fixed random weights
    and input) once."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DiscreteNetwork(genotype, layout.space, layout.in_channels, layout.num_classes)
        x = torch.randn(batch, layout.in_channels, *layout.image)
    net = net.to(device).eval()
    x = x.to(device)
    return lambda: net(x)


def measure_networks(
    genotypes: Sequence[Genotype], layout: NetworkLayout, batch: int, settings: TimingSettings
) -> list[Timing]:
    """End-to-end latencies of derived networks, measured interleaved."""
    device = resolve_device(settings.device)
    return measure_many([network_callable(g, layout, batch, device) for g in genotypes],
                        settings)


# ----------------------------------------------------------------------------- fingerprint


def fingerprint(settings: TimingSettings) -> dict[str, Any]:
    """What makes a table valid: the device, its model, cores, threads and torch version."""
    device = resolve_device(settings.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "device": device.type,
        "device_name": name,
        "cpu_model": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threads": settings.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "hostname": platform.node(),
    }


def fingerprint_mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fingerprint fields that differ, as 'field: table X, here Y'."""
    return [f"{k}: table {recorded.get(k)!r}, here {current.get(k)!r}"
            for k in FINGERPRINT_KEYS if recorded.get(k) != current.get(k)]


