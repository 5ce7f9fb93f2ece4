"""The table objective's seed noise: structured by seed (a seed's offset and its deviation's
dependence on the parameters), fresh seeds as new functions, values kept in [0, 1], and the
leave-one-seed-out checks of ``hpo table show``; oracles from synthetic tables whose seeds
are known."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_table import XY_STUDY, write_table

from hpo.study import parse_study
from hpo.surrogate import Surrogate, load_table
from hpo.surrogate_checks import random_rows, seed_check_lines, seed_checks
from hpo.table_file import TABLE_FORMAT
from search_core.configtools import to_plain

pytestmark = pytest.mark.slow  # each fits forests: about a second

OFFSETS = np.array([-0.06, 0.06, 0.03, -0.03, 0.0])  # seed s is this much above the mean ...
SLOPES = np.array([0.3, -0.3, 0.15, -0.15, 0.0])  # ... plus this times (t_end - 0.5)
RESIDUAL_SD = 0.01  # ... plus noise the parameters do not explain
T_END_VAR = 0.99 ** 2 / 12  # t_end is uniform on [0.01, 1]
Deviation = Callable[[int, dict, np.random.Generator], float]


def seeded(seed: int, params: dict, rng: np.random.Generator) -> float:
    """Seed ``seed``'s known deviation from the configuration mean."""
    return (OFFSETS[seed] + SLOPES[seed] * (params["t_end"] - 0.5)
            + rng.normal(0, RESIDUAL_SD))


def middling(params: dict) -> float:
    """A configuration mean well inside [0, 1], where the logit is nearly straight."""
    return 0.5 + 0.1 * np.log10(params["kappa"]) / 2 + 0.05 * (params["schedule"] == "cosine")


def write_seed_table(path: Path, configs: int = 150, seeds: int = 5,
                     mean: Callable[[dict], float] = middling,
                     deviation: Deviation = seeded) -> None:
    """A table in hpo table build's format (seed by seed, as it appends): value = mean(params)
    + deviation(seed, params), kept in [0, 1]; the study's objective is a hypervolume."""
    rng = np.random.default_rng(1)
    spec = parse_study(XY_STUDY)
    design = random_rows(spec.to_dict()["params"], configs, rng)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "source", "seed", "kappa", "schedule", "t_end", "value",
                         "test_value", "seconds", "cpu_seconds", "error"])
        for seed in range(seeds):
            for i, params in enumerate(design):
                value = float(np.clip(mean(params) + deviation(seed, params, rng), 0, 1))
                writer.writerow([i, "sobol", seed, params["kappa"], params["schedule"],
                                 params["t_end"], value, value, 1.0, 10.0, ""])
    path.with_suffix(".json").write_text(json.dumps({
        "format": TABLE_FORMAT, "study_name": "xy", "fingerprint": spec.fingerprint(),
        "study": spec.to_dict(), "directions": ["maximize"],
        "params": {name: to_plain(param) for name, param in spec.params.items()},
        "evaluation": {"threads": 1}, "environment": {"cpu": "x", "cores": 1}}))


@pytest.fixture(scope="module")
def five_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seeds") / "five.csv"
    write_seed_table(path)
    return path


@pytest.fixture(scope="module")
def surrogate(five_seeds: Path) -> Surrogate:
    return Surrogate(load_table(five_seeds))


def deviations(surrogate: Surrogate, seed: int, rows: list[dict]) -> np.ndarray:
    return surrogate.values(rows, seed) - surrogate.predict(rows)


def slope_and_offset(rows: list[dict], deviation: np.ndarray) -> tuple[float, float]:
    """Least squares of the deviation on (t_end - 0.5): slope, intercept."""
    t_end = np.array([row["t_end"] for row in rows]) - 0.5
    slope, offset = np.polyfit(t_end, deviation, 1)
    return float(slope), float(offset)


