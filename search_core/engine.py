"""One search run: train the supernet and hypernetwork jointly (METHOD.md sections 2-4).

    result = search(SearchConfig(...), on_epoch=print)
    result.genotype([1/3, 1/3, 1/3])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from search_core.config import SearchConfig, TrainConfig
from search_core.costs import complexity_cost, op_cost_weights
from search_core.data import DataSplits, batches, load_data
from search_core.errors import DivergenceError
from search_core.hypernet import build_hypernet
from search_core.result import SearchResult
from search_core.schedules import progress, temperature
from search_core.supernet import SuperNet, gumbel_softmax, straight_through
from search_core.threads import torch_threads

log = logging.getLogger(__name__)

CHANCE_MARGIN = 1.25  # training accuracy below CHANCE_MARGIN / num_classes counts as chance


@dataclass(frozen=True)
class EpochLosses:
    """What the divergence policy reads of one epoch: its mean training cross-entropy, its
    training accuracy and the previous epoch's mean cross-entropy (None in the first)."""

    mean_ce: float
    accuracy: float
    previous_ce: float | None


def divergence(epoch: EpochLosses, start_ce: float, num_classes: int,
               factor: float) -> str | None:
    """Why an epoch counts as diverged, or None: (1) its mean training cross-entropy is
    non-finite or above ``factor`` times max(the first minibatch's, chance = ln(num_classes)):
    the weights exploded though every loss was finite; (2) from the second epoch on, its
    training accuracy is at chance (below ``CHANCE_MARGIN / num_classes``) while its
    cross-entropy is above chance and did not decrease: training has stopped learning."""
    chance = math.log(max(num_classes, 2))
    limit = factor * max(start_ce, chance)
    if not epoch.mean_ce <= limit:  # also true for NaN
        return (f"mean cross-entropy {epoch.mean_ce:.4g} > {limit:.4g} ({factor:g}x "
                f"max(first minibatch {start_ce:.4g}, chance {chance:.4g}))")
    at_chance = epoch.accuracy < CHANCE_MARGIN / max(num_classes, 2)
    stalled = epoch.previous_ce is not None and epoch.mean_ce >= epoch.previous_ce
    if at_chance and stalled and epoch.mean_ce > chance:
        return (f"training accuracy {epoch.accuracy:.3f} is at chance and the mean "
                f"cross-entropy did not decrease ({epoch.previous_ce:.4g} -> "
                f"{epoch.mean_ce:.4g}, chance {chance:.4g})")
    return None


@dataclass(frozen=True)
class EpochMetrics:
    """What the progress callback receives after every epoch."""

    epoch: int
    epochs: int
    temperature: float
    train_loss: float
    train_ce: float
    train_cost: float
    train_acc: float
    val_acc: float
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


EpochCallback = Callable[[EpochMetrics], None]


