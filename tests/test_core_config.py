"""Configuration: validation errors that name the key, dict/JSON round trips, op cost tables."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest
import torch

from search_core.config import (
    MAX_BATCH_SIZE,
    MAX_CELLS,
    MAX_CHANNELS,
    MAX_EPOCHS,
    MAX_NODES,
    MAX_NUM_REFS,
    MAX_S_DRAWS,
    MAX_THREADS,
    HyperNetConfig,
    SearchConfig,
    SearchSpace,
    TemperatureConfig,
    TrainConfig,
)
from search_core.configtools import SHOWN_CHARS, from_mapping, one_line, shown
from search_core.costs import op_cost_weights, op_param_table
from search_core.data import DataConfig
from search_core.errors import ConfigError
from search_core.ops import OPS
from search_core.supernet import cell_shapes

OPS3 = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: TemperatureConfig(t_start=0.0), "temperature.t_start"),
        (lambda: TemperatureConfig(t_start=-1.0, t_end=-2.0), "temperature.t_start"),
        (lambda: TemperatureConfig(t_end=0.0), "temperature.t_end"),
        (lambda: TemperatureConfig(t_end=-0.1), "temperature.t_end"),
        (lambda: TemperatureConfig(schedule="linear", t_start=0.5, t_end=1.0),
         "temperature.t_end"),
        (lambda: TemperatureConfig(schedule="cosine", t_start=0.5, t_end=1.0),
         "temperature.t_end"),
        (lambda: TemperatureConfig(per="batch"), "temperature.per"),
        (lambda: HyperNetConfig(bandwidth=0.0), "hypernet.bandwidth"),
        (lambda: HyperNetConfig(bandwidth=-1.0), "hypernet.bandwidth"),
        (lambda: HyperNetConfig(num_refs=0), "hypernet.num_refs"),
        (lambda: TrainConfig(epochs=0), "train.epochs"),
        (lambda: TrainConfig(kappa=-0.5), "train.kappa"),
        (lambda: TrainConfig(op_costs="flops"), "train.op_costs"),
        (lambda: TrainConfig(op_costs={"skip_connect": -1.0}), "train.op_costs"),
        (lambda: SearchSpace(ops=("skip_connect", "skip_connect", "max_pool_3x3")),
         "space.ops"),
        (lambda: SearchSpace(ops=("skip_connect",)), "space.ops"),
        (lambda: SearchSpace(cells=0), "space.cells"),
        (lambda: SearchConfig(train=TrainConfig(op_costs={"max_pool_3x3": 1.0,
                                                          "skip_connect": 0.5})),
         "train.op_costs"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(build, key):
    with pytest.raises(ConfigError) as info:
        build()
    assert key in str(info.value)


def test_op_costs_mapping_missing_op_names_the_missing_op():
    with pytest.raises(ConfigError, match="sep_conv_3x3"):
        SearchConfig(train=TrainConfig(op_costs={"max_pool_3x3": 1.0, "skip_connect": 0.5}))
    with pytest.raises(ConfigError, match="conv_5x5"):  # an op outside the space
        SearchConfig(train=TrainConfig(op_costs=dict.fromkeys((*OPS3, "conv_5x5"), 1.0)))
    config = SearchConfig(train=TrainConfig(op_costs={"sep_conv_3x3": 3.0, "max_pool_3x3": 1.0,
                                                      "skip_connect": 0.0}))
    # a valid mapping is put into space.ops order
    assert torch.equal(op_cost_weights(config), torch.tensor([1.0, 0.0, 3.0]))


def test_t_end_above_t_start_allowed_for_constant_schedule():
    config = TemperatureConfig(schedule="constant", t_start=0.5, t_end=1.0)
    assert config.t_end == 1.0
    TemperatureConfig(schedule="linear", t_start=0.5, t_end=0.5)  # equal ends are fine


def test_unknown_op_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        SearchSpace(ops=("max_pool_3x3", "conv_7x7"))
    message = str(info.value)
    assert "conv_7x7" in message
    for name in OPS.names():
        assert name in message


def test_unknown_placement_and_schedule_list_valid_names():
    with pytest.raises(ConfigError) as info:
        HyperNetConfig(placement="grid")
    assert "grid" in str(info.value)
    for name in ("vertices", "lattice", "dirichlet", "learned"):
        assert name in str(info.value)
    with pytest.raises(ConfigError) as info:
        TemperatureConfig(schedule="step")
    assert "step" in str(info.value)
    for name in ("linear", "exponential", "cosine", "constant"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"space": {"ops": ["max_pool_3x3", "conv_7x7"]}}, "space.ops"),
        ({"hypernet": {"placement": "grid"}}, "hypernet.placement"),
        ({"temperature": {"schedule": "step"}}, "temperature.schedule"),
    ],
)
def test_unknown_registry_names_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_dict(data)
    assert key in str(info.value)


def test_negative_grad_clip_is_config_error():
    with pytest.raises(ConfigError, match=r"train\.grad_clip"):
        TrainConfig(grad_clip=-1.0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: TemperatureConfig(t_start=float("inf")),
        lambda: TrainConfig(op_costs=dict.fromkeys(OPS3, float("nan"))),
    ],
)
def test_non_finite_values_are_config_errors(build):
    with pytest.raises(ConfigError):
        build()


# ---------------------------------------------------------------- dict / JSON round trips


def _custom_config() -> SearchConfig:
    return SearchConfig(
        space=SearchSpace(ops=("avg_pool_3x3", "skip_connect", "conv_3x3", "sep_conv_5x5"),
                          cells=4, nodes=3, channels=6),
        hypernet=HyperNetConfig(placement="lattice", num_refs=7, bandwidth=0.25),
        temperature=TemperatureConfig(schedule="cosine", t_start=2.0, t_end=0.1, per="step"),
        train=TrainConfig(epochs=3, kappa=0.5, op_costs={"avg_pool_3x3": 0.1,
                                                         "skip_connect": 0.0,
                                                         "conv_3x3": 2.0,
                                                         "sep_conv_5x5": 1.5},
                          optimizer="adam", w_lr=0.01, grad_clip=None, s_draws=2),
        data=DataConfig(name="digits", train_limit=50, val_limit=20, seed=3),
        seed=11,
        threads=2,
    )


@pytest.mark.parametrize("config", [SearchConfig(), _custom_config()])
def test_config_dict_and_json_round_trip(config):
    data = config.to_dict()
    assert isinstance(data["space"]["ops"], list)
    again = SearchConfig.from_dict(data)
    assert again == config
    assert isinstance(again.space.ops, tuple)
    assert again.space.ops == config.space.ops
    from_json = SearchConfig.from_dict(json.loads(config.to_json()))
    assert from_json == config
    assert from_json.to_json() == config.to_json()


def test_from_dict_partial_uses_defaults_and_converts_ints_to_floats():
    config = SearchConfig.from_dict({"train": {"kappa": 2}, "space": {"ops": OPS3[:2]}})
    assert config.train.kappa == 2.0 and isinstance(config.train.kappa, float)
    assert config.space.ops == OPS3[:2]
    assert config.temperature == TemperatureConfig()


def test_from_dict_unknown_nested_key_names_full_path():
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_dict({"train": {"epoch": 3}})
    assert "train.epoch" in str(info.value)


def test_from_dict_unknown_keys_are_config_errors():
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_dict({"train": {"epoch": 3}})
    message = str(info.value)
    assert "train" in message and "epoch" in message and "epochs" in message  # valid keys
    with pytest.raises(ConfigError, match="spaces"):
        SearchConfig.from_dict({"spaces": {}})


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"space": {"cells": "three"}}, "space.cells"),
        ({"space": {"cells": 2.5}}, "space.cells"),
        ({"train": {"kappa": "high"}}, "train.kappa"),
        ({"train": {"cost_uses_temperature": 1}}, "train.cost_uses_temperature"),
        ({"space": {"ops": "skip_connect"}}, "space.ops"),
        ({"temperature": {"per": "batch"}}, "temperature.per"),
        ({"seed": True}, "seed"),
        ({"space": 3}, "space"),
    ],
)
def test_from_dict_wrong_type_names_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_dict(data)
    assert key in str(info.value)


# ---------------------------------------------------------------- parameter cost table


def _hand_params(name: str, c: int, stride: int) -> int:
    """Parameters of an op built with affine BN (weight and bias: 2c per BN)."""
    if name == "skip_connect":  # identity, or factorized reduce at stride 2
        return 0 if stride == 1 else c * (c // 2) + c * (c - c // 2) + 2 * c
    if name == "max_pool_3x3":  # pool + BN
        return 2 * c
    if name == "sep_conv_3x3":  # 2 x (depthwise 3x3, pointwise 1x1, BN)
        return 2 * (9 * c + c * c + 2 * c)
    raise AssertionError(name)


def test_params_cost_table_matches_hand_count():
    space = SearchSpace(ops=OPS3, channels=4, nodes=2, cells=3)
    assert [shape.c for shape in cell_shapes(space)] == [4, 8, 16]
    table = op_param_table(space)
    assert table.shape == (2, 5, 3)
    expected = torch.zeros(2, 5, 3)
    for c, kind in ((4, 0), (8, 1), (16, 1)):  # cell 0 normal, cells 1 and 2 reduce
        for e, (i, _) in enumerate(space.edges):
            stride = 2 if kind == 1 and i < 2 else 1
            for m, name in enumerate(OPS3):
                expected[kind, e, m] += _hand_params(name, c, stride)
    assert torch.equal(table, expected)
    # spot checks of the hand formula itself
    assert expected[0, 0].tolist() == [8.0, 0.0, 2 * (36 + 16 + 8)]
    assert expected[1, 0, 1] == (64 + 16) + (256 + 32)  # factorized reduce at C=8 and C=16


def test_params_op_costs_have_shape_zeros_and_mean_one():
    config = SearchConfig(space=SearchSpace(ops=OPS3, channels=4, nodes=2, cells=3),
                          train=TrainConfig(op_costs="params"))
    weights = op_cost_weights(config)
    assert weights.shape == (2, config.space.num_edges, 3)
    assert float(weights.mean()) == pytest.approx(1.0, abs=1e-6)
    skip = OPS3.index("skip_connect")
    assert bool((weights[0, :, skip] == 0).all())  # identity in normal cells
    assert float(weights[1, 4, skip]) == 0.0  # edge (2, 3) of a reduce cell has stride 1
    assert bool((weights[1, :4, skip] > 0).all())  # factorized reduce at stride 2
    assert bool((weights > 0).sum() == weights.numel() - 6)
    table = op_param_table(config.space)
    torch.testing.assert_close(weights, table / table.mean())
    # conv is the heaviest op on every edge
    assert bool((weights.argmax(-1) == OPS3.index("sep_conv_3x3")).all())


def test_no_op_costs_is_none():
    assert op_cost_weights(SearchConfig()) is None


# ---------------------------------------------------------------- bounds and short messages


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: SearchSpace(cells=MAX_CELLS + 1), "space.cells"),
        (lambda: SearchSpace(nodes=MAX_NODES + 1), "space.nodes"),
        (lambda: SearchSpace(channels=MAX_CHANNELS + 1), "space.channels"),
        (lambda: SearchSpace(channels=10**23), "space.channels"),
        (lambda: SearchSpace(stem_multiplier=17), "space.stem_multiplier"),
        (lambda: TrainConfig(epochs=MAX_EPOCHS + 1), "train.epochs"),
        (lambda: TrainConfig(batch_size=MAX_BATCH_SIZE + 1), "train.batch_size"),
        (lambda: TrainConfig(s_draws=MAX_S_DRAWS + 1), "train.s_draws"),
        (lambda: TrainConfig(w_lr=float("inf")), "train.w_lr"),
        (lambda: TrainConfig(a_lr=float("nan")), "train.a_lr"),
        (lambda: TrainConfig(divergence_factor=1.0), "train.divergence_factor"),
        (lambda: TrainConfig(divergence_factor=float("inf")), "train.divergence_factor"),
        (lambda: HyperNetConfig(num_refs=MAX_NUM_REFS + 1), "hypernet.num_refs"),
        (lambda: HyperNetConfig(init_scale=float("inf")), "hypernet.init_scale"),
        (lambda: SearchConfig(seed=-1), "seed"),
        (lambda: SearchConfig(seed=2**32), "seed"),
        (lambda: SearchConfig(threads=MAX_THREADS + 1), "threads"),
        (lambda: DataConfig(seed=-1), "data.seed"),
        (lambda: DataConfig(seed=2**32), "data.seed"),
        (lambda: DataConfig(name="x" * 10_000), "data.name"),
        (lambda: SearchSpace(cells=10**5000), "space.cells"),  # str() of it would raise
    ],
)
def test_absurd_values_are_config_errors_with_short_messages(build, key):
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message.startswith(key) and len(message) <= 200, message


def test_bounds_themselves_are_accepted():
    space = SearchSpace(cells=MAX_CELLS, nodes=MAX_NODES, channels=MAX_CHANNELS)
    train = TrainConfig(epochs=MAX_EPOCHS, batch_size=MAX_BATCH_SIZE, s_draws=MAX_S_DRAWS)
    config = SearchConfig(space=space, train=train, seed=2**32 - 1, threads=MAX_THREADS,
                          hypernet=HyperNetConfig(placement="lattice", num_refs=MAX_NUM_REFS),
                          data=DataConfig(seed=2**32 - 1))
    assert SearchConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "data",
    [
        {"space": {"ops": ["x" * 100_000, "skip_connect"]}},
        {"train": {"kappa": "x" * 100_000}},
        {"train": {"op_costs": dict.fromkeys(("a" * 10_000, "b"), [1] * 10_000)}},
        {"train": {"kappa": 10**400}},  # an int beyond the largest float
        {"train": {"k" * 10_000: 1}},
        {"space": {1: 2, "foo": 3}},  # keys of mixed types
        {"hypernet": list(range(100_000))},
    ],
)
def test_errors_quote_at_most_a_short_piece_of_a_value(data):
    with pytest.raises(ConfigError) as info:
        SearchConfig.from_dict(data)
    assert len(str(info.value)) <= 300, str(info.value)[:400]


def test_missing_required_key_is_a_config_error_naming_it():
    @dataclasses.dataclass(frozen=True)
    class Needs:
        kind: Literal["a", "b"]
        size: int = 1

    with pytest.raises(ConfigError, match=r"thing: missing required key\(s\) kind \(one of 'a'"):
        from_mapping(Needs, {"size": 2}, "thing")
    assert from_mapping(Needs, {"kind": "a"}) == Needs("a")


def test_shown_and_one_line_bound_what_they_print():
    assert shown("x" * 1000).startswith("'xxx") and len(shown("x" * 1000)) <= SHOWN_CHARS
    assert "digits" in shown(10**5000) and len(shown(10**5000)) <= SHOWN_CHARS
    assert shown([[[[[1]]]]]) == "[[[[...]]]]"
    assert shown(0.25) == "0.25" and shown("linear") == "'linear'"
    text = "file.yaml: key: " + "x" * 1000 + "; fix it\nnow"
    short = one_line(text, 100)
    assert len(short) <= 100 and "\n" not in short
    assert short.startswith("file.yaml: key:") and short.endswith("fix it now")


def test_the_memory_floor_by_hand_and_below_the_real_supernet() -> None:
    """Cells: normal 4 ch at 8x8, reduce 8 ch at 4x4, reduce 16 ch at 2x2; 5 edges each;
    the identity (skip_connect) makes no tensor, so 2 of the 3 ops count."""
    import torch

    from search_core.footprint import activation_floats, supernet_params
    from search_core.supernet import SuperNet

    space = SearchSpace(channels=4, nodes=2, cells=3,
                        ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    info = {"in_channels": 1, "image_size": [8, 8], "num_classes": 10}
    per_image = 5 * (4 * 8 * 8) + 5 * (8 * 4 * 4) + 5 * (16 * 2 * 2)
    assert activation_floats(space, info, batch_size=64) == per_image * 2 * 64
    with torch.device("meta"):
        real = SuperNet(space, 1, 10)
    total = sum(p.numel() for p in real.parameters())
    assert 0.5 * total <= supernet_params(space) <= total  # a lower bound, not far below


def test_a_long_message_is_shortened_between_words() -> None:
    """A study key typo listed the valid keys cut mid-word ("gumbel_p ... ple")."""
    from search_core.configtools import one_line

    words = [f"key_number_{i}," for i in range(80)]
    message = "search: unknown key(s) x; valid keys: " + " ".join(words)
    short = one_line(message, limit=120)
    assert len(short) <= 120 and " ... " in short
    kept = short.replace(" ... ", " ").split()
    assert all(word in message.split() for word in kept)
    assert short.startswith("search: unknown key(s) x;") and short.endswith("key_number_79,")
