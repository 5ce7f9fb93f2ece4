"""Objective kind ``table``: trials answered from a table of the real objective.

In the manner of surrogate benchmarks (YAHPO Gym, HPOBench's surrogates; Syne Tune's
simulated back-end): a random forest (scikit-learn) fitted on the table's configuration means
predicts a configuration's mean value; seed noise is one of the table's own seed deviations
(each deviation from its configuration's mean, scaled by sqrt(K / (K - 1)) to undo the
shrinkage towards a mean of K values), drawn by the trial's seed and parameters, so the same
(configuration, seed) always gives the same value, as a search with a fixed seed does; and a
second forest predicts the evaluation's CPU time (one thread; what it takes on a quiet core,
unlike the wall time, which other jobs on the machine inflate), which the trial records as
its seconds (a simulated clock: ``hpo compare`` on a table runs in seconds and plots
best-so-far against the time the real objective would have taken, one trial after another).

How far to trust it: ``hpo table show`` reports the held-out Spearman and RMSE of the forest
over configurations (k-fold), beside how well one seed's values rank the configurations like
another seed's (the most any model of the mean can be expected to agree with one run).
numpy, pandas, scikit-learn; never torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpo.table_file import read_meta, read_rows
from search_core.errors import ConfigError

Param = Mapping[str, Any]  # a parameter's range as plain data: type, low, high, log, choices
TREES = 100
FOLDS = 5


@dataclass
class Table:
    path: Path
    meta: dict[str, Any]
    frame: pd.DataFrame  # evaluations with a finite value: config, seed, params, value, ...
    failed: int
    params: dict[str, Param]

    @property
    def maximise(self) -> bool:
        return list(self.meta["directions"]) == ["maximize"]


def load_table(path: Path) -> Table:
    """The table at ``path`` (CSV + JSON of hpo table build), checked; one clear line when
    it is missing or unusable."""
    if not path.exists():
        raise ConfigError(f"table {path}: no such file; build it with hpo table build "
                          "--study STUDY --configs N --out PATH (relative paths are from the "
                          "current folder)")
    meta = read_meta(path)
    params = dict(meta["params"])
    frame = pd.DataFrame(read_rows(path))
    if frame.empty:
        raise ConfigError(f"table {path}: no evaluations yet; run hpo table build")
    missing = [c for c in ("config", "seed", "value", "seconds", *params) if c not in frame]
    if missing:
        raise ConfigError(f"table {path}: no column {', '.join(missing)}; rebuild it with "
                          "hpo table build")
    for column in ("config", "seed"):
        frame[column] = _whole_numbers(path, frame[column], column)
    for column in ("value", "test_value", "seconds", "cpu_seconds"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for name, param in params.items():
        frame[name] = _typed(path, frame[name], name, param)
    ok = frame[np.isfinite(frame["value"])].reset_index(drop=True)
    if ok["config"].nunique() < 2:
        raise ConfigError(f"table {path}: {ok['config'].nunique()} configuration(s) with a "
                          "value; a surrogate needs more (run hpo table build further)")
    return Table(path, meta, ok, len(frame) - len(ok), params)


def _refuse_row(path: Path, column: pd.Series, bad: pd.Series, name: str,
                expected: str) -> None:
    """One line naming the first row whose ``name`` is not ``expected``."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfigError(f"table {path}: row {row + 2}: {name} is {str(column.iloc[row])[:40]!r}"
                          f"; expected {expected}; fix that row or rebuild the table")


def _whole_numbers(path: Path, column: pd.Series, name: str) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0)
    _refuse_row(path, column, bad, name, "a whole number >= 0")
    return numbers.astype(int)


def _typed(path: Path, column: pd.Series, name: str, param: Param) -> pd.Series:
    """The parameter's column as its type, every value inside its declared range or
    choices (a row outside them, or not a finite number, is refused in one line)."""
    if param["type"] in ("float", "int"):
        numbers = pd.to_numeric(column, errors="coerce")
        low, high = float(param["low"]), float(param["high"])
        bad = ~np.isfinite(numbers) | (numbers < low) | (numbers > high)
        if param["type"] == "int":
            bad |= numbers != np.round(numbers)
        _refuse_row(path, column, bad, name, f"a {param['type']} in [{low:g}, {high:g}]")
        return numbers.astype(int) if param["type"] == "int" else numbers.astype(float)
    by_text = {str(c): c for c in param.get("choices") or ()}
    _refuse_row(path, column, ~column.astype(str).isin(list(by_text)), name,
                f"one of {', '.join(list(by_text)[:8])}")
    return column.map(lambda v: by_text.get(v, v))


def encode(rows: list[Mapping[str, Any]], params: Mapping[str, Param]) -> np.ndarray:
    """Features: numbers as they are (log10 on a log scale), categoricals one-hot."""
    columns = []
    for name in sorted(params):
        param = params[name]
        values = [row[name] for row in rows]
        if param["type"] == "categorical":
            choices = list(param.get("choices") or ())
            columns += [[float(v == c) for v in values] for c in choices]
        else:
            numbers = np.asarray(values, float)
            columns.append(np.log10(numbers) if param.get("log") else numbers)
    return np.asarray(columns, float).T


def _config_means(frame: pd.DataFrame, params: Mapping[str, Param]) -> pd.DataFrame:
    grouped = frame.groupby("config", sort=True)
    first = grouped[sorted(params)].first()
    return first.assign(value=grouped["value"].mean(), seconds=grouped["cpu_seconds"].mean(),
                        seeds=grouped.size())


