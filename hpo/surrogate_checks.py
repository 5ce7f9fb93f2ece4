"""Held-out checks of the table surrogate's seed noise (``hpo table show``): each seed held
out in turn and simulated as a fresh seed, compared with the real one; and the share of
simulated values outside the objective's range."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from hpo.surrogate import (
    BOUNDED_KINDS,
    CHECK_CONFIGS,
    CHECK_FRESH,
    CHECK_SEEDS,
    FRESH_BASE,
    RANGE_DRAWS,
    Param,
    Surrogate,
    Table,
    _seed_model,
    encode,
    objective_kind,
)

BEST_SHARE = 0.25  # the best quarter of configurations: is a good one as noisy as the rest?


def seed_checks(table: Table, fresh: int = CHECK_FRESH, draws: int = RANGE_DRAWS
                ) -> dict[str, Any]:
    """How like a real seed a simulated fresh seed is. With CHECK_SEEDS seeds of
    CHECK_CONFIGS configurations or more, each such seed is held out in turn: the surrogate
    is fitted on the others, ``fresh`` fresh seeds are simulated at the held-out seed's
    configurations, and their deviations from the predicted mean are set beside the real
    seed's deviation from the other seeds' mean (times sqrt(K / (K + 1)), the share of its
    variance that is the seed's own): the spread of a seed's mean deviation (root mean
    square over seeds), the sd and skewness about it, and the share the parameters explain
    (out-of-bag R^2 of a forest), and the sd among the best quarter of configurations (by the
    other seeds' mean: is a good configuration as noisy as the rest?). Then ``draws`` values
    (random configurations of the params' ranges x fresh seeds) of the surrogate of the whole
    table, and how many left the objective's range."""
    counts = table.frame.groupby("seed")["config"].nunique()
    held = [int(s) for s, n in counts.items() if n >= CHECK_CONFIGS]
    checks: dict[str, Any] = {"seeds": {int(s): int(n) for s, n in counts.items()},
                              "held_out": [], "fresh": fresh}
    if len(held) >= CHECK_SEEDS:
        folds = [_held_out_seed(table, seed, fresh) for seed in held]
        checks["held_out"] = held
        checks["folds"] = folds
        checks["real"] = _summary([fold["real"] for fold in folds])
        checks["simulated"] = _summary([s for fold in folds for s in fold["simulated"]])
    return {**checks, **_range_check(table, draws)}


def seed_check_lines(checks: dict[str, Any]) -> list[str]:
    """``hpo.surrogate.seed_checks`` in two or three lines: real vs simulated seeds, and
    how many simulated values left the objective's range."""
    if checks["held_out"]:
        real, simulated = checks["real"], checks["simulated"]
        pairs = ", ".join(f"{label} {real[key]:.3g} / {simulated[key]:.3g}" for label, key in (
            ("mean spread", "mean_spread"), ("sd", "sd"), ("skewness", "skew"),
            ("explained by the params", "explained"),
            ("sd in the best quarter", "best_sd")))
        lines = [f"seed noise, each of seeds {checks['held_out']} held out (real / simulated "
                 f"over {checks['fresh']} fresh seeds): {pairs}"]
    else:
        seeds = ", ".join(f"{s}: {n}" for s, n in checks["seeds"].items())
        lines = [f"seed noise: held-out checks need >= {CHECK_SEEDS} seeds with >= "
                 f"{CHECK_CONFIGS} configurations each (configurations per seed: {seeds})"]
    bounds = checks["range"]
    where = f"outside [{bounds[0]:g}, {bounds[1]:g}]" if bounds else "(unbounded objective)"
    lines.append(f"range: {checks['outside']} of {checks['draws']} simulated values {where} "
                 f"(noise transform: {checks['transform']}; simulated min "
                 f"{checks['simulated_min']:.3g}, max {checks['simulated_max']:.3g})")
    return lines


def _held_out_seed(table: Table, held: int, fresh: int) -> dict[str, Any]:
    frame = table.frame
    surrogate = Surrogate(replace(table, frame=frame[frame["seed"] != held].reset_index(
        drop=True)))
    wide = frame.pivot_table(index="config", columns="seed", values="value")
    others = wide.drop(columns=held)
    k = others.notna().sum(axis=1)
    keep = wide[held].notna() & (k >= 1)
    real = ((wide[held] - others.mean(axis=1)) * np.sqrt(k / (k + 1)))[keep].to_numpy()
    rows = frame.groupby("config")[sorted(table.params)].first().loc[keep[keep].index]
    rows = rows.to_dict("records")
    features, means = encode(rows, table.params), surrogate.predict(rows)
    simulated = [surrogate.values(rows, FRESH_BASE + held * fresh + i) - means
                 for i in range(fresh)]
    ranked = others.mean(axis=1)[keep].to_numpy()  # tables are of maximised objectives
    best = ranked >= np.quantile(ranked, 1 - BEST_SHARE)
    return {"seed": held, "configs": len(rows),
            "real": _deviation_stats(features, real, best),
            "simulated": [_deviation_stats(features, s, best) for s in simulated]}


def _deviation_stats(features: np.ndarray, deviations: np.ndarray, best: np.ndarray
                     ) -> dict[str, float]:
    from scipy import stats

    forest = _seed_model(features, deviations, 0)[0]
    return {"mean": float(np.mean(deviations)), "sd": float(np.std(deviations, ddof=1)),
            "skew": float(stats.skew(deviations)), "explained": float(forest.oob_score_),
            "best_sd": float(np.std(deviations[best], ddof=1))}


def _summary(stats: list[dict[str, float]]) -> dict[str, float]:
    """Over seeds: the root mean square of their mean deviations (their spread about the
    configuration mean) and the averages of sd, skewness and explained share."""
    column = {key: np.array([s[key] for s in stats]) for key in stats[0]}
    return {"mean_spread": float(np.sqrt(np.mean(column["mean"] ** 2))),
            "sd": float(column["sd"].mean()), "skew": float(column["skew"].mean()),
            "skew_spread": float(column["skew"].std()),
            "explained": float(column["explained"].mean()),
            "best_sd": float(column["best_sd"].mean())}


def _range_check(table: Table, draws: int) -> dict[str, Any]:
    """``draws`` values: sqrt(draws) random configurations x as many fresh seeds; how many
    fell outside [0, 1] when the objective's kind is bounded."""
    surrogate = Surrogate(table)
    side = max(1, round(math.sqrt(draws)))
    rows = random_rows(table.params, side, np.random.default_rng(0))
    values = np.concatenate([surrogate.values(rows, FRESH_BASE - 1 - i) for i in range(side)])
    bounded = objective_kind(table) in BOUNDED_KINDS
    outside = int(np.sum((values < 0) | (values > 1))) if bounded else 0
    return {"draws": len(values), "range": (0.0, 1.0) if bounded else None,
            "outside": outside, "transform": "logit" if surrogate.scale.bounded else "none",
            "simulated_min": float(values.min()), "simulated_max": float(values.max())}


def random_rows(params: Mapping[str, Param], count: int, rng: np.random.Generator
                ) -> list[dict[str, Any]]:
    """``count`` configurations drawn uniformly from the params' ranges (log-uniformly on a
    log scale; categoricals uniformly from their choices)."""
    columns = {name: _random_column(param, count, rng) for name, param in params.items()}
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _random_column(param: Param, count: int, rng: np.random.Generator) -> list[Any]:
    if param["type"] == "categorical":
        choices = list(param.get("choices") or ())
        return [choices[i] for i in rng.integers(len(choices), size=count)]
    low, high = float(param["low"]), float(param["high"])
    if param.get("log"):
        numbers = 10 ** rng.uniform(math.log10(low), math.log10(high), size=count)
    else:
        numbers = rng.uniform(low, high, size=count)
    if param["type"] == "int":
        return [int(v) for v in np.clip(np.round(numbers), low, high)]
    return [float(v) for v in numbers]


