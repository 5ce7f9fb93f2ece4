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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search_core.config import CELL_TYPES, SearchSpace
from search_core.errors import ConfigError
from search_core.genotype import Genotype
from search_core.metrics import spearman
from search_core.network_parts import NetworkLayout, PartKey, part_callable
from search_core.timing import (
    Timing,
    TimingSettings,
    fingerprint,
    measure_many,
    measure_networks,
    resolve_device,
)

TABLE_FORMAT = 1


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
