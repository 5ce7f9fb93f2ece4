"""The numerical core: interpolation weights, complexity cost, temperature schedules,
reference-point placements, simplex projection, family metrics and Gumbel-Softmax."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

from search_core.costs import complexity_cost
from search_core.errors import ConfigError
from search_core.hypernet import HyperNet, project_to_simplex
from search_core.metrics import hypervolume_2d, pareto_front, rankdata, spearman
from search_core.placements import das_dennis, dirichlet, lattice, place, vertices
from search_core.schedules import SCHEDULES, progress, temperature
from search_core.supernet import gumbel_softmax

# ---------------------------------------------------------------- hypernetwork weights


def _hypernet(points: np.ndarray, bandwidth: float, num_edges: int = 3) -> HyperNet:
    torch.manual_seed(0)
    return HyperNet(points, num_edges=num_edges, bandwidth=bandwidth, init_scale=1.0)


def _random_simplex(n: int, k: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.dirichlet(np.ones(k), size=n), dtype=torch.float32)


def test_mixing_weights_nonnegative_and_sum_to_one_single_and_batched():
    net = _hypernet(place("lattice", 3, None, 0), bandwidth=0.3)
    s = _random_simplex(16, 3, seed=1)
    batched = net.mixing_weights(s)
    assert batched.shape == (16, 6)
    assert bool((batched >= 0).all())
    torch.testing.assert_close(batched.sum(-1), torch.ones(16))
    for row, s_row in zip(batched, s):
        single = net.mixing_weights(s_row)
        assert single.shape == (6,)
        assert bool((single >= 0).all())
        assert float(single.sum()) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(single, row)


def test_mixing_weights_match_hand_formula():
    """w_r(s) = exp(-||s - r||^2 / h) / sum_q exp(-||s - q||^2 / h), computed by hand."""
    points = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    h = 0.7
    net = _hypernet(points, bandwidth=h)
    s = [0.6, 0.1, 0.3]
    raw = [math.exp(-sum((a - b) ** 2 for a, b in zip(s, p)) / h) for p in points.tolist()]
    expected = [r / sum(raw) for r in raw]
    got = net.mixing_weights(torch.tensor(s)).tolist()
    assert got == pytest.approx(expected, abs=1e-6)


def test_alpha_reproduces_reference_table_at_reference_point_with_tiny_bandwidth():
    points = vertices(3, None, np.random.default_rng(0))
    net = _hypernet(points, bandwidth=1e-4)
    for r, point in enumerate(points):
        s = torch.as_tensor(point, dtype=torch.float32)
        weights = net.mixing_weights(s)
        assert float(weights[r]) == pytest.approx(1.0, abs=1e-6)
        alpha = net(s)
        assert alpha.shape == net.logits.shape[1:]
        torch.testing.assert_close(alpha, net.logits[r].detach(), atol=1e-5, rtol=0)


def test_alpha_is_weighted_sum_of_reference_tables():
    net = _hypernet(place("lattice", 3, None, 0), bandwidth=0.5)
    s = _random_simplex(4, 3, seed=3)
    alpha = net(s)
    assert alpha.shape == (4, 2, 3, 3)
    w = net.mixing_weights(s)
    for b in range(4):
        expected = sum(w[b, r] * net.logits[r] for r in range(net.logits.shape[0]))
        torch.testing.assert_close(alpha[b], expected)


def test_nearest_reference_point_gets_largest_weight():
    """The sign check: the reference code's +||.||^2 favours the farthest point."""
    points = vertices(3, None, np.random.default_rng(0))  # e1, e2, e3, centroid
    net = _hypernet(points, bandwidth=1.0)
    near_vertex = torch.tensor([0.9, 0.05, 0.05])
    w = net.mixing_weights(near_vertex)
    assert int(w.argmax()) == 0
    assert int(w.argmin()) in (1, 2)  # the far vertices get the least weight
    near_centroid = torch.tensor([0.34, 0.33, 0.33])
    assert int(net.mixing_weights(near_centroid).argmax()) == 3
    s = _random_simplex(200, 3, seed=5)
    dist = torch.cdist(s, torch.as_tensor(points, dtype=torch.float32))
    assert torch.equal(net.mixing_weights(s).argmax(-1), dist.argmin(-1))


