"""Objective kind ``table``: trials answered from a table of the real objective.

In the manner of surrogate benchmarks (YAHPO Gym, HPOBench's surrogates; Syne Tune's
simulated back-end): a random forest (scikit-learn) fitted on the table's configuration means
predicts a configuration's mean value (``predict``: what a configuration is worth); a second
forest predicts the evaluation's CPU time (one thread; what it takes on a quiet core, unlike
the wall time, which other jobs on the machine inflate), which the trial records as its
seconds (a simulated clock: ``hpo compare`` on a table runs in seconds and plots best-so-far
against the time the real objective would have taken, one trial after another).

Seed noise is structured by seed, as the real noise is (``SeedNoise``): a training seed's
deviation from the configuration mean is partly a function of the parameters (and a seed can
be better than another on average), so each tabulated seed gets a smooth model of its
deviation given the parameters plus the residuals that model leaves; a seed the table lacks
(a fresh seed) gets its own random combination of the tabulated seeds' models, so fresh seeds
are different functions with the tabulated seeds' spread. The same (configuration, seed)
always gives the same value, as a search with a fixed seed does. A bounded objective
(hypervolume, probe accuracy: [0, 1]) gets its noise on the logit scale (``ValueScale``), so
no simulated value leaves its range. ``seed_checks`` holds each seed out in turn and compares
what the surrogate simulates for a fresh seed with the real held-out seed.

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
import warnings
from collections.abc import Collection, Mapping, Sequence
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
BOUNDED_KINDS = frozenset({"hypervolume", "probe_accuracy"})  # objectives valued in [0, 1]
EDGE = 1e-3  # a bounded value is read as at least this far inside its range before the logit
SEED_TREES = 50
SEED_LEAF = 10  # a seed's deviation is about half noise: leaves this large keep its model smooth
MIN_SEED_CONFIGS = 10  # configurations (with >= 2 seeds) a seed needs for a model of its own
FRESH_SPREAD = 1.0  # how far a fresh seed's combination strays from the tabulated seed it starts at
WEIGHTS_STREAM = 0x5EED  # separates a fresh seed's weights from its residual draws
CHECK_SEEDS = 3  # leave-one-seed-out needs this many seeds ...
CHECK_CONFIGS = 20  # ... with this many configurations each
CHECK_FRESH = 8  # fresh seeds simulated per held-out seed
RANGE_DRAWS = 10_000
FRESH_BASE = 1_000_000  # seed numbers of the checks' fresh seeds: far from any tabulated seed


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
    deviations = _corrected_deviations(frame, frame["value"].to_numpy(float))
    return deviations[np.isfinite(deviations)]


def _corrected_deviations(frame: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Row by row: ``values`` minus its configuration's mean, times sqrt(K / (K - 1)), which
    undoes the shrinkage towards a mean of K values (the deviation from the mean over all
    seeds has that much more variance); NaN where the configuration has one seed."""
    grouped = pd.Series(values).groupby(frame["config"].to_numpy())
    k = grouped.transform("size").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(k >= 2, np.sqrt(k / (k - 1)), np.nan)
    return (values - grouped.transform("mean").to_numpy(float)) * scale


def _forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=TREES, min_samples_leaf=2, random_state=seed,
                                 n_jobs=1)


@dataclass(frozen=True)
class ValueScale:
    """Where seed noise is added. A bounded objective's values go through the logit (read at
    least EDGE inside [0, 1]): mean + deviation is added there and mapped back, so no value
    leaves (0, 1), and a deviation shrinks near a bound, as a bounded metric's real noise
    must; clipping instead would pile values up on the bound. The price: over seeds, a value
    averages slightly off the predicted mean (second order in the noise: about 0.003 at a
    mean of 0.6 with the digits tables' noise). Other objectives are unbounded: as they are."""

    bounded: bool

    def to_noise(self, values: np.ndarray) -> np.ndarray:
        if not self.bounded:
            return np.asarray(values, float)
        inside = np.clip(np.asarray(values, float), EDGE, 1 - EDGE)
        return np.log(inside / (1 - inside))

    def from_noise(self, scaled: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-scaled)) if self.bounded else scaled


def objective_kind(table: Table) -> str | None:
    return (table.meta.get("study") or {}).get("objective", {}).get("kind")


def value_scale(table: Table) -> ValueScale:
    """Bounded when the tabulated objective's kind is (BOUNDED_KINDS) and the table's values
    keep to [0, 1]; a table whose values leave it (a synthetic one) is left as it is rather
    than distorted."""
    values = table.frame["value"]
    inside = bool(((values >= 0) & (values <= 1)).all())
    return ValueScale(objective_kind(table) in BOUNDED_KINDS and inside)


