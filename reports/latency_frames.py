"""Report data for a latency table written by ``hpo profile --out FILE``: fingerprint,
parts, and each calibration's held-out networks with naive and corrected predictions.

Read as JSON with numpy and pandas only: never torch (search_core.latency loads it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search_core.errors import ConfigError
from search_core.metrics import spearman

LATENCY_TABLE_FORMAT = 1  # search_core.latency.TABLE_FORMAT (not imported: that loads torch)
FINGERPRINT_FIELDS = ("device", "device_name", "cpu_model", "cores", "threads", "torch",
                      "machine", "hostname")
RECORD_FIELDS = ("measured_ms", "naive_ms", "predicted_ms")
STAT_NAMES = ("n", "spearman", "within_10pct", "median_abs_error_pct", "mean_error_pct")


@dataclass
class LatencyValidation:
    """One calibration of the latency model (one search space at one batch size): the
    held-out networks measured end to end against their naive and corrected predictions."""

    signature: str
    batch: int
    fit: int  # networks the correction was fitted on
    points: pd.DataFrame  # genotype, measured_ms, spread_ms, naive_ms, predicted_ms
    stats: pd.DataFrame  # index: STAT_NAMES; columns: naive, corrected (from the points)
    correction: pd.DataFrame  # term ("scale <op>" or "intercept_ms"), value; empty if none


@dataclass
class LatencyReport:
    """A latency table written by ``hpo profile --out FILE``, read without torch."""

    path: str
    fingerprint: pd.DataFrame  # field, value
    settings: dict[str, Any]
    entries: pd.DataFrame  # one row per measured part and batch size
    validations: list[LatencyValidation]


def prediction_stats(predicted: Any, measured: Any) -> dict[str, float]:
    """Rank correlation, share within +-10 %, median |relative error| % and mean relative
    error % of predictions (pred / measured - 1): the numbers ``hpo profile`` prints."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if not len(p):
        return {"n": 0} | {k: np.nan for k in STAT_NAMES[1:]}
    rel = p / m - 1
    return {"n": len(p), "spearman": spearman(p, m),
            "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "median_abs_error_pct": float(np.median(np.abs(rel)) * 100),
            "mean_error_pct": float(np.mean(rel) * 100)}


def genotype_text(genotype: Any) -> str:
    """``normal: op,op,...; reduce: op,...`` (edges in the space's order) for a genotype
    dict of edge lists; compact JSON for anything else."""
    try:
        return "; ".join(f"{kind}: " + ",".join(edge["op"] for edge in genotype[kind])
                         for kind in ("normal", "reduce"))
    except (KeyError, TypeError):
        return json.dumps(genotype, sort_keys=True, separators=(",", ":"))


def _record_row(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"genotype": genotype_text(record.get("genotype"))}
    row |= {k: float(record[k]) for k in RECORD_FIELDS}
    row["spread_ms"] = float(record.get("spread_ms", np.nan))
    return row


def _correction_frame(correction: dict[str, Any] | None) -> pd.DataFrame:
    if correction is None:
        return pd.DataFrame(columns=["term", "value"])
    rows = [{"term": f"scale {op}", "value": float(v)}
            for op, v in dict(correction["scales"]).items()]
    rows.append({"term": "intercept_ms", "value": float(correction["intercept_ms"])})
    return pd.DataFrame(rows, columns=["term", "value"])


def _validation(raw: dict[str, Any], corrections: list[dict[str, Any]]) -> LatencyValidation:
    columns = ["genotype", *RECORD_FIELDS, "spread_ms"]
    points = pd.DataFrame([_record_row(r) for r in raw["records"]], columns=columns)
    stats = pd.DataFrame({
        kind: prediction_stats(points[col], points["measured_ms"])
        for kind, col in (("naive", "naive_ms"), ("corrected", "predicted_ms"))
    }).reindex(list(STAT_NAMES))
    stats.index.name = "metric"
    signature, batch = str(raw["signature"]), int(raw["batch"])
    correction = next((c for c in corrections
                       if (c["signature"], int(c["batch"])) == (signature, batch)), None)
    return LatencyValidation(signature, batch, int(raw.get("fit", 0)), points, stats,
                             _correction_frame(correction))


def _fingerprint_frame(fingerprint: dict[str, Any]) -> pd.DataFrame:
    keys = [k for k in FINGERPRINT_FIELDS if k in fingerprint]
    keys += [k for k in fingerprint if k not in keys]
    return pd.DataFrame({"field": keys, "value": [str(fingerprint[k]) for k in keys]})


def _parse_latency(raw: Any) -> LatencyReport:
    """KeyError / TypeError / ValueError on a malformed table (``load_latency`` words it)."""
    if not isinstance(raw, dict):
        raise TypeError(f"top level is {type(raw).__name__}, expected an object")
    if raw.get("format") != LATENCY_TABLE_FORMAT:
        raise ValueError(f"format {raw.get('format')!r}, this version reads format "
                         f"{LATENCY_TABLE_FORMAT}")
    entries = pd.DataFrame([dict(e) for e in raw["entries"]])
    missing = [c for c in ("batch", "label", "median_ms") if c not in entries]
    if missing:
        raise KeyError(f"entries lack {', '.join(missing)}")
    corrections = [dict(c) for c in raw.get("corrections", [])]
    return LatencyReport("", _fingerprint_frame(dict(raw["fingerprint"])),
                         dict(raw.get("settings", {})), entries,
                         [_validation(dict(v), corrections) for v in raw.get("validations", [])])


def load_latency(path: str | Path) -> LatencyReport:
    """Read a latency table JSON; ConfigError (one line, naming the file) when it is missing
    or malformed."""
    redo = f"re-run `hpo profile --out {path}`"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"latency table {path} not found; {redo}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"latency table {path} is unreadable ({err}); {redo}") from None
    try:
        report = _parse_latency(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"latency table {path} is malformed ({type(err).__name__}: "
                          f"{detail}); {redo}") from None
    report.path = str(path)
    return report
