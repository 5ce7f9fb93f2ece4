"""Models and the search: ops, supernet, genotypes, discrete networks, the engine, checkpoints
and family evaluation."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from search_core.config import SearchConfig, SearchSpace, TrainConfig
from search_core.costs import heaviest_genotype
from search_core.discrete import DiscreteNetwork
from search_core.engine import EpochMetrics, search
from search_core.errors import ConfigError, DivergenceError
from search_core.family import heaviest_complexity
from search_core.genotype import Genotype, derive
from search_core.metrics import hypervolume_2d
from search_core.ops import OPS, build_op, count_params
from search_core.probes import default_probes, seed_probes
from search_core.result import SearchResult, load_model, save_model
from search_core.supernet import SuperNet, recalibrated_bn

SPACE = SearchSpace(channels=4, nodes=2, cells=3)  # 5 edges; cells: normal, reduce, reduce
EDGES = ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
STRIDE2_EDGES = (0, 1, 2, 3)  # edges leaving the cell inputs (nodes 0 and 1)


# ---------------------------------------------------------------- ops


@pytest.mark.parametrize("name", OPS.names())
@pytest.mark.parametrize("size", [8, 7, 2])
def test_every_op_preserves_shape_at_stride_1_and_halves_at_stride_2(name, size):
    torch.manual_seed(0)
    x = torch.randn(2, 4, size, size)
    for affine in (False, True):
        assert build_op(name, 4, 1, affine)(x).shape == (2, 4, size, size)
        half = math.ceil(size / 2)
        assert build_op(name, 4, 2, affine)(x).shape == (2, 4, half, half)


def test_space_edges_and_reduction_cells():
    assert SPACE.edges == EDGES
    assert SPACE.num_edges == 5
    assert SearchSpace().num_edges == 14
    assert SPACE.reduction_cells == frozenset({1, 2})


# ---------------------------------------------------------------- supernet


@pytest.fixture(scope="module")
def supernet() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(SPACE, in_channels=1, num_classes=10).eval()


def _x(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_supernet_output_shapes(supernet):
    k, batch = SPACE.num_ops, 3
    gamma = torch.softmax(torch.randn(2, 5, k), -1)
    assert supernet(_x(batch), gamma=gamma).shape == (batch, 10)
    per_example = torch.softmax(torch.randn(2, 5, batch, k), -1)
    assert supernet(_x(batch), gamma=per_example).shape == (batch, 10)
    choice = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    assert supernet(_x(batch), choice=choice).shape == (batch, 10)
    with pytest.raises(ValueError):
        supernet(_x(batch))
    with pytest.raises(ValueError):
        supernet(_x(batch), gamma=gamma, choice=choice)


def test_one_hot_soft_path_equals_hard_choice_path(supernet):
    k = SPACE.num_ops
    for choice in (
        torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]]),
        torch.tensor([[2, 2, 2, 2, 2], [1, 1, 1, 1, 1]]),
    ):
        gamma = nn.functional.one_hot(choice, k).float()
        with torch.no_grad():
            soft = supernet(_x(), gamma=gamma)
            hard = supernet(_x(), choice=choice)
        torch.testing.assert_close(soft, hard, atol=1e-5, rtol=1e-5)


def test_per_example_one_hot_gamma_runs_each_example_on_its_own_architecture(supernet):
    k, batch = SPACE.num_ops, 3
    choices = [torch.randint(0, k, (2, 5), generator=torch.Generator().manual_seed(i))
               for i in range(batch)]
    gamma = torch.stack([nn.functional.one_hot(c, k).float() for c in choices], dim=2)
    assert gamma.shape == (2, 5, batch, k)
    x = _x(batch)
    with torch.no_grad():
        soft = supernet(x, gamma=gamma)
        for b, choice in enumerate(choices):
            hard = supernet(x[b : b + 1], choice=choice)
            torch.testing.assert_close(soft[b : b + 1], hard, atol=1e-5, rtol=1e-5)


def test_supernet_soft_path_is_linear_in_gamma_on_an_edge():
    """Mixed edge: g(x) = sum_m gamma_m o_m(x)."""
    from search_core.reference_supernet import ReferenceMixedOp

    torch.manual_seed(0)
    mixed = ReferenceMixedOp(SPACE.ops, 4, 1).eval()
    x = torch.randn(2, 4, 6, 6)
    gamma = torch.tensor([0.2, 0.3, 0.5])
    expected = sum(g * op(x) for g, op in zip(gamma.tolist(), mixed.ops))
    torch.testing.assert_close(mixed(x, gamma), expected)


# ---------------------------------------------------------------- genotypes

NORMAL_IDX = [0, 1, 2, 0, 1]
REDUCE_IDX = [2, 2, 1, 0, 0]


def _one_hot_alpha() -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor([NORMAL_IDX, REDUCE_IDX]), 3).float()


def test_derive_one_hot_alpha_gives_expected_op_names():
    genotype = derive(_one_hot_alpha(), SPACE)
    pool, skip, conv = "max_pool_3x3", "skip_connect", "sep_conv_3x3"
    assert genotype.normal == (pool, skip, conv, pool, skip)
    assert genotype.reduce == (conv, conv, skip, pool, pool)
    assert genotype.edges == EDGES
    assert genotype.nodes == 2
    torch.testing.assert_close(genotype.choice(SPACE), torch.tensor([NORMAL_IDX, REDUCE_IDX]))
    # argmax, not the first entry: shifting all logits or adding small noise changes nothing
    noisy = 5 * _one_hot_alpha() - 2 + 0.1 * torch.randn(2, 5, 3)
    assert derive(noisy, SPACE) == genotype


def test_genotype_json_round_trip():
    genotype = derive(_one_hot_alpha(), SPACE)
    text = genotype.to_json()
    assert Genotype.from_json(text) == genotype
    data = json.loads(text)
    assert data["normal"][2] == {"from": 0, "to": 3, "op": "sep_conv_3x3"}
    assert Genotype.from_dict(genotype.to_dict()) == genotype


@pytest.mark.parametrize(
    "text",
    [
        '{"normal": [{"from": 0, "to": 2, "op": "skip_connect"}]}',  # no reduce cell
        '{"normal": [{"from": 0, "op": "skip_connect"}], "reduce": []}',  # no "to"
        '{"normal": [{"from": 0, "to": 2}], "reduce": [{"from": 0, "to": 2}]}',  # no "op"
        '{"normal": [{"from": "x", "to": 2, "op": "skip_connect"}], "reduce": []}',
        '{"normal": [{"from": 0, "to": 2, "op": "skip_connect"}], '
        '"reduce": [{"from": 1, "to": 2, "op": "skip_connect"}]}',  # different edges
        "[1, 2]",
    ],
)
def test_malformed_genotype_json_is_config_error(text):
    with pytest.raises(ConfigError, match="genotype"):
        Genotype.from_json(text)


def test_syntactically_invalid_genotype_json_is_config_error():
    with pytest.raises(ConfigError):
        Genotype.from_json('{"normal": [')


def test_unknown_op_in_genotype_is_config_error():
    data = derive(_one_hot_alpha(), SPACE).to_dict()
    data["reduce"][1]["op"] = "conv_7x7"
    with pytest.raises(ConfigError, match="conv_7x7"):
        Genotype.from_dict(data)
    with pytest.raises(ConfigError):
        Genotype(normal=("skip_connect",), reduce=("nope",), edges=((0, 2),))
    # an op that exists but is not in the space is caught when choosing indices
    other = Genotype(normal=("conv_3x3",) * 5, reduce=("skip_connect",) * 5, edges=EDGES)
    with pytest.raises(ConfigError, match="conv_3x3"):
        other.choice(SPACE)
    with pytest.raises(ConfigError):
        other.choice(SearchSpace(channels=4, nodes=3, cells=3))


def test_op_counts_totals():
    genotype = derive(_one_hot_alpha(), SPACE)
    counts = genotype.op_counts()
    assert sum(counts["total"].values()) == 2 * SPACE.num_edges
    assert sum(counts["normal"].values()) == SPACE.num_edges
    assert counts["normal"] == {"max_pool_3x3": 2, "skip_connect": 2, "sep_conv_3x3": 1}
    assert counts["reduce"] == {"max_pool_3x3": 2, "skip_connect": 1, "sep_conv_3x3": 2}
    assert counts["total"] == {"max_pool_3x3": 4, "skip_connect": 3, "sep_conv_3x3": 3}


# ---------------------------------------------------------------- discrete networks


def _hand_params(name: str, c: int, stride: int) -> int:
    """Parameters of one op with affine BN (2c per BN), counted by hand."""
    if name == "skip_connect":
        return 0 if stride == 1 else c * (c // 2) + c * (c - c // 2) + 2 * c
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return 2 * c
    if name == "sep_conv_3x3":
        return 2 * (9 * c + c * c + 2 * c)
    raise AssertionError(name)


MIXED_REDUCE = ("sep_conv_3x3", "skip_connect", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def test_discrete_network_contains_only_chosen_ops():
    genotype = Genotype(normal=("skip_connect",) * 5, reduce=MIXED_REDUCE, edges=EDGES)
    net = DiscreteNetwork(genotype, SPACE, in_channels=1, num_classes=10)
    normal = net.cells[0]
    assert not normal.reduction
    assert all(isinstance(edge, nn.Identity) for edge in normal.edges)
    assert not any(isinstance(m, nn.Conv2d) for m in normal.edges.modules())
    assert count_params(normal.edges) == 0
    for cell in net.cells[1:]:
        assert cell.reduction
        assert len(cell.edges) == 5
        pools = [m for m in cell.edges.modules() if isinstance(m, nn.MaxPool2d)]
        assert len(pools) == 1 and pools[0].stride == 2
        assert not any(isinstance(m, nn.AvgPool2d) for m in cell.edges.modules())
        assert isinstance(cell.edges[4], nn.Sequential)  # sep conv at stride 1
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_cell_op_params_equals_hand_sum():
    genotype = Genotype(normal=("skip_connect",) * 5, reduce=MIXED_REDUCE, edges=EDGES)
    net = DiscreteNetwork(genotype, SPACE, in_channels=1, num_classes=10)
    expected = 0  # normal cell (C=4): all identity, no parameters
    for c in (8, 16):  # the two reduction cells
        for e, name in enumerate(MIXED_REDUCE):
            expected += _hand_params(name, c, 2 if e in STRIDE2_EDGES else 1)
    assert net.cell_op_params() == expected
    assert net.num_params() > net.cell_op_params()
    heavy = DiscreteNetwork(heaviest_genotype(SPACE), SPACE, 1, 10)
    assert heavy.genotype.normal == ("sep_conv_3x3",) * 5
    assert heavy.cell_op_params() == sum(
        _hand_params("sep_conv_3x3", c, 2 if red and e in STRIDE2_EDGES else 1)
        for c, red in ((4, False), (8, True), (16, True))
        for e in range(5)
    )


PROBES_S = [(1 / 3, 1 / 3, 1 / 3), (0.15, 0.15, 0.70), (0.70, 0.15, 0.15), (0.15, 0.70, 0.15)]


@pytest.mark.slow
def test_inherited_network_matches_supernet_hard_path(tiny_result, tiny_data, tiny_family):
    """Oracle: the standalone network with recalibrated BN gives the supernet's hard-path
    logits under ``recalibrated_bn``, hence the accuracy the family table reports."""
    space = tiny_result.config.space
    x, y = tiny_data.val.x, tiny_data.val.y
    for probe in seed_probes(space.ops):
        genotype = tiny_result.genotype(probe.s)
        choice = genotype.choice(space)
        net = tiny_result.model(probe.s, tiny_data)
        assert net.genotype == genotype
        assert not net.training
        with torch.no_grad():
            logits = net(x)
            with recalibrated_bn(tiny_result.supernet, choice, tiny_data.train):
                oracle = tiny_result.supernet(x, choice=choice)
        torch.testing.assert_close(logits, oracle, atol=1e-4, rtol=1e-4)
        accuracy = int((logits.argmax(1) == y).sum()) / len(y)
        assert accuracy == tiny_family.member(probe.name).accuracy
        # without data: the supernet's own BN statistics, still its hard path
        with torch.no_grad():
            torch.testing.assert_close(
                tiny_result.model(probe.s)(x),
                tiny_result.supernet(x, choice=choice),
                atol=1e-4,
                rtol=1e-4,
            )


def test_recalibrated_bn_restores_supernet_statistics(tiny_result, tiny_data):
    supernet = tiny_result.supernet
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    choice = tiny_result.genotype(PROBES_S[0]).choice(tiny_result.config.space)
    with recalibrated_bn(supernet, choice, tiny_data.train):
        bn = supernet.stem[1]
        assert not torch.equal(bn.running_mean, before["stem.1.running_mean"])
    _assert_state_equal(supernet.state_dict(), before)


# ---------------------------------------------------------------- the search engine


def _config(tiny_config: SearchConfig, **train) -> SearchConfig:
    return tiny_config.replace(train=TrainConfig(**({"epochs": 2, "batch_size": 32} | train)))


def _assert_state_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_search_is_deterministic_for_a_seed(tiny_config, tiny_data):
    first = search(tiny_config, tiny_data)
    second = search(tiny_config, tiny_data)
    _assert_state_equal(first.supernet.state_dict(), second.supernet.state_dict())
    _assert_state_equal(first.hypernet.state_dict(), second.hypernet.state_dict())
    for key in ("train_loss", "train_ce", "train_cost", "train_acc", "val_acc", "temperature"):
        assert [h[key] for h in first.history] == [h[key] for h in second.history]
    other = search(tiny_config.replace(seed=1), tiny_data)
    assert not torch.equal(first.hypernet.logits, other.hypernet.logits)
    assert not torch.equal(first.supernet.classifier.weight, other.supernet.classifier.weight)
    assert [h["train_loss"] for h in first.history] != [h["train_loss"] for h in other.history]


def test_search_leaves_caller_rng_state_unchanged(tiny_config, tiny_data):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    search(_config(tiny_config, epochs=1), tiny_data)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_progress_callback_called_once_per_epoch(tiny_config, tiny_data):
    seen: list[EpochMetrics] = []
    result = search(_config(tiny_config, epochs=3), tiny_data, on_epoch=seen.append)
    assert [m.epoch for m in seen] == [0, 1, 2]
    assert all(m.epochs == 3 for m in seen)
    for m in seen:
        for key, value in m.to_dict().items():
            assert math.isfinite(value), key
        assert 0 <= m.train_acc <= 1 and 0 <= m.val_acc <= 1
        assert m.train_loss == pytest.approx(m.train_ce + 1.0 * m.train_cost, rel=1e-5)
    # linear per-epoch schedule 1.0 -> 0.2 over 3 epochs
    assert [m.temperature for m in seen] == pytest.approx([1.0, 0.6, 0.2])
    assert result.history == [m.to_dict() for m in seen]


def test_exception_in_callback_propagates_and_stops_search(tiny_config, tiny_data):
    calls = []

    def stop(metrics: EpochMetrics) -> None:
        calls.append(metrics.epoch)
        raise RuntimeError("pruned")

    with pytest.raises(RuntimeError, match="pruned"):
        search(_config(tiny_config, epochs=3), tiny_data, on_epoch=stop)
    assert calls == [0]


def test_huge_learning_rate_raises_divergence_error(tiny_config, tiny_data):
    config = _config(tiny_config, epochs=2, w_lr=1e12, optimizer="sgd+adam", grad_clip=None)
    with pytest.raises(DivergenceError, match="non-finite loss"):
        search(config, tiny_data)


# ---------------------------------------------------------------- checkpoints


def test_search_result_save_load_round_trip(tiny_result, tmp_path):
    path = tiny_result.save(tmp_path / "run" / "result.pt")
    loaded = SearchResult.load(path)
    assert loaded.config == tiny_result.config
    assert loaded.history == tiny_result.history
    assert loaded.data_info == tiny_result.data_info
    for s in [*PROBES_S, (0.5, 0.25, 0.25)]:
        assert loaded.genotype(s) == tiny_result.genotype(s)
        assert torch.equal(loaded.alpha(s), tiny_result.alpha(s))
    _assert_state_equal(loaded.supernet.state_dict(), tiny_result.supernet.state_dict())
    with pytest.raises(ConfigError):
        loaded.alpha((0.5, 0.6, 0.1))  # not on the simplex


def test_save_model_load_model_round_trip(tiny_result, tiny_data, tmp_path):
    net = tiny_result.model((0.15, 0.15, 0.70), tiny_data)
    path = save_model(net, tmp_path / "model.pt", probe="B")
    loaded = load_model(path)
    assert loaded.genotype == net.genotype
    assert loaded.space == net.space
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(tiny_data.val.x), net(tiny_data.val.x))


# ---------------------------------------------------------------- family evaluation


def test_evaluate_family_on_tiny_result(tiny_result, tiny_family, tiny_data):
    space = tiny_result.config.space
    probes = default_probes(space.ops)
    assert [m.probe for m in tiny_family.members] == [p.name for p in probes]
    n_val = len(tiny_data.val)
    for member, probe in zip(tiny_family.members, probes):
        assert member.s == probe.s
        assert member.genotype == tiny_result.genotype(probe.s)
        assert 0.0 <= member.accuracy <= 1.0
        assert member.accuracy * n_val == pytest.approx(round(member.accuracy * n_val))
        assert member.params > member.cell_params >= 0
    accs = [m.accuracy for m in tiny_family.members]
    cxs = [float(m.params) for m in tiny_family.members]
    assert tiny_family.front
    for i in tiny_family.front:
        assert not any(
            a >= accs[i] and c <= cxs[i] and (a > accs[i] or c < cxs[i])
            for a, c in zip(accs, cxs)
        )
    for j in set(range(len(accs))) - set(tiny_family.front):  # everything else is covered
        assert any(accs[i] >= accs[j] and cxs[i] <= cxs[j] for i in tiny_family.front)
    heavy = DiscreteNetwork(heaviest_genotype(space), space, 1, 10).num_params()
    assert tiny_family.reference == (0.0, float(heavy))
    assert 0.0 <= tiny_family.hypervolume <= 1.0
    assert tiny_family.hypervolume == pytest.approx(
        hypervolume_2d(accs, cxs, tiny_family.reference)
    )
    frame = tiny_family.to_frame()
    assert len(frame) == len(probes)
    expected = {"probe", "accuracy", "params", "cell_params", "latency_ms", "bytes", "on_front",
                "genotype"}
    expected |= {f"s_{op}" for op in space.ops}
    expected |= {f"{p}_{op}" for p in ("n", "normal", "reduce") for op in space.ops}
    assert set(frame.columns) == expected
    assert (frame[[f"n_{op}" for op in space.ops]].sum(axis=1) == 2 * space.num_edges).all()
    assert frame["on_front"].sum() == len(tiny_family.front)
    assert (frame["bytes"] == 4 * frame["params"]).all()  # uncompressed: float32 weights
    member = tiny_family.members[0]
    assert member.complexity("bytes") == 4 * member.params
    assert replace(member, bytes=123).complexity("bytes") == 123.0
    assert heaviest_complexity(space, tiny_result.data_info, "bytes") == 4 * heavy


def test_seed_probes_three_ops():
    probes = seed_probes(("max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    assert [p.name for p in probes] == ["A", "B", "C", "D"]
    expected = [(1 / 3, 1 / 3, 1 / 3), (0.15, 0.15, 0.70), (0.70, 0.15, 0.15),
                (0.15, 0.70, 0.15)]
    for probe, values in zip(probes, expected):
        assert probe.s == pytest.approx(values, abs=1e-12)


def test_seed_probes_five_ops_renormalised():
    ops = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5")
    probes = seed_probes(ops)
    assert [p.name for p in probes] == ["A", "B", "C", "D"]
    raw = [
        (0.2, 0.2, 0.2, 0.2, 0.2),
        (0.077, 0.077, 0.077, 0.38, 0.38),
        (0.38, 0.38, 0.077, 0.077, 0.077),
        (0.11, 0.11, 0.55, 0.11, 0.11),
    ]
    for probe, values in zip(probes, raw):
        total = sum(values)
        assert probe.s == pytest.approx([v / total for v in values], abs=1e-12)
        assert sum(probe.s) == pytest.approx(1.0)