def build_optimizers(
    train: TrainConfig, weights: Iterable[nn.Parameter], arch: Iterable[nn.Parameter]
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The optimisers of supernet weights w and architecture parameters a that ``train``
    names: "sgd+adam" (SGD with momentum for w, Adam(0.5, 0.999) for a, as the reference
    code) or "adam" (Adam for both, as the seed text)."""
    w_opt: torch.optim.Optimizer
    if train.optimizer == "sgd+adam":
        w_opt = torch.optim.SGD(weights, lr=train.weight_lr, momentum=train.w_momentum,
                                weight_decay=train.w_weight_decay)
        a_betas = (0.5, 0.999)
    else:
        w_opt = torch.optim.Adam(weights, lr=train.weight_lr, weight_decay=train.w_weight_decay)
        a_betas = (0.9, 0.999)
    a_opt = torch.optim.Adam(arch, lr=train.a_lr, betas=a_betas,
                             weight_decay=train.a_weight_decay)
    return w_opt, a_opt


class _Trainer:
    """Holds the models, optimisers and generators of one search."""

    def __init__(self, config: SearchConfig, data: DataSplits) -> None:
        self.config = config
        self.data = data
        space, train = config.space, config.train
        self.supernet = SuperNet(space, data.in_channels, data.num_classes)
        self.hypernet = build_hypernet(config)
        self.op_costs = op_cost_weights(config, data.in_channels, data.image_size,
                                        data.num_classes)
        self.torch_rng = torch.Generator().manual_seed(config.seed)
        self.numpy_rng = np.random.default_rng(config.seed)
        self.steps_per_epoch = math.ceil(len(data.train) / train.batch_size)
        self.w_optimizer, self.a_optimizer, self.w_scheduler = self._optimizers()
        self.start_ce: float | None = None  # cross-entropy of the first minibatch
        self.previous_ce: float | None = None  # mean training cross-entropy, last epoch

    def _optimizers(
        self,
    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        train = self.config.train
        w_opt, a_opt = build_optimizers(train, self.supernet.parameters(),
                                        self.hypernet.parameters())
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            w_opt, T_max=train.epochs, eta_min=train.weight_lr * 0.01
        )
        return w_opt, a_opt, schedule

    def temperature_at(self, epoch: int, step: int) -> float:
        temp, epochs = self.config.temperature, self.config.train.epochs
        if temp.per == "epoch":
            p = progress(epoch, epochs)
        else:
            p = progress(epoch * self.steps_per_epoch + step, epochs * self.steps_per_epoch)
        return temperature(temp.schedule, temp.t_start, temp.t_end, p)

    def draw_s(self) -> torch.Tensor:
        k = self.config.space.num_ops
        return torch.as_tensor(self.numpy_rng.dirichlet(np.ones(k)), dtype=torch.float32)

    def loss(self, x: torch.Tensor, y: torch.Tensor, t: float) -> tuple[torch.Tensor, ...]:
        """(loss, cross-entropy, cost, correct) averaged over ``s_draws`` draws of s."""
        train = self.config.train
        per_example = x.shape[0] if train.gumbel_per_example else 0
        total_loss = total_ce = total_cost = torch.zeros(())
        correct = torch.zeros(())
        for _ in range(train.s_draws):
            s = self.draw_s()
            alpha = self.hypernet(s)  # (2, E, k)
            gamma = gumbel_softmax(alpha, t, self.torch_rng, samples=per_example)
            if train.mode == "single_path":  # GDAS: one op per edge, straight-through
                logits = self.supernet.single_path(x, straight_through(gamma))
            else:
                logits = self.supernet(x, gamma=gamma)
            ce = nn.functional.cross_entropy(logits, y)
            cost_t = t if train.cost_uses_temperature else None
            cost = complexity_cost(alpha, s, cost_t, self.op_costs)
            total_loss = total_loss + ce + train.kappa * cost
            total_ce, total_cost = total_ce + ce.detach(), total_cost + cost.detach()
            correct = correct + (logits.argmax(1) == y).sum()
        n = train.s_draws
        return total_loss / n, total_ce / n, total_cost / n, correct / n

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.supernet.train()
        sums = {"loss": 0.0, "ce": 0.0, "cost": 0.0, "correct": 0.0}
        t = self.temperature_at(epoch, 0)
        batch_size = self.config.train.batch_size
        for step, (x, y) in enumerate(batches(self.data.train, batch_size, self.torch_rng)):
            t = self.temperature_at(epoch, step)
            loss, ce, cost, correct = self.loss(x, y, t)
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"non-finite loss {loss.item()} at epoch {epoch}, step {step}; "
                    "lower the learning rates or kappa"
                )
            if self.start_ce is None:
                self.start_ce = ce.item()
            self.step(loss)
            n = x.shape[0]
            sums["loss"] += loss.item() * n
            sums["ce"] += ce.item() * n
            sums["cost"] += cost.item() * n
            sums["correct"] += correct.item()
        self.w_scheduler.step()
        n_train = len(self.data.train)
        stats = {key: value / n_train for key, value in sums.items()} | {"temperature": t}
        self.check_divergence(epoch, stats)
        return stats

    def check_divergence(self, epoch: int, stats: Mapping[str, float]) -> None:
        """Raise ``DivergenceError`` when the study's policy says this epoch diverged."""
        factor = self.config.train.divergence_factor
        reason = None if factor is None else divergence(
            EpochLosses(stats["ce"], stats["correct"], self.previous_ce),
            self.start_ce or 0.0, self.data.num_classes, factor,
        )
        self.previous_ce = stats["ce"]
        if reason is not None:
            raise DivergenceError(f"training diverged at epoch {epoch}: {reason}; lower the "
                                  "learning rates (or set train.divergence_factor: null)")

    def step(self, loss: torch.Tensor) -> None:
        self.w_optimizer.zero_grad(set_to_none=True)
        self.a_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.train.grad_clip
        if clip:
            nn.utils.clip_grad_norm_(self.supernet.parameters(), clip)
        self.w_optimizer.step()
        self.a_optimizer.step()
        self.hypernet.project_points_()

    @torch.no_grad()
    def val_accuracy(self, t: float) -> float:
        """Accuracy of the soft supernet at the centroid s, softmax(alpha/t) weights."""
        self.supernet.eval()
        k = self.config.space.num_ops
        gamma = torch.softmax(self.hypernet(torch.full((k,), 1.0 / k)) / t, dim=-1)
        correct = 0
        for x, y in batches(self.data.val, 256, None):
            correct += int((self.supernet(x, gamma=gamma).argmax(1) == y).sum())
        return correct / max(len(self.data.val), 1)


def search(
    config: SearchConfig,
    data: DataSplits | None = None,
    on_epoch: EpochCallback | None = None,
) -> SearchResult:
    """Run one search. ``on_epoch`` gets ``EpochMetrics`` after every epoch; an exception it
    raises (e.g. a pruning signal) stops the search and propagates.

    Divergence raises ``DivergenceError`` (the harness records the trial as failed, with the
    message as its reason): a non-finite loss at any step, and, unless
    ``train.divergence_factor`` is null, an epoch that ``divergence`` judges diverged (e.g. a
    network trained to chance with an exploding but finite loss, ``w_lr: 1e6``). The rules
    read only losses and accuracies, so they are as deterministic as the search."""
    started = time.perf_counter()
    data = data if data is not None else load_data(config.data)
    history: list[EpochMetrics] = []
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trainer = _Trainer(config, data)
        for epoch in range(config.train.epochs):
            epoch_start = time.perf_counter()
            stats = trainer.train_epoch(epoch)
            metrics = EpochMetrics(
                epoch=epoch,
                epochs=config.train.epochs,
                temperature=stats["temperature"],
                train_loss=stats["loss"],
                train_ce=stats["ce"],
                train_cost=stats["cost"],
                train_acc=stats["correct"],
                val_acc=trainer.val_accuracy(stats["temperature"]),
                seconds=time.perf_counter() - epoch_start,
            )
            history.append(metrics)
            log.debug("epoch %s", metrics)
            if on_epoch is not None:
                on_epoch(metrics)
    return SearchResult(
        config=config,
        supernet=trainer.supernet,
        hypernet=trainer.hypernet,
        history=[m.to_dict() for m in history],
        data_info=data.summary(),
        seconds=time.perf_counter() - started,
    )