def seed_deviations(frame: pd.DataFrame) -> np.ndarray:
    """Each value's deviation from its configuration's mean, times sqrt(K / (K - 1)) (K: the
    configuration's seeds; configurations with one seed give none)."""
    grouped = frame.groupby("config")["value"]
    k = grouped.transform("size").to_numpy(float)
    dev = (frame["value"] - grouped.transform("mean")).to_numpy(float)
    keep = k >= 2
    return dev[keep] * np.sqrt(k[keep] / (k[keep] - 1))


def _forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=TREES, min_samples_leaf=2, random_state=seed,
                                 n_jobs=1)


class Surrogate:
    """The table's objective: predicted mean + a drawn seed deviation; predicted seconds."""

    model = f"random forest, {TREES} trees, on configuration means"

    def __init__(self, table: Table, seed: int = 0) -> None:
        self.params = table.params
        self.maximise = table.maximise
        means = _config_means(table.frame, table.params)
        features = encode(means.to_dict("records"), table.params)
        self.value_model = _forest(seed).fit(features, means["value"].to_numpy())
        self.time_model = _forest(seed).fit(features, np.log(means["seconds"].clip(1e-3)))
        self.deviations = seed_deviations(table.frame)

    def predict(self, rows: list[Mapping[str, Any]]) -> np.ndarray:
        return _forest_predict(self.value_model, encode(rows, self.params))

    def value(self, params: Mapping[str, Any], seed: int) -> float:
        mean = float(self.predict([params])[0])
        if not len(self.deviations):
            return mean
        rng = np.random.default_rng([seed, _stable_hash(params)])
        return mean + float(self.deviations[rng.integers(len(self.deviations))])

    def seconds(self, params: Mapping[str, Any]) -> float:
        return float(np.exp(_forest_predict(self.time_model, encode([params], self.params))[0]))


def _forest_predict(forest: Any, features: np.ndarray) -> np.ndarray:
    """The forest's prediction (the mean over its trees) without joblib's per-call start-up,
    which costs 0.1 s for one row; the same numbers as ``forest.predict``."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    return np.mean([tree.tree_.predict(features)[:, 0] for tree in forest.estimators_],
                   axis=0)


def _stable_hash(params: Mapping[str, Any]) -> int:
    text = json.dumps(dict(params), sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def cross_validate(table: Table, folds: int = FOLDS, seed: int = 0) -> dict[str, Any]:
    """Held-out quality over configurations (k-fold): Spearman and RMSE of the predicted
    mean against the configuration's mean over seeds; and the ceiling set by seed noise:
    Spearman between seed a's and seed b's values (the two lowest seeds) over the
    configurations that have both, and the noise sd."""
    from scipy import stats
    from sklearn.model_selection import KFold

    means = _config_means(table.frame, table.params)
    features = encode(means.to_dict("records"), table.params)
    target = means["value"].to_numpy()
    folds = max(2, min(folds, len(means)))
    predicted = np.empty_like(target)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(features):
        predicted[test] = _forest(seed).fit(features[train], target[train]).predict(
            features[test])
    seeds = sorted(table.frame["seed"].unique())
    seed_rho = math.nan
    if len(seeds) >= 2:
        wide = table.frame.pivot_table(index="config", columns="seed", values="value").dropna(
            subset=seeds[:2])
        if len(wide) >= 3:
            seed_rho = float(stats.spearmanr(wide[seeds[0]], wide[seeds[1]]).statistic)
    deviations = seed_deviations(table.frame)
    return {"model": Surrogate.model, "folds": folds, "configs": len(means),
            "spearman": float(stats.spearmanr(predicted, target).statistic),
            "rmse": float(np.sqrt(np.mean((predicted - target) ** 2))),
            "value_sd": float(np.std(target, ddof=1)),
            "seed_spearman": seed_rho,
            "noise_sd": float(np.sqrt(np.mean(deviations ** 2))) if len(deviations) else 0.0}


@functools.lru_cache(maxsize=4)
def _surrogate(path: str, stamp: tuple[int, int]) -> Surrogate:
    return Surrogate(load_table(Path(path)))


def surrogate_for(path: str | None) -> Surrogate:
    """The fitted surrogate of the table at ``path``, fitted once per process (and again
    when the file changes)."""
    if not path:
        raise ConfigError("objective.path: a table objective needs the table's path, e.g. "
                          "{kind: table, path: tables/digits-compare.csv}")
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        load_table(resolved)  # raises the one-line error
        raise
    return _surrogate(str(resolved), (stat.st_mtime_ns, stat.st_size))


def check_table(path: str | None, param_names: Collection[str]) -> None:
    """The table exists, is of a maximised objective, and has exactly the study's params
    (read from the table without fitting its surrogate: a study file is checked fast)."""
    if not path:
        surrogate_for(path)  # raises the one-line error
    surrogate = load_table(Path(str(path)).resolve())
    table_params = sorted(surrogate.params)
    if sorted(param_names) != table_params:
        raise ConfigError(f"params: the table {path} varies {table_params}; the study "
                          f"must tune exactly those, got {sorted(param_names)}")
    if not surrogate.maximise:
        raise ConfigError(f"objective.path: {path} tabulates a minimised objective; "
                          "table objectives are maximised")
