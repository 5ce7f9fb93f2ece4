"""Every compression stage's settings: frozen dataclasses that validate themselves, without
torch, so a study file's ``pipeline:`` section is checked in a process that never trains.
The stages (``compress.finetune``, ``distill``, ``gates``, ``lottery``, ``quantise``) take
them; ``compress.stages.STAGES`` names which stage takes which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from search_core.errors import ConfigError
from search_core.timing_settings import TimingSettings

CONTROLS = ("ticket", "reinit", "random")  # lottery: the ticket and the paper's two controls
MIN_BITS, MAX_BITS = 2, 16  # quantise: the widths a weight may be stored at


@dataclass(frozen=True)
class FitSettings:
    """How a stage trains: SGD with momentum and a cosine schedule, like ``hpo train``."""

    epochs: int = 3
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.epochs <= 1000 and 1 <= self.batch_size <= 65536):
            raise ConfigError(f"fit: epochs {self.epochs} and batch_size {self.batch_size}; "
                              "need 0..1000 epochs and a batch size of 1..65536")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"fit: lr {self.lr}; need a finite value > 0")


@dataclass(frozen=True)
class DistillSettings:
    temperature: float = 4.0  # T: softens both distributions
    alpha: float = 0.9  # weight of the teacher's term; 1 - alpha weighs the labels
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"distill temperature: got {self.temperature}; need > 0")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill alpha: got {self.alpha}; need a value in [0, 1]")


@dataclass(frozen=True)
class GateSettings:
    lam: float = 0.1  # weight of the expected latency (per ms) in the loss
    temperature: float = 0.5  # of the RelaxedBernoulli gates
    init_logit: float = 3.0  # sigmoid(3) = 0.95: every edge starts almost surely kept
    gate_lr: float = 0.1
    threshold: float = 0.5
    timing: TimingSettings = field(default_factory=lambda: TimingSettings(rounds=7, passes=7))
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        if not (self.lam >= 0 and self.temperature > 0 and 0 < self.threshold < 1):
            raise ConfigError(f"gates: lam {self.lam}, temperature {self.temperature}, "
                              f"threshold {self.threshold}; need lam >= 0, temperature > 0 "
                              "and a threshold in (0, 1)")


@dataclass(frozen=True)
class EdgeMagnitudeSettings:
    """The baseline to latency-aware gates: remove the edges with the smallest output
    magnitude (mean |output| on a validation batch) until the edges left cost at most
    ``latency_budget_ms`` (the per-edge latencies, as the gates' expected latency counts
    them), never cutting a node off; then fine-tune."""

    latency_budget_ms: float = 1.0
    timing: TimingSettings = field(default_factory=lambda: TimingSettings(rounds=7, passes=7))
    fit: FitSettings = field(default_factory=FitSettings)


@dataclass(frozen=True)
class LotterySettings:
    prune_fraction: float = 0.2  # of the remaining weights of each layer, per round
    rounds: int = 3  # sparsity after R rounds: 1 - (1 - prune_fraction) ** R
    rewind_step: int = 0  # optimiser steps into the first training (0: theta_0)
    control: str = "ticket"  # | reinit | random
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        if not 0 < self.prune_fraction < 1:
            raise ConfigError(f"lottery prune_fraction: got {self.prune_fraction}; need (0, 1)")
        if not 1 <= self.rounds <= 50 or self.rewind_step < 0:
            raise ConfigError(f"lottery rounds {self.rounds}, rewind_step {self.rewind_step}; "
                              "need 1..50 rounds and a step >= 0")
        if self.control not in CONTROLS:
            raise ConfigError(f"lottery control: got {self.control!r}; need one of "
                              f"{', '.join(CONTROLS)}")

    @property
    def sparsity(self) -> float:
        return 1 - (1 - self.prune_fraction) ** self.rounds


@dataclass(frozen=True)
class QuantiseSettings:
    bits: int = 8  # every layer's width, unless size_budget_bytes chooses per layer
    per_channel: bool = False
    calibration: str = "trained"  # "minmax": thresholds = max |w|, no training
    train_weights: bool = False  # fine-tune the weights too, not only the thresholds
    distill_alpha: float = 0.0  # > 0: fine-tune against the full-precision model's outputs
    temperature: float = 2.0
    size_budget_bytes: int | None = None  # choose a width per layer from bit_choices
    bit_choices: tuple[int, ...] = (8, 4)
    int8_kernels: bool = True  # at 8 bits everywhere: also measure torch's int8 model
    timing: TimingSettings = field(default_factory=lambda: TimingSettings(rounds=14, passes=7))
    fit: FitSettings = field(default_factory=lambda: FitSettings(epochs=1, lr=0.001))

    def __post_init__(self) -> None:
        widths = (self.bits, *self.bit_choices)
        if not all(MIN_BITS <= b <= MAX_BITS for b in widths):
            raise ConfigError(f"quantise bits: got {widths}; need widths in "
                              f"[{MIN_BITS}, {MAX_BITS}]")
        if self.calibration not in ("trained", "minmax"):
            raise ConfigError(f"quantise calibration: got {self.calibration!r}; need "
                              "'trained' or 'minmax'")
        if not 0 <= self.distill_alpha <= 1:
            raise ConfigError(f"quantise distill_alpha: got {self.distill_alpha}; need [0, 1]")