# ---------------------------------------------------------------- complexity cost

ALPHA = [  # (2 cell types, 2 edges, 3 ops)
    [[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]],
    [[1.5, 1.0, -0.5], [-2.0, 0.1, 0.4]],
]
S = [0.2, 0.5, 0.3]


def _softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(a / t) for a in row]
    return [e / sum(exps) for e in exps]


def _hand_cost(alpha, s, t, costs) -> float:
    """sum over cells, edges and ops of softmax(alpha/t)_m s_m c_m, divided by 2E."""
    total, edges = 0.0, 0
    for c, cell in enumerate(alpha):
        for e, row in enumerate(cell):
            gamma = _softmax(row, t)
            for m in range(len(row)):
                cm = costs(c, e, m)
                total += gamma[m] * s[m] * cm
            edges += 1
    return total / edges


def test_complexity_cost_with_temperature_matches_hand_computation():
    got = complexity_cost(torch.tensor(ALPHA), torch.tensor(S), temperature=0.5)
    assert float(got) == pytest.approx(_hand_cost(ALPHA, S, 0.5, lambda c, e, m: 1.0), abs=1e-6)


def test_complexity_cost_without_temperature_uses_softmax_alpha():
    got = complexity_cost(torch.tensor(ALPHA), torch.tensor(S), temperature=None)
    expected = _hand_cost(ALPHA, S, 1.0, lambda c, e, m: 1.0)
    assert float(got) == pytest.approx(expected, abs=1e-6)
    # and the temperature really matters: t = 0.5 gives a different value
    assert expected != pytest.approx(_hand_cost(ALPHA, S, 0.5, lambda c, e, m: 1.0), abs=1e-3)


def test_complexity_cost_with_per_op_costs():
    c = [1.0, 0.0, 4.0]
    got = complexity_cost(torch.tensor(ALPHA), torch.tensor(S), 0.8, torch.tensor(c))
    expected = _hand_cost(ALPHA, S, 0.8, lambda cell, e, m: c[m])
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_complexity_cost_with_per_edge_costs():
    c = [
        [[1.0, 2.0, 3.0], [0.5, 0.0, 7.0]],
        [[2.0, 0.1, 1.0], [3.0, 3.0, 0.2]],
    ]
    got = complexity_cost(torch.tensor(ALPHA), torch.tensor(S), 0.8, torch.tensor(c))
    expected = _hand_cost(ALPHA, S, 0.8, lambda cell, e, m: c[cell][e][m])
    assert float(got) == pytest.approx(expected, abs=1e-6)


def test_complexity_cost_is_differentiable_in_alpha():
    alpha = torch.tensor(ALPHA, requires_grad=True)
    complexity_cost(alpha, torch.tensor(S), 0.5).backward()
    assert alpha.grad is not None
    # raising the logit of the most penalised op (s=0.5, index 1) must raise the cost
    assert bool((alpha.grad[..., 1] > 0).all())


# ---------------------------------------------------------------- temperature schedules

ANNEALING = ("linear", "exponential", "cosine")


@pytest.mark.parametrize("name", ANNEALING)
def test_schedule_endpoints_range_and_monotone(name):
    t_start, t_end = 1.0, 0.2
    assert temperature(name, t_start, t_end, 0.0) == pytest.approx(t_start)
    assert temperature(name, t_start, t_end, 1.0) == pytest.approx(t_end)
    grid = [temperature(name, t_start, t_end, p) for p in np.linspace(0, 1, 101)]
    assert all(t_end - 1e-12 <= t <= t_start + 1e-12 for t in grid)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(grid))
    assert grid[0] > grid[-1]
    # progress outside [0, 1] is clipped: never below t_end (never 0 or negative)
    assert temperature(name, t_start, t_end, 5.0) == pytest.approx(t_end)
    assert temperature(name, t_start, t_end, -1.0) == pytest.approx(t_start)


