"""Lottery tickets by iterative magnitude pruning with rewinding (Frankle and Carbin, 2019;
rewinding to an early iteration k: Frankle et al., 2020), with the paper's two controls.

Round after round: train, remove ``prune_fraction`` of each layer's remaining weights with the
smallest magnitudes, reset the survivors to their values at iteration ``rewind_step`` of the
first training, train again. The model given is the initialisation theta_0 (pass an untrained
network for the paper's setting). Controls at the same sparsity: ``reinit`` trains the
ticket's masks from a fresh random initialisation; ``random`` trains random masks (the same
count per layer) from the rewound weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from compress.base import Context, StageRecord, fit, measure, timed_record, weights
from compress.settings import FitSettings, LotterySettings
from search_core.data import DataSplits
from search_core.errors import ConfigError

Masks = dict[str, torch.Tensor]


def full_masks(model: nn.Module) -> Masks:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights(model)}


def prune_by_magnitude(model: nn.Module, masks: Masks, fraction: float) -> Masks:
    """New masks without the ``fraction`` of each layer's remaining weights that have the
    smallest magnitude (rounded to whole weights); pruned weights stay pruned."""
    current = dict(weights(model))
    pruned = {}
    for name, mask in masks.items():
        remaining = int(mask.sum())
        drop = round(fraction * remaining)
        magnitude = current[name].detach().abs().masked_fill(~mask, float("inf")).flatten()
        new = mask.clone().flatten()
        if drop:
            new[torch.topk(magnitude, drop, largest=False).indices] = False
        pruned[name] = new.reshape(mask.shape)
    return pruned


def random_masks_like(masks: Masks, generator: torch.Generator) -> Masks:
    """Masks with each layer's count of kept weights, at random positions."""
    shuffled = {}
    for name, mask in masks.items():
        keep = int(mask.sum())
        order = torch.randperm(mask.numel(), generator=generator)
        new = torch.zeros(mask.numel(), dtype=torch.bool)
        new[order[:keep]] = True
        shuffled[name] = new.reshape(mask.shape)
    return shuffled


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    for name, weight in weights(model):
        weight.mul_(masks[name])


@torch.no_grad()
def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every parameter and buffer back to ``state`` (a ``state_dict`` copy)."""
    model.load_state_dict(state)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_masked(model: nn.Module, data: DataSplits, masks: Masks, settings: FitSettings,
                 keep_at: int | None = None) -> dict[str, torch.Tensor] | None:
    """Train with the masks held (re-applied after every step); with ``keep_at``, return a
    snapshot of the weights after that many steps (step 0: before training)."""
    kept: dict[str, dict[str, torch.Tensor]] = {}
    apply_masks(model, masks)
    if keep_at == 0:
        kept["w"] = snapshot(model)

    def after_step(step: int) -> None:
        apply_masks(model, masks)
        if step == keep_at:
            kept["w"] = snapshot(model)

    fit(model, data, settings, after_step=after_step)
    if keep_at is not None and "w" not in kept:
        raise ConfigError(f"lottery rewind_step {keep_at}: the first training has fewer "
                          "steps; rewind earlier or train longer")
    return kept.get("w")


def reinitialised(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Fresh weights for ``model`` (each layer's own ``reset_parameters``, seeded); the
    model itself is left as it was."""
    original = snapshot(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    fresh = snapshot(model)
    load_weights(model, original)
    return fresh


@dataclass
class PruningRun:
    """Iterative magnitude pruning as it went: the weights survivors are rewound to, the
    dense network's accuracy, and per round its masks, sparsity and accuracy."""

    rewind: dict[str, torch.Tensor]  # theta_0, or the weights after rewind_step steps
    dense_accuracy: float
    masks: list[Masks] = field(default_factory=list)  # after round 1, 2, ...
    rounds: list[dict[str, float]] = field(default_factory=list)


def iterative_pruning(model: nn.Module, data: DataSplits,
                      settings: LotterySettings) -> PruningRun:
    """Train ``model`` (theta_0) dense, then ``settings.rounds`` rounds of prune, rewind,
    train; ``model`` ends as the last round's trained ticket."""
    theta_0 = snapshot(model)
    masks = full_masks(model)
    rewind = train_masked(model, data, masks, settings.fit, keep_at=settings.rewind_step)
    run = PruningRun(rewind if rewind is not None else theta_0,
                     measure(model, data.val)["accuracy"])
    for round_index in range(settings.rounds):
        masks = prune_by_magnitude(model, masks, settings.prune_fraction)
        load_weights(model, run.rewind)
        train_masked(model, data, masks, settings.fit)
        run.masks.append(masks)
        run.rounds.append({"round": round_index + 1, "sparsity": sparsity(masks),
                           "accuracy": measure(model, data.val)["accuracy"]})
    return run


def train_control(model: nn.Module, data: DataSplits, run: PruningRun, masks: Masks,
                  control: str, fit_settings: FitSettings) -> Masks:
    """The paper's controls at the sparsity of ``masks``, trained in ``model``: ``reinit``
    (the masks from a fresh random initialisation) or ``random`` (random masks of each
    layer's count from the rewound weights); returns the masks trained with."""
    generator = torch.Generator().manual_seed(fit_settings.seed + 1)
    if control == "random":
        masks = random_masks_like(masks, generator)
        load_weights(model, run.rewind)
    else:
        load_weights(model, reinitialised(model, fit_settings.seed + 1))
    train_masked(model, data, masks, fit_settings)
    return masks


def lottery(model: nn.Module, data: DataSplits, settings: LotterySettings,
            context: Context) -> tuple[nn.Module, StageRecord]:
    started = time.perf_counter()
    before = measure(model, data.val)
    run = iterative_pruning(model, data, settings)
    masks = run.masks[-1]
    if settings.control != "ticket":
        masks = train_control(model, data, run, masks, settings.control, settings.fit)
    return model, timed_record("lottery", settings, before, model, data, started,
                               dense_accuracy=run.dense_accuracy, rounds=run.rounds,
                               sparsity=sparsity(masks))


def sparsity(masks: Masks) -> float:
    total = sum(m.numel() for m in masks.values())
    return 1 - sum(int(m.sum()) for m in masks.values()) / max(total, 1)
