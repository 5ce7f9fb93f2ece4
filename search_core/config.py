"""The search configuration: frozen dataclasses, validated on construction.

``SearchConfig`` is the unit of reproducibility of one search: it, the data and the package
versions determine the result. It is stored in every checkpoint.

Bounds: sizes are capped where a larger value is physically absurd (it would not fit in memory
or finish in a lifetime), not where it is merely unusual: ``MAX_CELLS`` cells, ``MAX_NODES``
nodes, ``MAX_CHANNELS`` channels, ``MAX_EPOCHS`` epochs, ``MAX_BATCH_SIZE``, ``MAX_NUM_REFS``
reference points, ``MAX_S_DRAWS`` draws of s per step; seeds lie in ``[0, 2**32)``; learning
rates, temperatures, kappa and the other real-valued settings must be finite.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from search_core.configtools import from_mapping, shown, to_plain
from search_core.data import DataConfig
from search_core.device import check_device_name, check_precision
from search_core.errors import ConfigError
from search_core.ops import OPS
from search_core.placements import PLACEMENTS
from search_core.registry import Registry
from search_core.schedules import SCHEDULES

CELL_TYPES = ("normal", "reduce")
MAX_CELLS = 64
MAX_NODES = 16
MAX_CHANNELS = 4096
MAX_STEM_MULTIPLIER = 16
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_NUM_REFS = 4096
MAX_S_DRAWS = 1024
MAX_THREADS = 1024
SEED_LIMIT = 2**32  # seeds lie in [0, SEED_LIMIT): what numpy and torch generators accept


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _registered(registry: Registry[Any], name: str, key: str) -> Any:
    """``registry.get`` quoting at most a short piece of an unknown name."""
    _require(name in registry, f"{key}: unknown {registry.kind} {shown(name)}; valid names: "
             f"{', '.join(sorted(registry))}")
    return registry.get(name, key)


def _require_between(key: str, value: int, low: int, high: int) -> None:
    """``low <= value <= high``, else an error naming ``key`` and the bounds."""
    _require(low <= value <= high, f"{key}: got {shown(value)}; need {low} <= "
             f"{key.rpartition('.')[2]} <= {high}")


def _require_seed(key: str, value: int) -> None:
    _require(0 <= value < SEED_LIMIT,
             f"{key}: got {shown(value)}; need an integer in [0, 2**32)")


@dataclass(frozen=True)
class SearchSpace:
    """DARTS macro-structure: stem -> ``cells`` cells of ``nodes`` nodes -> pool -> linear."""

    ops: tuple[str, ...] = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
    cells: int = 3
    nodes: int = 4
    channels: int = 8
    stem_multiplier: int = 3

    def __post_init__(self) -> None:
        ops = shown(list(self.ops))
        _require(len(self.ops) >= 2, f"space.ops: got {ops}; need at least 2 ops")
        _require(len(set(self.ops)) == len(self.ops), f"space.ops: duplicate op in {ops}")
        for name in self.ops:
            _registered(OPS, name, "space.ops")
        _require_between("space.cells", self.cells, 1, MAX_CELLS)
        _require_between("space.nodes", self.nodes, 1, MAX_NODES)
        _require_between("space.channels", self.channels, 2, MAX_CHANNELS)
        _require_between("space.stem_multiplier", self.stem_multiplier, 1, MAX_STEM_MULTIPLIER)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(from, to) node pairs in edge order; nodes 0 and 1 are the cell inputs."""
        return tuple((i, j + 2) for j in range(self.nodes) for i in range(j + 2))

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def reduction_cells(self) -> frozenset[int]:
        """Indices of reduction cells: floor(L/3) and floor(2L/3)."""
        return frozenset({self.cells // 3, 2 * self.cells // 3})


@dataclass(frozen=True)
class HyperNetConfig:
    """Reference points s_ref,r with logit tables A_r; alpha(s) = sum_r w_r(s) A_r."""

    placement: str = "vertices"
    num_refs: int | None = None
    bandwidth: float = 1.0
    init_scale: float = 1e-3

    def __post_init__(self) -> None:
        _registered(PLACEMENTS, self.placement, "hypernet.placement")
        _require(
            self.num_refs is None or 1 <= self.num_refs <= MAX_NUM_REFS,
            f"hypernet.num_refs: got {shown(self.num_refs)}; need 1 <= num_refs <= "
            f"{MAX_NUM_REFS} (or null for the default)",
        )
        _require(
            _finite(self.bandwidth) and self.bandwidth > 0,
            f"hypernet.bandwidth: got {shown(self.bandwidth)}; need a finite value > 0",
        )
        _require(
            _finite(self.init_scale) and self.init_scale >= 0,
            f"hypernet.init_scale: got {shown(self.init_scale)}; need a finite value >= 0",
        )


@dataclass(frozen=True)
class TemperatureConfig:
    """Gumbel-Softmax temperature from ``t_start`` to ``t_end``, stepped per epoch or step."""

    schedule: str = "linear"
    t_start: float = 1.0
    t_end: float = 0.2
    per: Literal["epoch", "step"] = "epoch"

    def __post_init__(self) -> None:
        shape = _registered(SCHEDULES, self.schedule, "temperature.schedule")
        for key in ("t_start", "t_end"):
            value = getattr(self, key)
            _require(
                _finite(value) and value > 0,
                f"temperature.{key}: got {value}; the temperature must be finite and > 0",
            )
        _require(
            not shape.annealing or self.t_end <= self.t_start,
            f"temperature.t_end: got {shown(self.t_end)} > t_start={self.t_start}; schedule "
            f"{shown(self.schedule)} anneals, so set t_end <= t_start (or schedule 'constant')",
        )
        _require(self.per in ("epoch", "step"), f"temperature.per: got {shown(self.per)}; "
                 "expected 'epoch' or 'step'")


@dataclass(frozen=True)
class TrainConfig:
    """Single-level training of supernet weights w and hypernetwork a (docs/concepts.md).

    ``optimizer``: "sgd+adam" (reference code: SGD with cosine decay and gradient clipping for
    w, Adam(betas 0.5, 0.999) for a) or "adam" (the thesis's text: Adam for both).
    ``op_costs``: "none" (c_m = 1), "params" (c_m = relative parameter count of op m),
    "latency" (c_m = latency of op m on each edge, from the table at ``latency_table``, made
    by ``hpo profile``) or a mapping op name -> c_m; the penalty of op m is s_m * c_m.
    ``mode``: "soft" (every op on every edge, weighted by a Gumbel-Softmax sample) or
    "single_path" (GDAS: a hard straight-through sample, only the chosen op per edge runs).
    ``divergence_factor``: the study's divergence policy (``search_core.engine.divergence``).
    A trial fails as diverged when an epoch's mean training cross-entropy exceeds this factor
    times max(first minibatch's, chance), or when, from the second epoch on, its training
    accuracy is at chance while the cross-entropy, above chance, has not decreased; null keeps
    only the always-on rule (a non-finite loss fails the trial).
    """

    epochs: int = 10
    batch_size: int = 64
    kappa: float = 1.0
    cost_uses_temperature: bool = True
    op_costs: str | Mapping[str, float] = "none"
    latency_table: str | None = None
    s_draws: int = 1
    gumbel_per_example: bool = False
    mode: Literal["soft", "single_path"] = "soft"
    optimizer: Literal["sgd+adam", "adam"] = "sgd+adam"
    w_lr: float | None = None
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    a_lr: float = 1e-3
    a_weight_decay: float = 1e-3
    grad_clip: float | None = 5.0
    divergence_factor: float | None = 10.0

    def __post_init__(self) -> None:
        _require_between("train.epochs", self.epochs, 1, MAX_EPOCHS)
        _require_between("train.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _require(
            _finite(self.kappa) and self.kappa >= 0,
            f"train.kappa: got {shown(self.kappa)}; need a finite value >= 0",
        )
        _require(
            0 <= self.w_momentum < 1, f"train.w_momentum: got {shown(self.w_momentum)}; need [0, 1)"
        )
        for key in ("w_weight_decay", "a_weight_decay"):
            value = getattr(self, key)
            _require(_finite(value) and value >= 0, f"train.{key}: got {value}; need >= 0")
        _require(
            self.grad_clip is None or (_finite(self.grad_clip) and self.grad_clip > 0),
            f"train.grad_clip: got {shown(self.grad_clip)}; need > 0 (or null for no clipping)",
        )
        _require(
            self.divergence_factor is None
            or (_finite(self.divergence_factor) and self.divergence_factor > 1),
            f"train.divergence_factor: got {shown(self.divergence_factor)}; need a finite "
            "value > 1 (or null to fail only on a non-finite loss)",
        )
        _require_between("train.s_draws", self.s_draws, 1, MAX_S_DRAWS)
        _require(
            self.mode in ("soft", "single_path"),
            f"train.mode: got {shown(self.mode)}; expected 'soft' or 'single_path'",
        )
        _require(
            self.mode != "single_path" or not self.gumbel_per_example,
            "train.mode: 'single_path' runs one architecture per minibatch; set "
            "train.gumbel_per_example to false",
        )
        _require(
            self.optimizer in ("sgd+adam", "adam"),
            f"train.optimizer: got {shown(self.optimizer)}; expected 'sgd+adam' or 'adam'",
        )
        _require(
            self.w_lr is None or (_finite(self.w_lr) and self.w_lr > 0),
            f"train.w_lr: got {shown(self.w_lr)}; need a finite value > 0 (or null for the "
            "default)",
        )
        _require(_finite(self.a_lr) and self.a_lr > 0,
                 f"train.a_lr: got {shown(self.a_lr)}; need a finite value > 0")
        if isinstance(self.op_costs, str):
            _require(
                self.op_costs in ("none", "params", "latency"),
                f"train.op_costs: got {shown(self.op_costs)}; expected 'none', 'params', "
                "'latency' or a mapping op -> weight",
            )
            _require(
                self.op_costs != "latency" or bool(self.latency_table),
                "train.op_costs: 'latency' needs train.latency_table, the path of a table "
                "measured by `hpo profile --out FILE`",
            )
        else:
            bad = {k: v for k, v in self.op_costs.items() if not (_finite(v) and v >= 0)}
            _require(not bad, f"train.op_costs: weights {shown(bad)}; need finite values >= 0")

    @property
    def weight_lr(self) -> float:
        if self.w_lr is not None:
            return self.w_lr
        return 0.025 if self.optimizer == "sgd+adam" else 1e-3


@dataclass(frozen=True)
class SearchConfig:
    """Everything one search run needs; ``SearchConfig.from_dict(cfg.to_dict()) == cfg``."""

    space: SearchSpace = field(default_factory=SearchSpace)
    hypernet: HyperNetConfig = field(default_factory=HyperNetConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    threads: int | None = None
    # where and in what precision it runs (search_core.device); the device, like threads,
    # is not part of what a search computes: a checkpoint resumes on another device
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    def __post_init__(self) -> None:
        check_device_name(self.device)
        check_precision(self.precision)
        costs = self.train.op_costs
        if not isinstance(costs, str):
            missing = sorted(set(self.space.ops) - set(costs))
            extra = sorted(set(costs) - set(self.space.ops))
            _require(
                not missing and not extra,
                f"train.op_costs: needs exactly the ops of space.ops; missing {shown(missing)}, "
                f"not in space.ops {shown(extra)}",
            )
        _require(
            self.threads is None or 1 <= self.threads <= MAX_THREADS,
            f"threads: got {shown(self.threads)}; need 1 <= threads <= {MAX_THREADS} (or null "
            "to keep torch's default)",
        )
        _require_seed("seed", self.seed)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def identity(self) -> dict[str, Any]:
        """What the search computes: the settings less where it runs (``threads``,
        ``device``). Two configs with one identity train the same networks."""
        plain = self.to_dict()
        for key in ("threads", "device"):
            plain.pop(key)
        return plain

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        return from_mapping(cls, data)

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)
