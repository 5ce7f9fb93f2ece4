"""Training a derived network on its own: the recipe, and the loop.

A family member (a genotype) is a proxy until it is trained: ``train_network`` trains the
standalone ``DiscreteNetwork`` from scratch (or from the supernet's weights, ``init:
inherit``) with ``TrainRecipe``: SGD with momentum and weight decay, a cosine schedule to
``lr_min_ratio`` of the learning rate, gradient clipping, and the data augmentation that is
standard for the data set (``augment: auto``). Validation accuracy is measured after every
epoch; the test accuracy once, at the end, and it is never used to choose anything.

With ``checkpoint``, the state after every epoch (weights, optimiser, schedule, random
generators, history) is written atomically and a rerun continues from the last finished
epoch: a killed training loses at most the epoch it was in, and the result is the same as
an uninterrupted run's.

``device`` and ``precision`` (search_core/device.py) say where the loop runs and in what
precision its forward passes run (autocast; fp16 with a gradient scaler). The data splits
are moved to the device once; the augmentation and the minibatch order are drawn on the CPU,
so every device sees the same batches. Checkpoints hold CPU tensors, and the trained network
is handed back on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from search_core.config import MAX_BATCH_SIZE, MAX_EPOCHS, SEED_LIMIT, SearchSpace
from search_core.configtools import from_mapping, shown, to_plain
from search_core.data import DataSplits, Split, batches
from search_core.device import (
    autocast,
    check_device_name,
    check_device_precision,
    check_precision,
    grad_scaler,
    resolve_device,
)
from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError, DataError, DivergenceError
from search_core.files import write_atomically
from search_core.genotype import Genotype
from search_core.supernet import SuperNet
from search_core.threads import torch_threads

# augment: auto -> (padding of the random crop, random horizontal flips) per data set: the
# usual choices (CIFAR-10: DARTS' crop 32 pad 4 + flip; Fashion-MNIST: crop pad 2 + flip, the
# garments are left-right symmetric; digits: none, a flipped digit is another digit)
STANDARD_AUGMENTATION = {"cifar10": (4, True), "fashion-mnist": (2, True), "mnist": (2, False),
                         "digits": (0, False)}
AUGMENTATIONS = ("auto", "none", "crop", "crop_flip")
EVAL_BATCH = 512
# recipe keys that say where a training runs, not what it computes: a checkpoint resumes
# on another device or thread count
WHERE_KEYS = ("device", "threads")


@dataclass(frozen=True)
class TrainRecipe:
    """How a derived network is trained; saved with every result."""

    epochs: int = 30
    batch_size: int = 96
    lr: float = 0.025
    lr_min_ratio: float = 0.0  # cosine schedule from lr down to lr * lr_min_ratio
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    augment: Literal["auto", "none", "crop", "crop_flip"] = "auto"
    init: Literal["scratch", "inherit"] = "scratch"
    seed: int = 0
    threads: int | None = None  # torch threads (None: keep the process's)
    device: str = "auto"  # auto, cpu, cuda or cuda:N (search_core.device)
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast of the forward passes)

    def __post_init__(self) -> None:
        check_device_name(self.device, "train recipe device")
        check_precision(self.precision, "train recipe precision")
        checks = [
            (1 <= self.epochs <= MAX_EPOCHS, "epochs", f"an integer in [1, {MAX_EPOCHS}]"),
            (1 <= self.batch_size <= MAX_BATCH_SIZE, "batch_size",
             f"an integer in [1, {MAX_BATCH_SIZE}]"),
            (math.isfinite(self.lr) and self.lr > 0, "lr", "a finite value > 0"),
            (0 <= self.lr_min_ratio <= 1, "lr_min_ratio", "a value in [0, 1]"),
            (0 <= self.momentum < 1, "momentum", "a value in [0, 1)"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             "a finite value >= 0"),
            (self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
             "grad_clip", "a finite value > 0 (or null for no clipping)"),
            (self.augment in AUGMENTATIONS, "augment", f"one of {', '.join(AUGMENTATIONS)}"),
            (self.init in ("scratch", "inherit"), "init", "'scratch' or 'inherit'"),
            (0 <= self.seed < SEED_LIMIT, "seed", "an integer in [0, 2**32)"),
            (self.threads is None or self.threads >= 1, "threads", ">= 1 (or null)"),
        ]
        for ok, key, need in checks:
            if not ok:
                raise ConfigError(f"train recipe {key}: got {shown(getattr(self, key))}; "
                                  f"need {need}")

    def augmentation(self, data_name: str) -> tuple[int, bool]:
        """(random-crop padding, random horizontal flips) for data set ``data_name``."""
        if self.augment == "auto":
            return STANDARD_AUGMENTATION.get(data_name, (0, False))
        pad = 0 if self.augment == "none" else 2
        return pad, self.augment == "crop_flip"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def identity(self) -> dict[str, Any]:
        """What the training computes (``to_dict`` less ``WHERE_KEYS``): compared on resume."""
        return recipe_identity(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainRecipe:
        return from_mapping(cls, data, "train recipe")


def recipe_identity(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A stored recipe less ``WHERE_KEYS``; a recipe saved before ``precision`` existed
    trained in fp32."""
    return {"precision": "fp32"} | {k: v for k, v in recipe.items() if k not in WHERE_KEYS}


@dataclass
class TrainedNetwork:
    """A derived network after training: its accuracies, size and per-epoch history."""

    genotype: Genotype
    recipe: TrainRecipe
    val_acc: float
    test_acc: float
    params: int
    cell_params: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    network: DiscreteNetwork | None = field(default=None, repr=False)  # on the CPU

    def to_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_json(), "recipe": self.recipe.to_dict(),
                "val_acc": self.val_acc, "test_acc": self.test_acc, "params": self.params,
                "cell_params": self.cell_params, "history": self.history,
                "seconds": self.seconds}


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops of ``x`` padded by ``pad`` (zeros: the mean after normalisation) and,
    with ``flip``, random horizontal flips; one draw per image. The draws come from
    ``generator`` (on the CPU): the same crops and flips on every device."""
    n, _, height, width = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy[i] : dy[i] + height, dx[i] : dx[i] + width]
                         for i in range(n)])
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def accuracy(net: nn.Module, split: Split) -> float:
    """Accuracy of ``net`` on ``split``, on the network's device (the split is moved there
    when it is elsewhere; a caller's autocast applies)."""
    net.eval()
    device = next(net.parameters()).device
    split = split.to(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in batches(split, EVAL_BATCH, None):
        correct += (net(x).argmax(1) == y).sum()
    return int(correct) / max(len(split), 1)


EpochCallback = Callable[[dict[str, float]], None]


def train_network(
    genotype: Genotype,
    space: SearchSpace,
    data: DataSplits,
    recipe: TrainRecipe = TrainRecipe(),
    supernet: SuperNet | None = None,
    checkpoint: Path | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainedNetwork:
    """Train ``genotype``'s network on ``data.train`` with ``recipe``; ``supernet`` gives the
    inherited weights for ``init: inherit``. ``on_epoch`` gets each epoch's record. The
    training runs on ``recipe.device``; the network handed back is on the CPU."""
    if recipe.init == "inherit" and supernet is None:
        raise ConfigError("train recipe init: 'inherit' needs the search's supernet (a "
                          "trial checkpoint); use init: scratch")
    started = time.perf_counter()
    with torch_threads(recipe.threads):
        loop = _trained(genotype, space, data, recipe, supernet, checkpoint, on_epoch)
        net = loop.net
        with autocast(loop.device, recipe.precision):
            test_acc = accuracy(net, loop.data.test)
        return TrainedNetwork(
            genotype=genotype, recipe=recipe,
            val_acc=loop.history[-1]["val_acc"], test_acc=test_acc,
            params=net.num_params(), cell_params=net.cell_op_params(),
            history=list(loop.history), seconds=time.perf_counter() - started,
            network=net.cpu(),
        )


def fine_tuned_accuracy(genotype: Genotype, space: SearchSpace, data: DataSplits,
                        supernet: SuperNet, recipe: TrainRecipe) -> float:
    """Validation accuracy of ``genotype`` after ``recipe.epochs`` of training from the
    supernet's weights: the higher-fidelity family accuracy (``probes.accuracy: finetune``),
    on the recipe's device and in its precision. The supernet is not changed and the test
    split is not touched."""
    recipe = replace(recipe, init="inherit")
    with torch_threads(recipe.threads):
        loop = _trained(genotype, space, data, recipe, supernet)
    return loop.history[-1]["val_acc"]


def _trained(genotype: Genotype, space: SearchSpace, data: DataSplits, recipe: TrainRecipe,
             supernet: SuperNet | None, checkpoint: Path | None = None,
             on_epoch: EpochCallback | None = None) -> _Loop:
    """The training loop after ``recipe.epochs`` (continued from ``checkpoint`` when it
    exists, which is then written after every epoch), under the recipe's seed; the
    caller's random state is left as it was. A device or precision this machine lacks is a
    ``ConfigError`` before anything is written."""
    device = resolve_device(recipe.device, "train recipe device")
    check_device_precision(device, recipe.precision, "train recipe precision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        loop = _Loop(genotype, space, data, recipe, supernet, device)
        if checkpoint is not None and checkpoint.exists():
            loop.restore(checkpoint)
        elif checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
        for epoch in range(len(loop.history), recipe.epochs):
            record = loop.epoch(epoch)
            if checkpoint is not None:
                write_atomically(checkpoint, loop.state())
            if on_epoch is not None:
                on_epoch(record)
    return loop


class _Loop:
    """The training state of one network: what a checkpoint holds."""

    def __init__(self, genotype: Genotype, space: SearchSpace, data: DataSplits,
                 recipe: TrainRecipe, supernet: SuperNet | None,
                 device: torch.device) -> None:
        self.genotype, self.recipe, self.device = genotype, recipe, device
        self.data = data.to(device)  # each split moved once
        # built on the CPU from the seeded global generator: the same initial weights on
        # every device
        self.net = DiscreteNetwork(genotype, space, data.in_channels, data.num_classes)
        if recipe.init == "inherit" and supernet is not None:
            self.net.inherit_from(supernet)
        self.net.to(device)
        self.scaler = grad_scaler(device, recipe.precision)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=recipe.lr,
                                         momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=recipe.epochs, eta_min=recipe.lr * recipe.lr_min_ratio)
        self.generator = torch.Generator().manual_seed(recipe.seed)  # on the CPU, see augment
        self.pad, self.flip = recipe.augmentation(data.name)
        self.history: list[dict[str, float]] = []

    def epoch(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        self.net.train()
        loss_sum = correct = 0.0
        for x, y in batches(self.data.train, self.recipe.batch_size, self.generator):
            x = augment(x, self.pad, self.flip, self.generator)
            with autocast(self.device, self.recipe.precision):
                logits = self.net(x).float()
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise DivergenceError(f"training diverged at epoch {epoch}: loss {loss.item()}; "
                                "lower the recipe's lr")
            self.step(loss)
            loss_sum += loss.item() * len(y)
            correct += float((logits.argmax(1) == y).sum())
        self.schedule.step()
        n = max(len(self.data.train), 1)
        with autocast(self.device, self.recipe.precision):
            val_acc = accuracy(self.net, self.data.val)
        record = {"epoch": float(epoch), "train_loss": loss_sum / n, "train_acc": correct / n,
                  "val_acc": val_acc, "seconds": time.perf_counter() - start}
        self.history.append(record)
        return record

    def step(self, loss: torch.Tensor) -> None:
        """Backward and an SGD step; under fp16 the loss is scaled, the gradients unscaled
        before clipping and a step with inf/NaN gradients skipped."""
        self.optimizer.zero_grad(set_to_none=True)
        clip = self.recipe.grad_clip
        if self.scaler is None:
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(self.net.parameters(), clip)
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds, its tensors on the CPU (it resumes on any device)."""
        return {"genotype": self.genotype.to_json(), "recipe": self.recipe.to_dict(),
                "net": _on_cpu(self.net.state_dict()),
                "optimizer": _on_cpu(self.optimizer.state_dict()),
                "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "generator": self.generator.get_state(), "torch": torch.get_rng_state(),
                "history": self.history}

    def restore(self, path: Path) -> None:
        """Continue from ``path`` (weights only: nothing in it can run code); it must be
        this genotype's training with this recipe."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DataError(f"{path}: not a training checkpoint of this tool ({err})") from err
        recipe = saved.get("recipe")
        if saved.get("genotype") != self.genotype.to_json() or not isinstance(recipe, dict) \
                or recipe_identity(recipe) != self.recipe.identity():
            raise ConfigError(f"{path}: a checkpoint of another genotype or recipe; delete it "
                              "or choose another output folder")
        self.net.load_state_dict(saved["net"])  # copied onto the model's device
        self.optimizer.load_state_dict(saved["optimizer"])  # moved to its parameters'
        self.schedule.load_state_dict(saved["schedule"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch"])
        self.history = list(saved["history"])


def _on_cpu(state: Any) -> Any:
    """A (nested) state dict with every tensor copied to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, list):
        return [_on_cpu(value) for value in state]
    return state
