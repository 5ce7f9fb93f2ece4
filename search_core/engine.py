"""One search run: train the supernet and hypernetwork jointly (docs/concepts.md).

    result = search(SearchConfig(...), on_epoch=print)
    result.genotype([1/3, 1/3, 1/3])
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_core.config import SearchConfig, TrainConfig
from search_core.costs import complexity_cost, op_cost_weights
from search_core.data import DataSplits, batches, load_data
from search_core.device import (
    autocast,
    check_device_precision,
    device_record,
    grad_scaler,
    resolve_device,
)
from search_core.errors import ConfigError, DataError, DivergenceError
from search_core.files import write_atomically
from search_core.hypernet import build_hypernet
from search_core.result import SearchResult
from search_core.schedules import progress, temperature
from search_core.supernet import SuperNet, gumbel_softmax, straight_through
from search_core.threads import torch_threads

log = logging.getLogger(__name__)

STATE_KIND = "search-state"  # a resume checkpoint (``search(..., state=PATH)``)
STATE_VERSION = 1
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
    code) or "adam" (Adam for both, as the thesis's text)."""
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

    def __init__(self, config: SearchConfig, data: DataSplits, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.data = data.to(device)
        space, train = config.space, config.train
        # built on the CPU from the seeded global generator: the same initial weights on
        # every device
        self.supernet = SuperNet(space, data.in_channels, data.num_classes).to(device)
        self.hypernet = build_hypernet(config).to(device)
        self.op_costs = op_cost_weights(config, data.in_channels, data.image_size,
                                        data.num_classes)
        if self.op_costs is not None:
            self.op_costs = self.op_costs.to(device)
        self.scaler = grad_scaler(device, config.precision)
        self.torch_rng = torch.Generator().manual_seed(config.seed)  # on the CPU, see batches
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
        return torch.as_tensor(self.numpy_rng.dirichlet(np.ones(k)), dtype=torch.float32,
                               device=self.device)

    def forward(self, x: torch.Tensor, **weights: torch.Tensor) -> torch.Tensor:
        """The supernet's logits under the search's precision (float32 out)."""
        with autocast(self.device, self.config.precision):
            return self.supernet(x, **weights).float()

    def loss(self, x: torch.Tensor, y: torch.Tensor, t: float) -> tuple[torch.Tensor, ...]:
        """(loss, cross-entropy, cost, correct) averaged over ``s_draws`` draws of s."""
        train = self.config.train
        per_example = x.shape[0] if train.gumbel_per_example else 0
        total_loss = total_ce = total_cost = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for _ in range(train.s_draws):
            s = self.draw_s()
            alpha = self.hypernet(s)  # (2, E, k)
            gamma = gumbel_softmax(alpha, t, self.torch_rng, samples=per_example)
            if train.mode == "single_path":  # GDAS: one op per edge, straight-through
                with autocast(self.device, self.config.precision):
                    logits = self.supernet.single_path(x, straight_through(gamma)).float()
            else:
                logits = self.forward(x, gamma=gamma)
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
        clip, scaler = self.config.train.grad_clip, self.scaler
        if scaler is None:
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(self.supernet.parameters(), clip)
            self.w_optimizer.step()
            self.a_optimizer.step()
        else:  # fp16: scaled loss; gradients unscaled before clipping; skipped steps on inf
            scaler.scale(loss).backward()
            scaler.unscale_(self.w_optimizer)
            scaler.unscale_(self.a_optimizer)
            if clip:
                nn.utils.clip_grad_norm_(self.supernet.parameters(), clip)
            scaler.step(self.w_optimizer)
            scaler.step(self.a_optimizer)
            scaler.update()
        self.hypernet.project_points_()

    @torch.no_grad()
    def val_accuracy(self, t: float) -> float:
        """Accuracy of the soft supernet at the centroid s, softmax(alpha/t) weights."""
        self.supernet.eval()
        k = self.config.space.num_ops
        centroid = torch.full((k,), 1.0 / k, device=self.device)
        gamma = torch.softmax(self.hypernet(centroid) / t, dim=-1)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in batches(self.data.val, 256, None):
            correct += (self.forward(x, gamma=gamma).argmax(1) == y).sum()
        return int(correct) / max(len(self.data.val), 1)

    def state(self, history: list[EpochMetrics], seconds: float) -> dict[str, Any]:
        """Everything the next epoch depends on (a resume checkpoint: plain data only)."""
        return {
            "version": STATE_VERSION, "kind": STATE_KIND,
            "identity": json.dumps(self.config.identity(), sort_keys=True),
            "supernet": self.supernet.state_dict(), "hypernet": self.hypernet.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "a_optimizer": self.a_optimizer.state_dict(),
            "w_scheduler": self.w_scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "torch_rng": self.torch_rng.get_state(),
            "numpy_rng": json.dumps(self.numpy_rng.bit_generator.state),
            "global_rng": torch.get_rng_state(),
            "start_ce": self.start_ce, "previous_ce": self.previous_ce,
            "history": [m.to_dict() for m in history], "seconds": seconds,
        }

    def restore(self, saved: Mapping[str, Any]) -> tuple[list[EpochMetrics], float]:
        """Continue from ``state``'s payload; the epochs done and the seconds they took."""
        self.supernet.load_state_dict(saved["supernet"])
        self.hypernet.load_state_dict(saved["hypernet"])
        self.w_optimizer.load_state_dict(saved["w_optimizer"])
        self.a_optimizer.load_state_dict(saved["a_optimizer"])
        self.w_scheduler.load_state_dict(saved["w_scheduler"])
        if self.scaler is not None and saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        self.torch_rng.set_state(saved["torch_rng"])
        self.numpy_rng.bit_generator.state = json.loads(saved["numpy_rng"])
        torch.set_rng_state(saved["global_rng"])
        self.start_ce, self.previous_ce = saved["start_ce"], saved["previous_ce"]
        history = [EpochMetrics(**{k: (int(v) if k in ("epoch", "epochs") else v)
                                   for k, v in m.items()}) for m in saved["history"]]
        return history, float(saved["seconds"])


def search(
    config: SearchConfig,
    data: DataSplits | None = None,
    on_epoch: EpochCallback | None = None,
    state: Path | None = None,
) -> SearchResult:
    """Run one search. ``on_epoch`` gets ``EpochMetrics`` after every epoch; an exception it
    raises (e.g. a pruning signal) stops the search and propagates.

    ``state``: a resume checkpoint. Written (atomically) at every epoch's end, the last
    only; when it exists at the start, the search continues after its last complete epoch
    and, on the same device and threads, ends exactly as an uninterrupted run would. A
    checkpoint of another configuration is a ``ConfigError``. The caller deletes it when
    the search's result is safe (``SearchResult.resumed_from`` says where it resumed).

    Divergence raises ``DivergenceError`` (the harness records the trial as failed, with the
    message as its reason): a non-finite loss at any step, and, unless
    ``train.divergence_factor`` is null, an epoch that ``divergence`` judges diverged (e.g. a
    network trained to chance with an exploding but finite loss, ``w_lr: 1e6``). The rules
    read only losses and accuracies, so they are as deterministic as the search."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    check_device_precision(device, config.precision)
    data = data if data is not None else load_data(config.data)
    history: list[EpochMetrics] = []
    earlier = 0.0  # seconds spent before a resume
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trainer = _Trainer(config, data, device)
        if state is not None and state.exists():
            history, earlier = trainer.restore(load_state(state, config))
            log.info("resuming %s after epoch %d", state, len(history))
        resumed_from = len(history) if history else None
        for epoch in range(len(history), config.train.epochs):
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
            if state is not None:
                seconds = earlier + time.perf_counter() - started
                write_atomically(state, trainer.state(history, seconds))
            log.debug("epoch %s", metrics)
            if on_epoch is not None:
                on_epoch(metrics)
    return SearchResult(
        config=config,
        supernet=trainer.supernet,
        hypernet=trainer.hypernet,
        history=[m.to_dict() for m in history],
        data_info=data.summary(),
        seconds=earlier + time.perf_counter() - started,
        resumed_from=resumed_from,
        device=device_record(device),
    )


def load_state(path: Path, config: SearchConfig) -> dict[str, Any]:
    """A resume checkpoint of ``config``'s search, read as data only."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise DataError(f"{path}: not a search checkpoint of this tool; refused to load it "
                        f"({first}); delete it to start the search afresh") from None
    if not isinstance(saved, dict) or saved.get("kind") != STATE_KIND \
            or saved.get("version") != STATE_VERSION:
        raise DataError(f"{path}: not a search checkpoint of version {STATE_VERSION}; "
                        "delete it to start the search afresh")
    mine = config.identity()
    theirs = json.loads(saved["identity"])
    if theirs != mine:
        differ = sorted(differing_keys(theirs, mine))
        raise ConfigError(f"{path}: a search checkpoint of another configuration (differs in "
                          f"{', '.join(differ[:5])}{'...' if len(differ) > 5 else ''}); "
                          "delete it or use another folder")
    return saved


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two nested mappings differ."""
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            keys += differing_keys(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys
