"""How well the search's proxy accuracy ranks what ``hpo train`` measured: rank
correlations of proxy vs trained accuracy with bootstrap intervals. numpy, pandas, scipy and
optuna only: never torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from hpo.records import (
    TRAINED_ATTR,
    TrialRecord,
)

BOOTSTRAP = 2000  # resamples of the genotypes for the rank correlations' intervals


@dataclass
class ProxyFidelity:
    """How well a trial's proxy (family accuracy on shared weights) predicts trained test
    accuracy (``hpo train``): one row per distinct genotype, rank correlations with 95 %
    bootstrap intervals (genotypes resampled, seed 0)."""

    trial: int
    recipe: dict[str, Any]
    frame: pd.DataFrame  # labels, proxy_accuracy, test_acc_mean, test_acc_sd, params, ...
    kendall: float
    kendall_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    accuracy_kind: str = "proxy"  # the family accuracy the trial recorded: proxy | finetune


def proxy_fidelity(study: optuna.Study) -> list[ProxyFidelity]:
    """Every ``hpo train`` result recorded in the study whose members have a proxy."""
    found = []
    for key, value in sorted(study.user_attrs.items()):
        if not (key.startswith(TRAINED_ATTR.split("{")[0]) and isinstance(value, dict)):
            continue
        rows = [{"labels": ",".join(m["labels"]), "proxy_accuracy": m["proxy_accuracy"],
                 "test_acc_mean": m["test_acc_mean"], "test_acc_sd": m["test_acc_sd"],
                 "seeds": len(m["seeds"]), "params": m["params"],
                 "cell_params": m["cell_params"], "latency_ms": m.get("latency_ms")}
                for m in value.get("members", []) if m.get("proxy_accuracy") is not None]
        frame = pd.DataFrame(rows)
        kendall, kendall_ci = rank_agreement(frame, "kendall")
        spearman, spearman_ci = rank_agreement(frame, "spearman")
        number = int(value.get("trial", -1))
        found.append(ProxyFidelity(number, value.get("recipe", {}), frame, kendall, kendall_ci,
                                   spearman, spearman_ci, _accuracy_kind(study, number)))
    return found


def _accuracy_kind(study: optuna.Study, number: int) -> str:
    """How trial ``number`` measured its family's accuracy (``probes.accuracy``)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials:
        return "proxy"
    return str(TrialRecord.from_frozen(trials[0]).family_summary.get("accuracy", "proxy"))


def rank_agreement(frame: pd.DataFrame, method: str) -> tuple[float, tuple[float, float]]:
    """Kendall's tau-b or Spearman's rho between proxy and trained accuracy, and its 95 %
    percentile bootstrap interval; NaN where fewer than 3 genotypes or no variation."""
    return rank_correlation(frame["proxy_accuracy"].to_numpy(float),
                            frame["test_acc_mean"].to_numpy(float), method)


def rank_correlation(x: np.ndarray, y: np.ndarray,
                     method: str) -> tuple[float, tuple[float, float]]:
    """Kendall's tau-b (``kendall``) or Spearman's rho of paired values, and its 95 %
    percentile bootstrap interval (``BOOTSTRAP`` resamples of the pairs, seed 0); NaN
    where fewer than 3 pairs or no variation."""
    from scipy import stats

    nan = float("nan")
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return nan, (nan, nan)
    correlate = stats.kendalltau if method == "kendall" else stats.spearmanr

    def value(a: np.ndarray, b: np.ndarray) -> float:
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            return nan
        return float(correlate(a, b)[0])

    rng = np.random.default_rng(0)
    draws = [value(x[i], y[i]) for i in rng.integers(0, len(x), (BOOTSTRAP, len(x)))]
    draws = [d for d in draws if not math.isnan(d)]
    low, high = (np.percentile(draws, [2.5, 97.5]) if draws else (nan, nan))
    return value(x, y), (float(low), float(high))

