"""Latency on the target device: a per-part lookup table, whole-network measurements, and a
predictor with a learned correction.

A derived network is a sum of *parts*: the stem, each cell's two input preprocessings, the
op chosen on every edge, each node's sum, each cell's concatenation and the head. Every part
is identified by a ``PartKey`` (kind, op name, channels, resolution, stride); the table holds
its median latency measured in isolation on this machine, with its spread. The naive
prediction sums the parts; a per-space linear correction, fitted on whole networks measured
end to end, absorbs what isolation misses (framework overhead between modules, caches).

    table = profile_parts(layouts, batches=(1,), settings=TimingSettings())
    calibrate(table, layout, fit=30, validate=60)   # measures networks, fits, validates
    table.predict(genotype, layout)                 # corrected, in milliseconds
    table.save("runs/latency.json")
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_core.config import CELL_TYPES, SearchSpace
from search_core.discrete import DiscreteNetwork, node_sum
from search_core.errors import ConfigError
from search_core.genotype import Genotype
from search_core.machine import cpu_model
from search_core.metrics import spearman
from search_core.ops import FactorizedReduce, ReLUConvBN, build_op
from search_core.supernet import cell_shapes, make_stem
from search_core.threads import torch_threads

TABLE_FORMAT = 1
FINGERPRINT_KEYS = ("device", "device_name", "cpu_model", "cores", "threads", "torch")


# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True, order=True)
class PartKey:
    """One measurable part of a derived network, at one input geometry."""

    kind: str  # stem | pre_conv | pre_reduce | op | sum | concat | head
    name: str  # op name for kind "op", else ""
    c_in: int
    c_out: int
    height: int
    width: int
    stride: int = 1
    arity: int = 1  # inputs of a sum or a concatenation

    @property
    def label(self) -> str:
        op = f"{self.kind}:{self.name}" if self.name else self.kind
        return (f"{op} c{self.c_in}->{self.c_out} {self.height}x{self.width} "
                f"s{self.stride} n{self.arity}")


@dataclass(frozen=True)
class Slot:
    """An edge of one cell: which op runs there is the genotype's choice."""

    cell_kind: str  # normal | reduce
    edge: int
    channels: int
    height: int
    width: int
    stride: int

    def key(self, op: str) -> PartKey:
        return PartKey("op", op, self.channels, self.channels, self.height, self.width,
                       self.stride)


@dataclass(frozen=True)
class NetworkLayout:
    """The parts of every network of a search space at one input shape."""

    space: SearchSpace
    in_channels: int
    image: tuple[int, int]
    num_classes: int
    fixed: tuple[PartKey, ...]  # parts every architecture has
    slots: tuple[Slot, ...]  # one per edge of every cell

    @property
    def signature(self) -> str:
        """Identifies the space and input shape a correction was fitted for."""
        s = self.space
        return (f"ops={','.join(s.ops)} cells={s.cells} nodes={s.nodes} channels={s.channels} "
                f"stem={s.stem_multiplier} input={self.in_channels}x{self.image[0]}x"
                f"{self.image[1]} classes={self.num_classes}")

    def part_keys(self) -> list[PartKey]:
        """Every part any architecture of the space can contain."""
        ops = {slot.key(op) for slot in self.slots for op in self.space.ops}
        return sorted(set(self.fixed) | ops)

    def op_keys(self, genotype: Genotype) -> list[PartKey]:
        return [slot.key(genotype.cell(slot.cell_kind)[slot.edge]) for slot in self.slots]


def _halve(size: int) -> int:
    return (size + 1) // 2  # every stride-2 part maps H to ceil(H / 2)


def network_layout(
    space: SearchSpace, in_channels: int, image: tuple[int, int], num_classes: int
) -> NetworkLayout:
    """Walk the macro-structure (the same ``cell_shapes`` the networks are built from)."""
    height, width = image
    c_stem = space.stem_multiplier * space.channels
    fixed = [PartKey("stem", "", in_channels, c_stem, height, width)]
    slots: list[Slot] = []
    prev_prev, prev = (height, width), (height, width)
    for shape in cell_shapes(space):
        kind = "reduce" if shape.reduction else "normal"
        pre0 = "pre_reduce" if shape.reduction_prev else "pre_conv"
        fixed.append(PartKey(pre0, "", shape.c_prev_prev, shape.c, *prev_prev,
                             stride=2 if shape.reduction_prev else 1))
        fixed.append(PartKey("pre_conv", "", shape.c_prev, shape.c, *prev))
        out = (_halve(prev[0]), _halve(prev[1])) if shape.reduction else prev
        for e, (source, target) in enumerate(space.edges):
            stride = shape.edge_stride(source)
            at = prev if source < 2 else out
            slots.append(Slot(kind, e, shape.c, at[0], at[1], stride))
            if source == target - 1:  # the last edge into this node: the node's sum
                fixed.append(PartKey("sum", "", shape.c, shape.c, *out, arity=target))
        fixed.append(PartKey("concat", "", shape.c, space.nodes * shape.c, *out,
                             arity=space.nodes))
        prev_prev, prev = prev, out
    c_last = space.nodes * cell_shapes(space)[-1].c
    fixed.append(PartKey("head", "", c_last, num_classes, *prev))
    return NetworkLayout(space, in_channels, (height, width), num_classes, tuple(fixed),
                         tuple(slots))