def test_a_tabulated_seed_keeps_its_offset_and_its_slope(surrogate: Surrogate) -> None:
    """Seed s of the table scores its own offset and slope in t_end above the predicted mean,
    scaled by sqrt(K / (K - 1)) as a deviation from a mean of K seeds is (K = 5); the old
    surrogate drew one pooled deviation for every seed alike (offset and slope 0)."""
    rows = random_rows(surrogate.params, 400, np.random.default_rng(7))
    undo_shrinkage = np.sqrt(5 / 4)
    for seed in range(5):
        slope, offset = slope_and_offset(rows, deviations(surrogate, seed, rows))
        assert offset == pytest.approx(OFFSETS[seed] * undo_shrinkage, abs=0.01)
        assert slope == pytest.approx(SLOPES[seed] * undo_shrinkage, abs=0.05)


def test_fresh_seeds_are_new_functions_with_the_seeds_spread(five_seeds: Path,
                                                            surrogate: Surrogate) -> None:
    """A seed the table lacks is a function of the parameters of its own: fresh seeds differ
    from one another and from the tabulated seeds; their offsets spread and their deviations
    vary (about their offset) about as much as the real seeds'; and each is one function: the
    same trial gives the same value, in a surrogate fitted again too (another process, another
    study of the same table). The old surrogate's fresh seeds had no offset (their mean
    deviations spread 0.004, not 0.05) and no slope."""
    rows = random_rows(surrogate.params, 300, np.random.default_rng(8))
    fresh = {seed: deviations(surrogate, seed, rows) for seed in range(100, 160)}
    tabulated = [deviations(surrogate, seed, rows) for seed in range(5)]
    curves = list(fresh.values())
    for i, curve in enumerate(curves):
        assert all(np.abs(curve - other).max() > 0.02 for other in curves[:i] + tabulated)
    offsets = np.array([curve.mean() for curve in curves])
    assert np.sqrt(np.mean(offsets ** 2)) == pytest.approx(np.std(OFFSETS, ddof=1), rel=0.35)
    true_sd = np.sqrt(np.var(SLOPES, ddof=1) * T_END_VAR + RESIDUAL_SD ** 2)
    assert np.mean([curve.std() for curve in curves]) == pytest.approx(true_sd, rel=0.25)
    slopes = [slope_and_offset(rows, curve)[0] for curve in curves]
    assert np.sqrt(np.mean(np.square(slopes))) == pytest.approx(np.std(SLOPES, ddof=1),
                                                                rel=0.35)
    point = rows[3]
    assert surrogate.value(point, 123) == surrogate.value(dict(point), 123) == pytest.approx(
        fresh[123][3] + surrogate.predict([point])[0])
    again = Surrogate(load_table(five_seeds))
    for seed in (0, 4, 5, 123):
        assert np.array_equal(again.values(rows, seed), surrogate.values(rows, seed))


def near_one(params: dict) -> float:
    return 0.97 + 0.02 * params["t_end"]


def test_values_near_the_top_stay_inside_zero_to_one(tmp_path: Path) -> None:
    """Means of 0.97-0.99 and seed deviations of 0.06 or more: mean + deviation would leave
    [0, 1] (the old surrogate: a quarter of such values above 1); on the logit scale
    none of 10,000 simulated values does, tabulated or fresh seeds."""
    path = tmp_path / "top.csv"
    write_seed_table(path, configs=80, mean=near_one)
    table = load_table(path)
    surrogate = Surrogate(table)
    rows = random_rows(table.params, 100, np.random.default_rng(10))
    values = np.concatenate([surrogate.values(rows, seed) for seed in range(100)])
    assert len(values) == 10_000 and ((values >= 0) & (values <= 1)).all()
    assert values.max() > 0.99 and values.std() > 0.01  # noise squeezed, not removed
    checks = seed_checks(table, fresh=2)
    assert checks["outside"] == 0 and checks["draws"] == 10_000
    assert checks["transform"] == "logit"