@dataclass
class SeedNoise:
    """A seed's deviation from the configuration mean (on the ``ValueScale``'s scale).

    A tabulated seed with a model (``functions``; MIN_SEED_CONFIGS configurations that have
    another seed too): its model's deviation at the parameters plus one of its own residuals
    (what the parameters leave). Any other seed is fresh: a centred combination of the
    models (``fresh_weights``, drawn from the seed alone, so a fresh seed is one function of
    the parameters) plus a residual from all seeds' pool. Residual draws hash (seed,
    parameters): the same trial gives the same value. With fewer than two models (too few
    seeds yet) every seed is fresh and draws from ``pooled``, the corrected deviations."""

    functions: dict[int, Any]
    residuals: dict[int, np.ndarray]
    pooled: np.ndarray
    fresh_spread: float = FRESH_SPREAD

    def deviations(self, features: np.ndarray, seed: int, keys: Sequence[int]) -> np.ndarray:
        if seed in self.functions:
            smooth, pool = _forest_predict(self.functions[seed], features), self.residuals[seed]
        else:
            smooth, pool = self.fresh_function(features, seed), self.pooled
        if not len(pool):
            return smooth
        picks = [np.random.default_rng([seed, key]).integers(len(pool)) for key in keys]
        return smooth + pool[picks]

    def fresh_function(self, features: np.ndarray, seed: int) -> np.ndarray:
        if not self.functions:
            return np.zeros(len(features))
        weights = fresh_weights(seed, len(self.functions), self.fresh_spread)
        models = [_forest_predict(f, features) for f in self.functions.values()]
        return weights @ np.asarray(models)


def fresh_weights(seed: int, count: int, spread: float = FRESH_SPREAD) -> np.ndarray:
    """A fresh seed's weights on the ``count`` tabulated seeds' models: one seed picked at
    random, pushed off it by ``spread`` times a random direction, centred (the tabulated
    deviations sum to zero over seeds at a configuration, so only a centred combination is a
    seed's deviation rather than a multiple of the mean's error) and scaled to norm
    sqrt((K - 1) / K): if seeds' deviations are independent draws of one random function, the
    combination then has the variance of one seed (the models are of deviations already
    scaled by sqrt(K / (K - 1))), and its average (the seed's offset) the seeds' spread.
    Starting from a picked seed keeps much of a seed's own shape (skewness), which a
    direction uniform on the sphere (``spread`` large) averages away. With two seeds the
    only such combinations are the two mirror-image models."""
    rng = np.random.default_rng([seed, WEIGHTS_STREAM])
    direction = np.zeros(count)
    direction[rng.integers(count)] = 1.0
    direction += spread * rng.normal(size=count) / math.sqrt(count)
    centred = direction - direction.mean()
    return centred * math.sqrt((count - 1) / count) / np.linalg.norm(centred)


def fit_seed_noise(table: Table, scale: ValueScale, seed: int = 0) -> SeedNoise:
    """Each seed's deviation model and residuals (``SeedNoise``), fitted on the
    configurations that have that seed and at least one more."""
    frame = table.frame
    deviations = _corrected_deviations(frame, scale.to_noise(frame["value"].to_numpy(float)))
    shared = frame[np.isfinite(deviations)]
    functions, residuals = {}, {}
    for tabulated, rows in shared.groupby("seed", sort=True):
        if len(rows) >= MIN_SEED_CONFIGS:
            features = encode(rows.to_dict("records"), table.params)
            functions[int(tabulated)], residuals[int(tabulated)] = _seed_model(
                features, deviations[rows.index.to_numpy()], seed)
    if len(functions) < 2:
        return SeedNoise({}, {}, deviations[np.isfinite(deviations)])
    return SeedNoise(functions, residuals, np.concatenate(list(residuals.values())))


def _seed_model(features: np.ndarray, deviations: np.ndarray, seed: int
                ) -> tuple[Any, np.ndarray]:
    """A smooth forest of one seed's deviation given the parameters, and its out-of-bag
    residuals: a forest's in-sample residuals are too small (it partly fits the noise), and
    function + residual would then vary less than the seed does at configurations the table
    lacks, which are what a search asks for."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=SEED_TREES, min_samples_leaf=SEED_LEAF,
                                   oob_score=True, random_state=seed, n_jobs=1)
    with warnings.catch_warnings():  # a configuration in every bootstrap sample: its fit
        warnings.simplefilter("ignore", UserWarning)
        forest.fit(features, deviations)
    out_of_bag = np.asarray(forest.oob_prediction_, float).reshape(-1)
    predicted = np.where(np.isfinite(out_of_bag), out_of_bag, _forest_predict(forest, features))
    return forest, deviations - predicted


class Surrogate:
    """The table's objective: predicted mean + the seed's deviation (``SeedNoise``, on the
    ``ValueScale``); predicted seconds."""

    model = f"random forest, {TREES} trees, on configuration means"

    def __init__(self, table: Table, seed: int = 0) -> None:
        self.params = table.params
        self.maximise = table.maximise
        means = _config_means(table.frame, table.params)
        features = encode(means.to_dict("records"), table.params)
        self.value_model = _forest(seed).fit(features, means["value"].to_numpy())
        self.time_model = _forest(seed).fit(features, np.log(means["seconds"].clip(1e-3)))
        self.scale = value_scale(table)
        self.noise = fit_seed_noise(table, self.scale, seed)

    def predict(self, rows: list[Mapping[str, Any]]) -> np.ndarray:
        return _forest_predict(self.value_model, encode(rows, self.params))

    def values(self, rows: list[Mapping[str, Any]], seed: int) -> np.ndarray:
        """What seed ``seed`` scores at each configuration of ``rows`` (one seed, many
        configurations at once: the held-out checks ask thousands)."""
        features = encode(rows, self.params)
        means = self.scale.to_noise(_forest_predict(self.value_model, features))
        keys = [_stable_hash(row) for row in rows]
        return self.scale.from_noise(means + self.noise.deviations(features, seed, keys))

    def value(self, params: Mapping[str, Any], seed: int) -> float:
        return float(self.values([params], seed)[0])

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