def test_schedule_midpoints():
    assert temperature("linear", 1.0, 0.2, 0.5) == pytest.approx(0.6)
    assert temperature("exponential", 1.0, 0.25, 0.5) == pytest.approx(0.5)  # geometric mean
    assert temperature("cosine", 1.0, 0.2, 0.5) == pytest.approx(0.6)
    assert temperature("cosine", 1.0, 0.2, 0.25) == pytest.approx(0.2 + 0.8 * (1 + 0.5**0.5) / 2)
    assert temperature("constant", 0.7, 0.2, 0.9) == pytest.approx(0.7)
    assert set(ANNEALING) | {"constant"} <= set(SCHEDULES.names())


def test_progress():
    assert progress(0, 5) == 0.0
    assert progress(4, 5) == 1.0
    assert progress(2, 5) == pytest.approx(0.5)
    assert progress(0, 1) == 0.0
    assert [progress(i, 3) for i in range(3)] == [0.0, 0.5, 1.0]


# ---------------------------------------------------------------- placements


def _on_simplex(points: np.ndarray) -> bool:
    return bool((points >= -1e-12).all()) and np.allclose(points.sum(1), 1.0)


def test_vertices_placement_is_eye_plus_centroid():
    for k in (2, 3, 5):
        points = place("vertices", k, None, seed=0)
        expected = np.vstack([np.eye(k), np.full((1, k), 1.0 / k)])
        np.testing.assert_array_equal(points, expected)
        np.testing.assert_array_equal(place("vertices", k, k + 1, seed=3), expected)


def test_vertices_with_wrong_num_refs_is_config_error():
    with pytest.raises(ConfigError, match="num_refs"):
        place("vertices", 3, 5, seed=0)
    with pytest.raises(ConfigError, match="num_refs"):
        vertices(3, 2, np.random.default_rng(0))


@pytest.mark.parametrize(("k", "divisions"), [(2, 1), (2, 4), (3, 1), (3, 2), (3, 4), (4, 3)])
def test_das_dennis_lattice_counts_and_rows(k, divisions):
    points = das_dennis(k, divisions)
    assert points.shape == (math.comb(divisions + k - 1, k - 1), k)
    assert _on_simplex(points)
    assert len({tuple(row) for row in points.tolist()}) == len(points)
    # every coordinate is a multiple of 1/H
    np.testing.assert_allclose(points * divisions, np.round(points * divisions), atol=1e-9)
    # and it is the full lattice: brute-force enumeration gives the same set
    brute = {
        c for c in itertools.product(range(divisions + 1), repeat=k) if sum(c) == divisions
    }
    assert {tuple(round(v * divisions) for v in row) for row in points} == brute


@pytest.mark.parametrize(("k", "m"), [(3, 4), (3, 5), (4, 7), (3, 8)])
def test_lattice_with_in_between_count_returns_m_distinct_simplex_points(k, m):
    points = lattice(k, m, np.random.default_rng(0))
    assert points.shape == (m, k)
    assert _on_simplex(points)
    assert len({tuple(row) for row in points.tolist()}) == m
    # the vertices come first in farthest-point selection
    for vertex in np.eye(k).tolist():
        assert vertex in points.tolist()
    # deterministic: independent of the generator
    np.testing.assert_array_equal(points, lattice(k, m, np.random.default_rng(99)))


def test_lattice_default_is_das_dennis_two_divisions():
    np.testing.assert_array_equal(place("lattice", 3, None, 0), das_dennis(3, 2))


def test_dirichlet_placement_is_seeded():
    a = place("dirichlet", 3, 6, seed=7)
    b = place("dirichlet", 3, 6, seed=7)
    c = place("dirichlet", 3, 6, seed=8)
    assert a.shape == (6, 3)
    assert _on_simplex(a)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert dirichlet(4, None, np.random.default_rng(0)).shape == (5, 4)


# ---------------------------------------------------------------- simplex projection