class Head(nn.Module):
    """Global average pool -> linear, as in the networks."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(x).flatten(1))


def part_callable(key: PartKey, batch: int, device: torch.device) -> Callable[[], Any]:
    """A no-argument function running the part once on a fixed random input."""
    if key.kind in ("sum", "concat"):
        inputs = [torch.randn(batch, key.c_in, key.height, key.width, device=device)
                  for _ in range(key.arity)]
        if key.kind == "sum":
            return lambda: node_sum(inputs)
        return lambda: torch.cat(inputs, dim=1)
    module: nn.Module
    if key.kind == "stem":
        module = make_stem(key.c_in, SearchSpace(channels=key.c_out, stem_multiplier=1))
    elif key.kind == "pre_conv":
        module = ReLUConvBN(key.c_in, key.c_out, 1, 1, affine=True)
    elif key.kind == "pre_reduce":
        module = FactorizedReduce(key.c_in, key.c_out, affine=True)
    elif key.kind == "op":
        module = build_op(key.name, key.c_in, key.stride, affine=True)
    elif key.kind == "head":
        module = Head(key.c_in, key.c_out)
    else:
        raise ConfigError(f"latency part kind {key.kind!r} is unknown")
    module = module.to(device).eval()
    x = torch.randn(batch, key.c_in, key.height, key.width, device=device)
    return lambda: module(x)


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingSettings:
    """How a latency is measured: ``warmup`` calls, then ``rounds`` timed rounds of as many
    calls as fill ``round_ms``, spread over ``passes`` interleaved passes; the median over
    rounds is the latency."""

    warmup: int = 10
    rounds: int = 35
    round_ms: float = 4.0
    passes: int = 7
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.warmup < 0 or self.rounds < 3 or not self.round_ms > 0 or self.threads < 1
                or not 1 <= self.passes <= self.rounds):
            raise ConfigError(f"timing settings {self}: need warmup >= 0, rounds >= 3, "
                              "round_ms > 0, threads >= 1, 1 <= passes <= rounds")


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


# ----------------------------------------------------------------------------- correction


@dataclass(frozen=True)
class Correction:
    """measured ~ intercept + fixed + sum_g scale_g * (table latency of group g's parts), a
    group being one op in one cell type ("sep_conv_3x3@reduce"): ops in reduction cells run
    at other resolutions and strides and drift from their isolated timings differently.
    Fitted by ridge-regularised least squares, pulled towards the naive sum (scales 1,
    intercept 0), on whole networks of one layout at one batch size."""

    signature: str
    batch: int
    scales: dict[str, float]
    intercept_ms: float
    fitted_on: int

    def apply(self, fixed_ms: float, per_group_ms: dict[str, float]) -> float:
        return self.intercept_ms + fixed_ms + sum(
            self.scales.get(group, 1.0) * ms for group, ms in per_group_ms.items())


def fit_correction(
    signature: str,
    batch: int,
    groups: Sequence[str],
    samples: Sequence[tuple[float, dict[str, float], float]],
    ridge: float = 1e-3,
) -> Correction:
    """``samples``: (fixed_ms, per_group_ms, measured_ms) per network."""
    x = np.array([[per_group.get(g, 0.0) for g in groups] + [1.0]
                  for _, per_group, _ in samples])
    y = np.array([measured - fixed for fixed, _, measured in samples])
    prior = np.array([1.0] * len(groups) + [0.0])
    scale = float(np.mean(y**2)) if len(y) else 1.0
    penalty = np.sqrt(ridge * scale) * np.eye(len(prior))
    a = np.vstack([x, penalty])
    b = np.concatenate([y, penalty @ prior])
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    return Correction(signature, batch, {g: float(c) for g, c in zip(groups, coef[:-1])},
                      float(coef[-1]), len(samples))


def group_name(op: str, cell_kind: str) -> str:
    return f"{op}@{cell_kind}"


# ----------------------------------------------------------------------------- table


@dataclass
class LatencyTable:
    """Measured part latencies per batch size, the machine they were measured on, fitted
    corrections and the validation records of each calibration."""

    fingerprint: dict[str, Any]
    settings: TimingSettings
    entries: dict[int, dict[PartKey, Timing]] = field(default_factory=dict)
    corrections: list[Correction] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)

    def timing(self, key: PartKey, batch: int) -> Timing:
        try:
            return self.entries[batch][key]
        except KeyError:
            raise ConfigError(
                f"latency table has no entry {key.label!r} at batch {batch}; profile this "
                "search space and batch size with `hpo profile --study FILE --batch B`"
            ) from None

    def parts(self, genotype: Genotype, layout: NetworkLayout, batch: int) -> tuple[
        float, dict[str, float]
    ]:
        """(fixed parts in ms, sums in ms per op and cell type) of one architecture."""
        fixed = sum(self.timing(k, batch).median_ms for k in layout.fixed)
        per_group: dict[str, float] = {}
        for slot, key in zip(layout.slots, layout.op_keys(genotype)):
            group = group_name(key.name, slot.cell_kind)
            per_group[group] = per_group.get(group, 0.0) + self.timing(key, batch).median_ms
        return fixed, per_group

    def predict_naive(self, genotype: Genotype, layout: NetworkLayout, batch: int = 1) -> float:
        fixed, per_group = self.parts(genotype, layout, batch)
        return fixed + sum(per_group.values())

    def correction(self, layout: NetworkLayout, batch: int) -> Correction | None:
        for c in self.corrections:
            if c.signature == layout.signature and c.batch == batch:
                return c
        return None

    def predict(self, genotype: Genotype, layout: NetworkLayout, batch: int = 1) -> float:
        """Predicted latency in ms: corrected where a correction was fitted, else naive."""
        fixed, per_group = self.parts(genotype, layout, batch)
        correction = self.correction(layout, batch)
        if correction is None:
            return fixed + sum(per_group.values())
        return correction.apply(fixed, per_group)

    def op_cost_table(self, layout: NetworkLayout, batch: int = 1) -> torch.Tensor:
        """(2, E, k): latency op m adds on edge e, summed over the cells of each type."""
        space = layout.space
        table = torch.zeros(len(CELL_TYPES), space.num_edges, space.num_ops)
        for slot in layout.slots:
            kind = CELL_TYPES.index(slot.cell_kind)
            for m, op in enumerate(space.ops):
                table[kind, slot.edge, m] += self.timing(slot.key(op), batch).median_ms
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "fingerprint": self.fingerprint,
            "settings": asdict(self.settings),
            "entries": [
                {"batch": batch, **asdict(key), "label": key.label, **asdict(t),
                 "spread_ms": t.spread_ms}
                for batch, part in sorted(self.entries.items())
                for key, t in sorted(part.items())
            ],
            "corrections": [asdict(c) for c in self.corrections],
            "validations": self.validations,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: a half-written table never replaces a good one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyTable:
        if data.get("format") != TABLE_FORMAT:
            raise ConfigError(f"latency table format {data.get('format')!r}; this version "
                              f"reads format {TABLE_FORMAT}: profile again with hpo profile")
        key_fields = PartKey.__dataclass_fields__
        timing_fields = Timing.__dataclass_fields__
        entries: dict[int, dict[PartKey, Timing]] = {}
        for row in data["entries"]:
            key = PartKey(**{k: row[k] for k in key_fields})
            timing = Timing(**{k: row[k] for k in timing_fields})
            entries.setdefault(int(row["batch"]), {})[key] = timing
        return cls(
            fingerprint=data["fingerprint"],
            settings=TimingSettings(**data["settings"]),
            entries=entries,
            corrections=[Correction(**c) for c in data.get("corrections", [])],
            validations=list(data.get("validations", [])),
        )

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        try:
            data = json.loads(Path(path).read_text())
            return cls.from_dict(data)
        except FileNotFoundError:
            raise ConfigError(f"latency table {path} not found; measure one with "
                              "`hpo profile --out FILE`") from None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"latency table {path} is malformed ({err!r}); measure it again "
                              "with `hpo profile --out FILE`") from None


def profile_parts(
    layouts: Iterable[NetworkLayout],
    batches: Sequence[int],
    settings: TimingSettings,
) -> LatencyTable:
    """Measure every part of every layout at every batch size."""
    device = resolve_device(settings.device)
    keys = sorted({k for layout in layouts for k in layout.part_keys()})
    table = LatencyTable(fingerprint(settings), settings)
    for batch in batches:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            fns = [part_callable(key, batch, device) for key in keys]
        table.entries[batch] = dict(zip(keys, measure_many(fns, settings)))
    return table


# ----------------------------------------------------------------------------- calibration


def random_genotypes(space: SearchSpace, count: int, seed: int,
                     exclude: Iterable[Genotype] = ()) -> list[Genotype]:
    """``count`` distinct architectures, an op drawn uniformly per edge and cell type, plus
    (first) the one-op architectures that bound the space."""
    rng = np.random.default_rng(seed)
    seen = set(exclude)
    out: list[Genotype] = []

    def add(normal: Sequence[str], reduce: Sequence[str]) -> None:
        genotype = Genotype(tuple(normal), tuple(reduce), space.edges)
        if genotype not in seen and len(out) < count:
            seen.add(genotype)
            out.append(genotype)

    for op in space.ops:
        add([op] * space.num_edges, [op] * space.num_edges)
    attempts = 0
    while len(out) < count and attempts < 100 * count:
        attempts += 1
        picks = rng.integers(space.num_ops, size=(2, space.num_edges))
        add([space.ops[m] for m in picks[0]], [space.ops[m] for m in picks[1]])
    return out


@dataclass(frozen=True)
class LatencyRecord:
    genotype: Genotype
    measured: Timing
    naive_ms: float
    predicted_ms: float


def accuracy_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Rank correlation, share within +-10 %, median and mean relative error (pred/meas - 1)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = p / m - 1
    return {
        "n": len(p),
        "spearman": spearman(p.tolist(), m.tolist()),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "median_abs_error_pct": float(np.median(np.abs(rel)) * 100),
        "mean_error_pct": float(np.mean(rel) * 100),
    }


def calibrate(
    table: LatencyTable,
    layout: NetworkLayout,
    batch: int = 1,
    fit: int = 30,
    validate: int = 60,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure ``fit`` + ``validate`` random architectures end to end; fit the correction on
    the first set, report naive and corrected accuracy on the held-out second set."""
    space, settings = layout.space, table.settings
    fit_set = random_genotypes(space, fit, seed)
    val_set = random_genotypes(space, validate, seed + 1, exclude=fit_set)
    timings = measure_networks(fit_set + val_set, layout, batch, settings)
    measured = dict(zip(fit_set + val_set, timings))
    samples = [(*table.parts(g, layout, batch), measured[g].median_ms) for g in fit_set]
    groups = [group_name(op, kind) for kind in CELL_TYPES for op in space.ops]
    correction = fit_correction(layout.signature, batch, groups, samples)
    table.corrections = [c for c in table.corrections
                         if (c.signature, c.batch) != (layout.signature, batch)]
    table.corrections.append(correction)
    records = [
        LatencyRecord(g, measured[g], table.predict_naive(g, layout, batch),
                      table.predict(g, layout, batch))
        for g in val_set
    ]
    truth = [r.measured.median_ms for r in records]
    report = {
        "signature": layout.signature,
        "batch": batch,
        "fit": len(fit_set),
        "naive": accuracy_stats([r.naive_ms for r in records], truth),
        "corrected": accuracy_stats([r.predicted_ms for r in records], truth),
        "records": [
            {"genotype": r.genotype.to_dict(), "measured_ms": r.measured.median_ms,
             "spread_ms": r.measured.spread_ms, "naive_ms": r.naive_ms,
             "predicted_ms": r.predicted_ms}
            for r in records
        ],
    }
    table.validations = [v for v in table.validations
                         if (v["signature"], v["batch"]) != (layout.signature, batch)]
    table.validations.append(report)
    return report


def agreement(a: LatencyTable, b: LatencyTable) -> dict[str, float]:
    """Repeatability of two tables: the share of shared entries whose medians differ by at
    most the sum of their spreads (their interquartile ranges overlap), the same share
    weighted by latency, and the median and largest relative difference."""
    within, diffs, weights = [], [], []
    for batch, entries in a.entries.items():
        for key, ta in entries.items():
            tb = b.entries.get(batch, {}).get(key)
            if tb is None:
                continue
            within.append(abs(ta.median_ms - tb.median_ms) <= ta.spread_ms + tb.spread_ms)
            diffs.append(abs(ta.median_ms - tb.median_ms) / max(ta.median_ms, 1e-12))
            weights.append(ta.median_ms)
    if not within:
        raise ConfigError("the two latency tables share no entry (different spaces or "
                          "batch sizes); profile the same study twice")
    return {"entries": len(within), "within_spread": float(np.mean(within)),
            "within_spread_by_latency": float(np.average(within, weights=weights)),
            "median_rel_diff_pct": float(np.median(diffs) * 100),
            "max_rel_diff_pct": float(np.max(diffs) * 100)}
