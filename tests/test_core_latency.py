"""Latency tables, prediction, correction, latency costs and the latency axis of a family.

No assertion here depends on how fast this machine is: tables with hand-set numbers check
the arithmetic; real measurements are only checked for structure and consistency.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from search_core.config import SearchConfig, SearchSpace, TrainConfig
from search_core.costs import op_cost_weights
from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError
from search_core.family import evaluate_family, hard_accuracy
from search_core.genotype import Genotype
from search_core.latency import (
    LatencyTable,
    accuracy_stats,
    agreement,
    calibrate,
    fit_correction,
    profile_parts,
    random_genotypes,
)
from search_core.network_parts import PartKey, network_layout
from search_core.probes import default_probes, seed_probes
from search_core.selection import (
    candidate_s,
    distinct_architectures,
    parse_latency,
    select_under_budget,
)
from search_core.timing import (
    Timing,
    TimingSettings,
    fingerprint,
    fingerprint_mismatch,
    measure_many,
)

FAST = TimingSettings(warmup=1, rounds=3, round_ms=0.2, passes=1)
DIGITS = SearchSpace(ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3"), cells=3, nodes=2,
                     channels=4)


def uniform(space: SearchSpace, op: str) -> Genotype:
    return Genotype((op,) * space.num_edges, (op,) * space.num_edges, space.edges)


def hand_table(layout, op_ms: dict[str, float], fixed_ms: float = 0.5) -> LatencyTable:
    """A table whose every fixed part costs ``fixed_ms`` and op m costs ``op_ms[m]``."""
    entries = {key: Timing(op_ms[key.name] if key.kind == "op" else fixed_ms, 0, 0, 1)
               for key in layout.part_keys()}
    return LatencyTable(fingerprint(FAST), FAST, {1: entries})


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("space, image", [
    (DIGITS, (8, 8)),
    (SearchSpace(ops=("sep_conv_5x5", "skip_connect", "avg_pool_3x3", "dil_conv_3x3"),
                 cells=5, nodes=3, channels=6), (28, 28)),
    (SearchSpace(cells=4, nodes=2, channels=4), (7, 9)),  # odd sizes: ceil(H / 2)
])
def test_layout_slots_match_the_inputs_each_edge_sees_in_a_real_network(space, image):
    layout = network_layout(space, 2, image, 10)
    net = DiscreteNetwork(uniform(space, space.ops[0]), space, 2, 10)
    seen: dict[tuple[int, int], tuple[int, ...]] = {}
    hooks = [edge.register_forward_hook(
        lambda mod, inp, out, key=(c, e): seen.__setitem__(
            key, (*inp[0].shape[1:], out.shape[-1])))
        for c, cell in enumerate(net.cells) for e, edge in enumerate(cell.edges)]
    net.eval()(torch.zeros(1, 2, *image))
    for hook in hooks:
        hook.remove()
    slots = list(layout.slots)
    assert len(slots) == space.cells * space.num_edges
    for index, slot in enumerate(slots):
        cell, edge = divmod(index, space.num_edges)
        channels, height, width, out_width = seen[(cell, edge)]
        assert (channels, height, width) == (slot.channels, slot.height, slot.width)
        assert out_width == -(-width // slot.stride)
        assert slot.cell_kind == ("reduce" if net.cells[cell].reduction else "normal")
    kinds = [k.kind for k in layout.fixed]
    assert kinds.count("stem") == kinds.count("head") == 1
    assert kinds.count("concat") == space.cells
    assert kinds.count("sum") == space.cells * space.nodes
    assert kinds.count("pre_conv") + kinds.count("pre_reduce") == 2 * space.cells


def test_naive_prediction_is_the_sum_of_the_parts():
    layout = network_layout(DIGITS, 1, (8, 8), 10)
    table = hand_table(layout, {"max_pool_3x3": 0.1, "skip_connect": 0.0, "sep_conv_3x3": 1.0})
    genotype = Genotype(("sep_conv_3x3",) * 3 + ("skip_connect",) * 2,
                        ("max_pool_3x3",) * 5, DIGITS.edges)
    normal_cells = sum(1 for s in layout.slots if s.cell_kind == "normal") // DIGITS.num_edges
    reduce_cells = DIGITS.cells - normal_cells
    expected = 0.5 * len(layout.fixed) + normal_cells * 3 * 1.0 + reduce_cells * 5 * 0.1
    assert table.predict_naive(genotype, layout) == pytest.approx(expected)
    assert table.predict(genotype, layout) == pytest.approx(expected)  # no correction yet


def test_a_missing_entry_names_the_part_and_the_fix():
    layout = network_layout(DIGITS, 1, (8, 8), 10)
    table = hand_table(layout, {"max_pool_3x3": 1, "skip_connect": 1, "sep_conv_3x3": 1})
    bigger = network_layout(dataclasses.replace(DIGITS, channels=16), 1, (8, 8), 10)
    with pytest.raises(ConfigError, match=r"no entry .*`hpo profile"):
        table.predict(uniform(DIGITS, "max_pool_3x3"), bigger)


# --------------------------------------------------------------------------- correction


def test_fit_correction_recovers_known_scales_and_intercept():
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(40):
        per_op = {"a": float(rng.uniform(0, 5)), "b": float(rng.uniform(0, 5))}
        fixed = 1.0
        samples.append((fixed, per_op, 0.3 + fixed + 1.4 * per_op["a"] + 0.7 * per_op["b"]))
    c = fit_correction("sig", 1, ["a", "b"], samples, ridge=1e-9)
    assert c.scales["a"] == pytest.approx(1.4, rel=1e-4)
    assert c.scales["b"] == pytest.approx(0.7, rel=1e-4)
    assert c.intercept_ms == pytest.approx(0.3, abs=1e-3)
    assert c.apply(1.0, {"a": 2.0, "b": 1.0}) == pytest.approx(0.3 + 1 + 2.8 + 0.7, rel=1e-4)


def test_accuracy_stats_by_hand():
    stats = accuracy_stats([1.0, 2.18, 2.73, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert stats["within_10pct"] == 0.75  # 0 %, +9 %, -9 % in; +25 % out
    assert stats["spearman"] == pytest.approx(1.0)
    assert stats["mean_error_pct"] == pytest.approx((0 + 9 - 9 + 25) / 4)


def test_calibration_on_this_machine_reports_naive_and_corrected_on_held_out_networks():
    layout = network_layout(DIGITS, 1, (8, 8), 10)
    table = profile_parts([layout], [1], FAST)
    assert set(table.entries[1]) == set(layout.part_keys())
    report = calibrate(table, layout, fit=4, validate=5, seed=3)
    assert report["fit"] == 4 and report["corrected"]["n"] == 5
    fit_set = random_genotypes(DIGITS, 4, 3)
    held_out = [Genotype.from_dict(r["genotype"]) for r in report["records"]]
    assert not set(fit_set) & set(held_out)
    (correction,) = table.corrections
    assert correction.signature == layout.signature and correction.fitted_on == 4
    for record, genotype in zip(report["records"], held_out):
        assert record["predicted_ms"] == pytest.approx(table.predict(genotype, layout))
        assert record["naive_ms"] == pytest.approx(table.predict_naive(genotype, layout))
        assert record["measured_ms"] > 0


def test_random_genotypes_are_distinct_seeded_and_start_with_the_one_op_networks():
    first = random_genotypes(DIGITS, 10, 0)
    assert len(set(first)) == 10 and first == random_genotypes(DIGITS, 10, 0)
    assert first[:3] == [uniform(DIGITS, op) for op in DIGITS.ops]
    assert random_genotypes(DIGITS, 10, 1)[3:] != first[3:]


# --------------------------------------------------------------------------- timing, table


def test_measure_reports_quartiles_and_is_not_shorter_than_the_work():
    (timing,) = measure_many([lambda: time.sleep(0.002)],
                             TimingSettings(warmup=0, rounds=3, round_ms=1, passes=1))
    assert timing.p25_ms <= timing.median_ms <= timing.p75_ms
    assert timing.median_ms >= 2.0 and timing.calls_per_round == 1


def test_table_round_trips_and_bad_files_fail_with_the_fix(tmp_path: Path):
    layout = network_layout(DIGITS, 1, (8, 8), 10)
    table = hand_table(layout, {"max_pool_3x3": 0.1, "skip_connect": 0.01, "sep_conv_3x3": 1})
    table.corrections.append(fit_correction(layout.signature, 1, DIGITS.ops, [
        (1.0, {"sep_conv_3x3": float(i)}, 2.0 + i) for i in range(5)]))
    path = table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.corrections == table.corrections
    genotype = uniform(DIGITS, "sep_conv_3x3")
    assert loaded.predict(genotype, layout) == pytest.approx(table.predict(genotype, layout))
    assert agreement(table, loaded)["within_spread"] == 1.0

    with pytest.raises(ConfigError, match=r"not found.*hpo profile"):
        LatencyTable.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="malformed"):
        LatencyTable.load(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(ConfigError, match="format"):
        LatencyTable.load(tmp_path / "old.json")


def test_a_table_from_another_setting_is_recognised():
    here = fingerprint(FAST)
    assert fingerprint_mismatch(here, fingerprint(FAST)) == []
    other = fingerprint(dataclasses.replace(FAST, threads=2))
    assert fingerprint_mismatch(here, other) == ["threads: table 1, here 2"]
    assert fingerprint_mismatch(here | {"cpu_model": "Apple M9"}, here)[0].startswith("cpu_model")


def test_agreement_flags_medians_further_apart_than_their_spreads():
    key = PartKey("op", "x", 1, 1, 1, 1)
    a = LatencyTable({}, FAST, {1: {key: Timing(1.0, 0.9, 1.1, 1)}})
    near = LatencyTable({}, FAST, {1: {key: Timing(1.15, 1.05, 1.25, 1)}})
    far = LatencyTable({}, FAST, {1: {key: Timing(1.5, 1.45, 1.55, 1)}})
    assert agreement(a, near)["within_spread"] == 1.0
    assert agreement(a, far)["within_spread"] == 0.0
    with pytest.raises(ConfigError, match="share no entry"):
        agreement(a, LatencyTable({}, FAST, {8: {key: Timing(1, 1, 1, 1)}}))


# --------------------------------------------------------------------------- uses


def test_latency_op_costs_follow_the_table(tmp_path: Path):
    with pytest.raises(ConfigError, match="latency_table"):
        TrainConfig(op_costs="latency")
    layout = network_layout(DIGITS, 1, (8, 8), 10)
    path = hand_table(layout, {"max_pool_3x3": 0.2, "skip_connect": 0.1,
                               "sep_conv_3x3": 1.5}).save(tmp_path / "t.json")
    config = SearchConfig(space=DIGITS, train=TrainConfig(op_costs="latency",
                                                          latency_table=str(path)))
    weights = op_cost_weights(config, 1, (8, 8), 10)
    assert weights.shape == (2, DIGITS.num_edges, 3)
    assert weights.mean().item() == pytest.approx(1.0)
    ratio = weights[..., 2] / weights[..., 1]
    assert torch.allclose(ratio, torch.full_like(ratio, 15.0))
    with pytest.raises(ConfigError, match="no entry"):
        op_cost_weights(config, 1, (28, 28), 10)  # the table has no 28x28 parts


@pytest.mark.slow
def test_family_on_the_latency_axis(tiny_result, tiny_data):
    probes = seed_probes(tiny_result.ops)
    table = evaluate_family(tiny_result, tiny_data, probes, complexity="latency",
                            reference=(0.0, 1e3), latency=FAST)
    assert table.complexity == "latency"
    assert all(m.latency_ms is not None and m.latency_ms > 0 for m in table.members)
    same = {}
    for m in table.members:  # one measurement per distinct architecture
        assert same.setdefault(m.genotype, m.latency_ms) == m.latency_ms
    accs = [m.accuracy for m in table.members]
    front_best = max(table.front, key=lambda i: accs[i])
    assert accs[front_best] == max(accs)
    assert table.rows()[0]["latency_ms"] == table.members[0].latency_ms
    assert 0 < table.hypervolume <= 1e3


def test_parse_latency_units():
    assert parse_latency("2ms") == 2.0
    assert parse_latency("1.5 ms") == 1.5
    assert parse_latency("500us") == pytest.approx(0.5)
    assert parse_latency("0.002s") == pytest.approx(2.0)
    assert parse_latency("3") == 3.0
    for bad in ("fast", "-1ms", "0ms", "nan"):
        with pytest.raises(ConfigError, match="latency budget"):
            parse_latency(bad)


@pytest.mark.slow
def test_selection_picks_the_most_accurate_measured_under_the_budget(tiny_result, tiny_data):
    roomy = select_under_budget(tiny_result, tiny_data, 1e4, FAST)
    assert roomy.best is not None and roomy.under_budget == roomy.measured == roomy.architectures
    assert roomy.s_vectors > 100
    space = tiny_result.config.space
    points = [p.s for p in default_probes(space.ops)] + candidate_s(space.num_ops)
    candidates = distinct_architectures(tiny_result, points)
    assert len(candidates) == roomy.architectures
    accuracies = [hard_accuracy(tiny_result.supernet, c.genotype.choice(space), tiny_data)
                  for c in candidates]
    assert roomy.best.accuracy == pytest.approx(max(accuracies))
    assert tiny_result.genotype(roomy.best.s) == roomy.best.genotype
    tight = select_under_budget(tiny_result, tiny_data, 1e-6, FAST)
    assert tight.best is None and tight.fastest is not None and tight.under_budget == 0