def _slsqp_projection(v: np.ndarray) -> np.ndarray:
    k = len(v)
    res = scipy.optimize.minimize(
        lambda x: float(((x - v) ** 2).sum()),
        np.full(k, 1.0 / k),
        jac=lambda x: 2 * (x - v),
        bounds=[(0.0, None)] * k,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert res.success
    return res.x


def test_project_to_simplex_outputs_lie_on_simplex():
    torch.manual_seed(0)
    v = 3 * torch.randn(50, 4, dtype=torch.float64)
    p = project_to_simplex(v)
    assert p.shape == v.shape
    assert bool((p >= 0).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(50, dtype=torch.float64))


def test_project_to_simplex_leaves_simplex_points_unchanged():
    s = torch.as_tensor(np.random.default_rng(2).dirichlet(np.ones(4), size=20))
    torch.testing.assert_close(project_to_simplex(s), s, atol=1e-12, rtol=0)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(project_to_simplex(eye), eye, atol=0, rtol=0)


def test_project_to_simplex_matches_brute_force_oracle():
    rng = np.random.default_rng(0)
    vectors = [rng.normal(0, 2, size=k) for k in (3, 3, 3, 4, 5)]
    vectors += [np.array([5.0, -1.0, 0.2]), np.array([0.4, 0.4, 0.4]), np.array([-3.0, -3.0, 1.0])]
    for v in vectors:
        p = project_to_simplex(torch.tensor(v, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(p, _slsqp_projection(v), atol=1e-5)
        # optimality certificate: (v - p) . (y - p) <= 0 for every vertex y of the simplex
        residual = v - p
        assert residual.max() <= residual @ p + 1e-9
    # a fine grid for k = 3 never beats the projection
    v = np.array([0.9, 0.6, -0.4])
    p = project_to_simplex(torch.tensor(v, dtype=torch.float64)).numpy()
    n = 300
    grid = np.array([(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)]) / n
    assert ((p - v) ** 2).sum() <= ((grid - v) ** 2).sum(1).min() + 1e-12
    np.testing.assert_allclose(p, [0.65, 0.35, 0.0], atol=1e-12)


# ---------------------------------------------------------------- family metrics


def test_pareto_front_hand_example():
    acc = [0.9, 0.8, 0.9, 0.7, 0.95, 0.8]
    cx = [10, 5, 10, 5, 20, 12]
    # 2 duplicates 0; 3 is dominated by 1 (same cost, worse); 5 by 0 (cheaper and better)
    assert pareto_front(acc, cx) == [1, 0, 4]
    assert pareto_front([0.5], [3]) == [0]
    assert pareto_front([0.5, 0.5], [3, 3]) == [0]


def test_hypervolume_2d_hand_computed_areas():
    ref = (0.0, 10.0)
    # one point: box [2, 10] x [0, 0.5]
    assert hypervolume_2d([0.5], [2.0], ref) == pytest.approx(8 * 0.5 / 10)
    # staircase: [1,2]x0.3 + [2,6]x0.5 + [6,10]x0.8
    acc, cx = [0.3, 0.5, 0.8], [1.0, 2.0, 6.0]
    assert hypervolume_2d(acc, cx, ref) == pytest.approx((0.3 + 2.0 + 3.2) / 10)
    # order does not matter and a dominated point adds nothing
    assert hypervolume_2d([0.8, 0.3, 0.4, 0.5], [6.0, 1.0, 7.0, 2.0], ref) == pytest.approx(0.55)
    # a reference accuracy above 0 shrinks the box: (4*0.3 + 4*0.6) / (10*0.8)
    assert hypervolume_2d([0.5, 0.8], [2.0, 6.0], (0.2, 10.0)) == pytest.approx(3.6 / 8)


def test_hypervolume_2d_normalisation_and_points_outside_box():
    assert hypervolume_2d([1.0], [0.0], (0.0, 5.0)) == pytest.approx(1.0)
    assert hypervolume_2d([1.0], [0.0], (0.3, 123.0)) == pytest.approx(1.0)
    assert hypervolume_2d([0.9], [10.0], (0.0, 10.0)) == 0.0  # complexity at the reference
    assert hypervolume_2d([0.9], [12.0], (0.0, 10.0)) == 0.0  # heavier than the reference
    assert hypervolume_2d([0.2], [1.0], (0.3, 10.0)) == 0.0  # worse than reference accuracy
    assert hypervolume_2d([], [], (0.0, 10.0)) == 0.0
    with pytest.raises(ValueError):
        hypervolume_2d([0.5], [1.0], (0.0, 0.0))


@pytest.mark.parametrize(
    "values",
    [[3.0, 1.0, 2.0], [1.0, 2.0, 2.0, 3.0, 1.0], [5.0, 5.0, 5.0, 1.0], [0.1, -2.0, 7.0, 0.1]],
)
def test_rankdata_matches_scipy(values):
    np.testing.assert_allclose(rankdata(values), scipy.stats.rankdata(values, method="average"))


def test_spearman_matches_scipy_including_ties():
    rng = np.random.default_rng(0)
    cases = [
        ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
        ([1, 1, 2, 2, 3, 3], [3, 1, 2, 2, 1, 0]),
        ([0.1, 0.5, 0.5, 0.9], [4, 4, 1, 0]),
        (rng.normal(size=20).tolist(), rng.integers(0, 4, size=20).tolist()),
    ]
    for a, b in cases:
        expected = scipy.stats.spearmanr(a, b).statistic
        assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_of_constant_is_nan():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    assert math.isnan(spearman([1], [2]))


# ---------------------------------------------------------------- Gumbel-Softmax


def _alpha(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(seed))


def test_gumbel_softmax_rows_sum_to_one():
    sample = gumbel_softmax(_alpha(), 0.7, torch.Generator().manual_seed(1))
    assert sample.shape == (2, 5, 3)
    assert bool((sample >= 0).all())
    torch.testing.assert_close(sample.sum(-1), torch.ones(2, 5))


def test_gumbel_softmax_same_seed_identical_different_seed_differs():
    a = gumbel_softmax(_alpha(), 1.0, torch.Generator().manual_seed(3))
    b = gumbel_softmax(_alpha(), 1.0, torch.Generator().manual_seed(3))
    c = gumbel_softmax(_alpha(), 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_gumbel_softmax_low_temperature_is_near_one_hot():
    alpha = _alpha()
    peaks = [
        float(gumbel_softmax(alpha, t, torch.Generator().manual_seed(5), 2000).max(-1)[0].mean())
        for t in (1.0, 0.3, 0.1, 0.01)
    ]
    assert peaks == sorted(peaks)  # sharper as t falls
    assert peaks[0] < 0.9
    sample = gumbel_softmax(alpha, 1e-5, torch.Generator().manual_seed(5))
    assert bool((sample.max(-1).values > 0.999).all())
    # high temperature flattens towards uniform
    flat = gumbel_softmax(_alpha(), 1e4, torch.Generator().manual_seed(5))
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 3), atol=1e-3, rtol=0)


def test_gumbel_softmax_per_example_shape():
    alpha = _alpha()
    sample = gumbel_softmax(alpha, 0.5, torch.Generator().manual_seed(0), samples=4)
    assert sample.shape == (2, 5, 4, 3)
    torch.testing.assert_close(sample.sum(-1), torch.ones(2, 5, 4))
    # each example has its own noise
    assert not torch.allclose(sample[:, :, 0], sample[:, :, 1])


def test_gumbel_max_frequencies_follow_softmax_of_alpha():
    """Gumbel-max trick: argmax(alpha + g) ~ Categorical(softmax(alpha)); checks the noise
    sign and scale (-log(-log u))."""
    alpha = torch.tensor([0.0, 1.0, 2.0])
    n = 20000
    sample = gumbel_softmax(alpha, 0.05, torch.Generator().manual_seed(0), samples=n)
    freq = torch.bincount(sample.argmax(-1), minlength=3).double() / n
    expected = torch.softmax(alpha.double(), -1)
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