def test_seed_checks_set_simulated_seeds_beside_held_out_ones(five_seeds: Path) -> None:
    """Leave-one-seed-out over the five seeds: simulated fresh seeds match the held-out real
    ones in spread of offsets, sd and the share of the deviation the parameters explain (most
    of it, but for seed 4, whose deviation is pure noise); hpo table show says so in a
    line."""
    checks = seed_checks(load_table(five_seeds))
    assert checks["held_out"] == [0, 1, 2, 3, 4] and len(checks["folds"]) == 5
    real, simulated = checks["real"], checks["simulated"]
    assert simulated["sd"] == pytest.approx(real["sd"], rel=0.3)
    assert simulated["mean_spread"] == pytest.approx(real["mean_spread"], rel=0.5)
    assert real["explained"] > 0.6 and simulated["explained"] == pytest.approx(
        real["explained"], abs=0.2)
    assert checks["outside"] == 0
    lines = seed_check_lines(checks)
    assert lines[0].startswith("seed noise, each of seeds [0, 1, 2, 3, 4] held out")
    assert "0 of 10000 simulated values outside [0, 1]" in lines[1]


def quiet(params: dict) -> bool:
    """About a third of the configurations: the good ones, and the less noisy."""
    return params["schedule"] == "cosine" and params["kappa"] > 0.03


def test_the_checks_measure_the_noise_of_the_best_configurations(tmp_path: Path) -> None:
    """Good configurations with seed noise sd 0.01, the rest 0.08: the check of the best
    quarter finds the small sd in the real seeds, beside the overall one."""
    path = tmp_path / "quiet.csv"
    write_seed_table(path, mean=lambda p: 0.75 if quiet(p) else 0.45,
                     deviation=lambda seed, p, rng: rng.normal(0, 0.01 if quiet(p) else 0.08))
    checks = seed_checks(load_table(path), fresh=2)
    real = checks["real"]
    assert real["best_sd"] == pytest.approx(0.01, abs=0.006)
    assert real["sd"] > 0.06
    assert "sd in the best quarter" in seed_check_lines(checks)[0]


def test_a_two_seed_table_of_the_old_format_still_works(tmp_path: Path) -> None:
    """The old tables (two seeds per configuration, seed 1 better on average): the two seeds'
    models are mirror images, fresh seeds take one or the other (plus their own residuals),
    and the held-out checks say they need a third seed."""
    path = tmp_path / "two.csv"
    write_seed_table(path, configs=120, seeds=2)
    table = load_table(path)
    surrogate = Surrogate(table)
    rows = random_rows(table.params, 300, np.random.default_rng(11))
    zero, one = deviations(surrogate, 0, rows), deviations(surrogate, 1, rows)
    assert np.corrcoef(zero, one)[0, 1] < -0.9
    assert one.mean() - zero.mean() == pytest.approx((OFFSETS[1] - OFFSETS[0]) * np.sqrt(2),
                                                     abs=0.02)
    fresh = [deviations(surrogate, seed, rows) for seed in range(100, 110)]
    assert all(abs(np.corrcoef(curve, one)[0, 1]) > 0.9 for curve in fresh)
    checks = seed_checks(table, fresh=2)
    assert checks["held_out"] == [] and checks["outside"] == 0
    assert seed_check_lines(checks)[0].startswith("seed noise: held-out checks need >= 3 seeds")


def test_a_seed_still_being_tabulated_is_treated_as_fresh(tmp_path: Path) -> None:
    """A table built seed by seed and stopped early (two whole seeds and a few evaluations
    of a third): the third seed has too few configurations for a model of its own, so it
    scores as a fresh seed would; the table of test_table's format loads alike."""
    path = tmp_path / "partial.csv"
    write_seed_table(path, configs=60, seeds=3)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + 2 * 60 + 5]))
    surrogate = Surrogate(load_table(path))
    assert sorted(surrogate.noise.functions) == [0, 1]
    old = tmp_path / "old.csv"
    write_table(old, configs=30)
    assert sorted(Surrogate(load_table(old)).noise.functions) == [0, 1]
