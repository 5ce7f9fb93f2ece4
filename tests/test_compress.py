"""Oracle tests of the compression stages on tiny models: the distillation loss by hand,
quantise-dequantise error bounds and the straight-through gradient, bit-widths under a size
budget, pruning masks and rewinding, and the gates' expectations and bookkeeping."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from compress import Context, FitSettings, run_stage
from compress.base import size_bytes, weights
from compress.distill import DistillSettings, distillation_loss
from compress.gates import (
    EdgeMagnitudeSettings,
    GatedEdge,
    GateSettings,
    PrunedEdge,
    edge_names,
    edges_under_budget,
    expected_latency,
    kept_edges,
    node_inputs,
)
from compress.lottery import (
    LotterySettings,
    full_masks,
    prune_by_magnitude,
    random_masks_like,
    train_masked,
)
from compress.quantise import (
    QuantiseSettings,
    choose_bits,
    fake_quantise,
    fx_deprecations_hidden,
    levels,
    to_int8,
)
from reports import study_frames
from reports.html import write_report
from search_core.data import DataSplits
from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError
from search_core.genotype import Genotype
from search_core.timing import TimingSettings

QUICK_TIMING = TimingSettings(warmup=1, rounds=3, round_ms=0.5, passes=1)
ONE_EPOCH = FitSettings(epochs=1, lr=0.05, batch_size=32)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def tiny_network(space, data: DataSplits) -> DiscreteNetwork:
    ops = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
    edges = len(space.edges)
    genotype = Genotype(tuple(ops[i % 3] for i in range(edges)),
                        tuple(ops[(i + 1) % 3] for i in range(edges)), space.edges)
    torch.manual_seed(0)
    return DiscreteNetwork(genotype, space, data.in_channels, data.num_classes).eval()


# ----------------------------------------------------------------------------- distillation


def test_distillation_loss_by_hand() -> None:
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    y = torch.tensor([0, 1])
    t, alpha = 2.0, 0.7

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max())
        return e / e.sum()

    kl = ce = 0.0
    for s, q, label in zip(student.numpy(), teacher.numpy(), y.numpy()):
        p_t, p_s = softmax(q / t), softmax(s / t)
        kl += float(np.sum(p_t * np.log(p_t / p_s)))
        ce += -math.log(softmax(s)[label])
    expected = alpha * t * t * kl / 2 + (1 - alpha) * ce / 2
    assert float(distillation_loss(student, teacher, y, t, alpha)) == pytest.approx(expected)
    assert float(distillation_loss(teacher, teacher, y, t, 1.0)) == pytest.approx(0.0, abs=1e-7)


def test_distillation_needs_a_teacher_and_moves_the_student_towards_it(
        tiny_data: DataSplits) -> None:
    with pytest.raises(ConfigError, match="no teacher"):
        run_stage("distill", mlp(), tiny_data, DistillSettings())
    teacher, student = mlp(1), mlp(2)
    x, y = tiny_data.val.x, tiny_data.val.y
    with torch.no_grad():
        gap_before = float(distillation_loss(student(x), teacher(x), y, 4.0, 1.0))
    taught, record = run_stage("distill", student, tiny_data,
                               DistillSettings(alpha=1.0, fit=ONE_EPOCH), Context(teacher))
    with torch.no_grad():
        gap_after = float(distillation_loss(taught(x), teacher(x), y, 4.0, 1.0))
    assert gap_after < gap_before
    assert record.stage == "distill" and record.settings["alpha"] == 1.0
    assert torch.equal(student[1].weight, mlp(2)[1].weight)  # the input is left unchanged


# ----------------------------------------------------------------------------- quantisation


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantise_dequantise_error_is_at_most_half_a_step(bits: int) -> None:
    w = torch.randn(1000) * 3
    t = torch.tensor(2.0)
    q = fake_quantise(w, t, bits)
    step = float(t) / levels(bits)
    inside = w.abs() <= t
    assert (q[inside] - w[inside]).abs().max() <= step / 2 + 1e-6
    assert torch.allclose(q[~inside], t * w[~inside].sign())  # clipped to the threshold
    assert len(torch.unique(q)) <= 2 * levels(bits) + 1
    assert torch.allclose(q / step, torch.round(q / step), atol=1e-4)  # on the grid


def test_the_straight_through_gradient_passes_inside_and_stops_outside() -> None:
    w = torch.tensor([-3.0, -0.7, 0.2, 1.1, 5.0], requires_grad=True)
    t = torch.tensor(2.0, requires_grad=True)
    fake_quantise(w, t, 4).sum().backward()
    assert w.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert t.grad is not None and float(t.grad) != 0.0  # thresholds learn


def test_bit_widths_fit_the_size_budget(tiny_data: DataSplits) -> None:
    model = mlp()
    names = [n for n, _ in weights(model)]
    all8 = size_bytes(model, dict.fromkeys(names, 8))
    all4 = size_bytes(model, dict.fromkeys(names, 4))
    budget = (all8 + all4) // 2
    bits = choose_bits(model, tiny_data, QuantiseSettings(size_budget_bytes=budget))
    assert size_bytes(model, bits) <= budget
    assert set(bits.values()) <= {4, 8} and 4 in bits.values()
    with pytest.raises(ConfigError, match="raise the budget"):
        choose_bits(model, tiny_data, QuantiseSettings(size_budget_bytes=all4 - 10))


def test_quantised_weights_lie_on_their_grid_and_size_counts_bits(tiny_data: DataSplits) -> None:
    model = mlp()
    out, record = run_stage("quantise", model, tiny_data,
                            QuantiseSettings(bits=4, fit=ONE_EPOCH, timing=QUICK_TIMING))
    for _, w in weights(out):
        values = torch.unique(w.detach())
        assert len(values) <= 2 * levels(4) + 1
    expected = size_bytes(model, {n: 4 for n, _ in weights(model)})
    assert record.after["bytes"] == expected < record.before["bytes"]
    assert record.extra["simulated"] is True and "int8" not in record.extra  # no 4-bit kernels


@pytest.mark.slow
def test_an_8_bit_model_is_also_measured_on_int8_kernels(tiny_space, tiny_data) -> None:
    net = tiny_network(tiny_space, tiny_data)
    _, record = run_stage("quantise", net, tiny_data,
                          QuantiseSettings(bits=8, calibration="minmax", timing=QUICK_TIMING))
    int8 = record.extra["int8"]
    assert 0 <= int8["accuracy"] <= 1 and int8["latency_ms"] > 0
    assert abs(int8["accuracy"] - record.after["accuracy"]) <= 0.1  # the same model, in int8



def test_the_int8_conversion_hides_only_its_own_deprecation_warnings(tiny_space,
                                                                      tiny_data) -> None:
    """The conversion silenced every warning around it; now only the FX path's own."""
    net = tiny_network(tiny_space, tiny_data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        int8 = to_int8(net, tiny_data, calibration_batches=1)
    assert [str(w.message)[:60] for w in caught] == []
    x = tiny_data.val.x[:8]
    assert (int8(x).argmax(1) == net(x).argmax(1)).float().mean() >= 0.5
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with fx_deprecations_hidden():
            warnings.warn("torch.ao.quantization is deprecated and will be removed",
                          DeprecationWarning, stacklevel=1)
            warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
            warnings.warn("torch.ao.quantization is new", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["an unrelated warning",
                                              "torch.ao.quantization is new"]


# ----------------------------------------------------------------------------- lottery


def test_magnitude_pruning_removes_the_smallest_of_the_remaining() -> None:
    model = mlp()
    masks = full_masks(model)
    first = prune_by_magnitude(model, masks, 0.5)
    second = prune_by_magnitude(model, first, 0.5)
    for name, w in weights(model):
        total = w.numel()
        assert int(first[name].sum()) == total - round(0.5 * total)
        remaining = int(first[name].sum())
        assert int(second[name].sum()) == remaining - round(0.5 * remaining)
        assert not (second[name] & ~first[name]).any()  # pruned stays pruned
        kept, dropped = w.detach().abs()[first[name]], w.detach().abs()[~first[name]]
        assert dropped.max() <= kept.min()


def test_random_masks_keep_each_layers_count() -> None:
    masks = prune_by_magnitude(mlp(), full_masks(mlp()), 0.6)
    shuffled = random_masks_like(masks, torch.Generator().manual_seed(0))
    for name, mask in masks.items():
        assert int(shuffled[name].sum()) == int(mask.sum())
        assert not torch.equal(shuffled[name], mask)


def test_masked_training_holds_zeros_and_keeps_the_weights_of_step_k(
        tiny_data: DataSplits) -> None:
    model = mlp()
    masks = prune_by_magnitude(model, full_masks(model), 0.5)
    start = train_masked(mlp(), tiny_data, masks, ONE_EPOCH, keep_at=0)
    steps = math.ceil(len(tiny_data.train) / ONE_EPOCH.batch_size)
    last = train_masked(model, tiny_data, masks, ONE_EPOCH, keep_at=steps)
    for name, w in weights(model):
        assert (w[~masks[name]] == 0).all()
    assert start is not None and last is not None
    for key, value in model.state_dict().items():
        assert torch.equal(last[key], value)  # the snapshot of the last step is the result
    initial = dict(mlp().state_dict())
    for name, mask in masks.items():
        assert torch.equal(start[name], initial[name] * mask)  # step 0: masked theta_0
    with pytest.raises(ConfigError, match="fewer steps"):
        train_masked(mlp(), tiny_data, masks, ONE_EPOCH, keep_at=steps + 1)


def test_a_ticket_reaches_its_sparsity_and_controls_run(tiny_data: DataSplits) -> None:
    settings = LotterySettings(prune_fraction=0.5, rounds=2, rewind_step=2, fit=ONE_EPOCH)
    ticket, record = run_stage("lottery", mlp(), tiny_data, settings)
    assert record.extra["sparsity"] == pytest.approx(settings.sparsity, abs=0.01)
    assert [r["round"] for r in record.extra["rounds"]] == [1, 2]
    zeros = sum(int((w == 0).sum()) for _, w in weights(ticket))
    total = sum(w.numel() for _, w in weights(ticket))
    assert zeros / total == pytest.approx(0.75, abs=0.01)
    for control in ("reinit", "random"):
        _, other = run_stage("lottery", mlp(), tiny_data,
                             LotterySettings(prune_fraction=0.5, rounds=2, rewind_step=2,
                                             control=control, fit=ONE_EPOCH))
        assert other.extra["sparsity"] == pytest.approx(0.75, abs=0.01)


def test_a_rounds_masks_do_not_depend_on_the_rounds_after_it(tiny_data: DataSplits) -> None:
    """What lets one pruning run serve the controls of every sparsity: round k's masks and
    accuracy are the same in a 1-round and a 2-round run, and the stage's control at one
    round equals train_control on the longer run's first masks."""
    from compress.lottery import iterative_pruning, train_control

    settings = LotterySettings(prune_fraction=0.5, rounds=2, fit=ONE_EPOCH)
    long = iterative_pruning(mlp(), tiny_data, settings)
    short = iterative_pruning(mlp(), tiny_data, replace(settings, rounds=1))
    assert short.rounds[0] == long.rounds[0]
    for name, mask in short.masks[0].items():
        assert torch.equal(mask, long.masks[0][name])
    control = mlp()
    train_control(control, tiny_data, long, long.masks[0], "random", settings.fit)
    staged, _ = run_stage("lottery", mlp(), tiny_data,
                          replace(settings, rounds=1, control="random"))
    for (name, w), (_, v) in zip(weights(control), weights(staged)):
        assert torch.equal(w, v), name


# ----------------------------------------------------------------------------- gates


@pytest.mark.slow
def test_a_relaxed_gate_is_above_one_half_with_probability_sigmoid_logit() -> None:
    gate = GatedEdge(nn.Identity(), init_logit=0.8, temperature=0.5).train()
    torch.manual_seed(0)
    draws = torch.stack([gate(torch.ones(1)) for _ in range(20_000)]).flatten()
    assert float((draws > 0.5).float().mean()) == pytest.approx(1 / (1 + math.exp(-0.8)),
                                                                 abs=0.01)
    with torch.no_grad():
        assert float(gate.eval()(torch.ones(1))) == pytest.approx(1 / (1 + math.exp(-0.8)))


def test_expected_latency_is_the_probability_weighted_sum() -> None:
    gated = {"a": GatedEdge(nn.Identity(), 0.0, 0.5), "b": GatedEdge(nn.Identity(), 2.0, 0.5)}
    cost = expected_latency(gated, {"a": 1.5, "b": 4.0})
    assert float(cost.detach()) == pytest.approx(0.5 * 1.5 + 4.0 / (1 + math.exp(-2.0)))
    cost.backward()
    assert gated["a"].logit.grad == pytest.approx(1.5 * 0.25)


def test_kept_edges_never_cut_a_node_off() -> None:
    nodes = {"n0": ["e0", "e1"], "n1": ["e2", "e3", "e4"]}
    probabilities = {"e0": 0.9, "e1": 0.2, "e2": 0.1, "e3": 0.3, "e4": 0.05}
    assert kept_edges(probabilities, 0.5, nodes) == {"e0", "e3"}


@pytest.mark.slow
def test_gates_prune_edges_to_zeros_and_measure_latency(tiny_space, tiny_data) -> None:
    net = tiny_network(tiny_space, tiny_data)
    names = edge_names(net)
    assert len(names) == 3 * len(tiny_space.edges)
    assert sum(len(v) for v in node_inputs(net).values()) == len(names)
    heavy = GateSettings(lam=50.0, gate_lr=1.0, timing=QUICK_TIMING, fit=ONE_EPOCH)
    costs = dict.fromkeys(names, 1.0)
    pruned, record = run_stage("gates", net, tiny_data, heavy, Context(unit_latency_ms=costs))
    assert record.extra["pruned"], "a heavy latency weight pruned nothing"
    assert len(record.extra["kept"]) >= len(node_inputs(net))  # one input per node at least
    for name in record.extra["pruned"]:
        assert isinstance(pruned.get_submodule(name), PrunedEdge)
    out = pruned(tiny_data.val.x[:4])
    assert out.shape == (4, tiny_data.num_classes) and torch.isfinite(out).all()
    assert record.after["latency_ms"] > 0 and record.before["latency_ms"] > 0
    free = GateSettings(lam=0.0, timing=QUICK_TIMING, fit=ONE_EPOCH)
    _, kept_all = run_stage("gates", net, tiny_data, free, Context(unit_latency_ms=costs))
    assert not kept_all.extra["pruned"]


# ----------------------------------------------------------------------------- pipeline

PIPELINE = {"probes": ["A", "B"], "stages": [
    {"stage": "train", "epochs": 1, "lr": 0.02},
    {"stage": "lottery", "rounds": 1, "fit": {"epochs": 1}},
    {"stage": "quantise", "bits": 8, "calibration": "minmax"},
]}


def with_pipeline(pipeline: dict, params: dict | None = None):
    def edit(raw: dict) -> None:
        raw["pipeline"] = pipeline
        raw["params"] = {**raw["params"], **(params or {})}

    return edit


@pytest.mark.slow
def test_a_study_pipeline_compresses_the_probes_with_the_trials_settings(cli) -> None:
    tuned = {"pipeline.lottery.prune_fraction": {"type": "float", "low": 0.2, "high": 0.8}}
    study = cli.write_study(with_pipeline(PIPELINE, tuned))
    result = cli("run", "--study", study, "--trials", 1, "--name", "piped")
    assert result.code == 0, result.err
    (trial,) = cli.trials("piped")
    records = trial.user_attrs["pipeline"]
    assert [r["probe"] for r in records] == ["A", "B"]
    for record in records:
        assert [s["stage"] for s in record["stages"]] == ["train", "lottery", "quantise"]
        lottery = record["stages"][1]
        assert lottery["settings"]["prune_fraction"] == trial.params[
            "pipeline.lottery.prune_fraction"]
        assert lottery["extra"]["sparsity"] == pytest.approx(
            trial.params["pipeline.lottery.prune_fraction"], abs=0.01)
        for earlier, later in zip(record["stages"], record["stages"][1:]):
            assert later["before"]["accuracy"] == earlier["after"]["accuracy"]  # chained
        assert record["latency_ms"] > 0 and record["bytes"] > 0
    family = {row["probe"]: row for row in trial.user_attrs["family"]}
    assert set(family) == {"A", "B"}  # the trial's family: the compressed members
    for record in records:  # 8 bits everywhere: the member is torch's int8 model
        assert record["kernels"] == "int8"
        assert family[record["probe"]]["accuracy"] == record["accuracy"]
        assert record["accuracy"] == pytest.approx(
            record["stages"][-1]["after"]["accuracy"], abs=0.1)
        assert family[record["probe"]]["latency_ms"] == record["latency_ms"]
        assert family[record["probe"]]["bytes"] == record["bytes"]
        searched = record["searched"]  # the member before compression, measured beside it
        assert searched["bytes"] == 4 * searched["params"] and searched["latency_ms"] > 0
        assert record["bytes"] < searched["bytes"] / 4 + 200  # 8 bits, pruned, + thresholds

    frame = study_frames.pipeline_frame(cli.study("piped"))
    assert len(frame) == 2 * 3 and set(frame["stage"]) == {"train", "lottery", "quantise"}
    assert (frame["pipeline.lottery.prune_fraction"] == trial.params[
        "pipeline.lottery.prune_fraction"]).all()
    index = write_report(str(cli.storage), ["piped"], cli.tmp / "report")
    assert (cli.tmp / "report" / "piped-pipeline.lottery.prune_fraction.png").exists()
    assert "Stage lottery: accuracy and latency over" in index.read_text()
    for axis in ("latency", "bytes"):
        assert (cli.tmp / "report" / f"piped-extended-front-{axis}.png").exists()
    assert "Compression extends the front on stored bytes" in index.read_text()
    assert "median speed-up" in index.read_text()


def test_an_extended_front_flags_the_compressed_members_that_beat_the_searched() -> None:
    """Oracle: two members; compression keeps B's accuracy at a quarter of its bytes, so the
    extended front is searched A + compressed B, and its hypervolume is the exact area."""
    import optuna

    from hpo.records import TrialRecord

    def member(probe: str, acc: float, size: int, acc_after: float, size_after: int) -> dict:
        return {"probe": probe, "accuracy": acc_after, "bytes": size_after,
                "latency_ms": 1.0, "kernels": "simulated", "stages": [],
                "searched": {"accuracy": acc, "params": size // 4, "bytes": size,
                             "latency_ms": 1.0}}

    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    record = TrialRecord(pipeline=(member("A", 0.5, 100, 0.3, 110),
                                   member("B", 0.9, 400, 0.9, 100)))
    for key, value in record.to_user_attrs().items():
        trial.set_user_attr(key, value)
    study.tell(trial, [0.5, 1.0])
    extended = study_frames.extended_front(study_frames.extended_members(study), "bytes",
                                   reference=(0.0, 400.0))
    front = extended.front.front
    assert list(zip(front["probe"], front["kind"])) == [("B", "compressed")]
    assert list(extended.searched_front["probe"]) == ["A", "B"]
    # searched: A (100 B, 0.5) and B (400 B, 0.9): 0.5 x 300 of 400 x 1 -> 0.375;
    # compressed B at 100 B with 0.9 dominates A: 0.9 x 300 / 400 = 0.675
    assert extended.searched_hypervolume == pytest.approx(0.375)
    assert extended.hypervolume == pytest.approx(0.675)
    rows = study_frames.extended_members(study).set_index(["probe", "kind"])
    assert rows.loc[("B", "compressed"), "bytes_saved_pct"] == pytest.approx(75.0)
    assert rows.loc[("A", "compressed"), "bytes_saved_pct"] == pytest.approx(-10.0)
    assert rows.loc[("B", "compressed"), "speedup_pct"] == pytest.approx(0.0)


@pytest.mark.parametrize(("pipeline", "params", "wanted"), [
    ({"stages": [{"stage": "quantize"}]}, {}, "unknown compression stage 'quantize' (did you "
                                                "mean quantise?)"),
    ({"stages": [{"stage": "quantise", "bitz": 4}]}, {}, "did you mean bits?"),
    ({"stages": [{"stage": "distill"}], "probes": ["Z"]}, {}, "['Z'] are not probes"),
    ({"stages": [{"stage": "distill"}]},
     {"pipeline.gates.lam": {"type": "float", "low": 0.1, "high": 1.0}}, "no stage 'gates'"),
    ({"stages": [{"stage": "quantise"}]},
     {"pipeline.quantise.bits": {"type": "int", "low": 1, "high": 8}}, "quantise bits"),
])
def test_a_bad_pipeline_is_one_line_before_anything_runs(cli, pipeline, params, wanted) -> None:
    study = cli.write_study(with_pipeline(pipeline, params))
    result = cli("run", "--study", study, "--trials", 1)
    assert result.code == 2
    (line,) = result.err_lines
    assert wanted in line
    assert cli.nothing_written()


def test_the_magnitude_baseline_drops_the_weakest_edges_to_the_budget() -> None:
    nodes = {"n0": ["e0", "e1"], "n1": ["e2", "e3", "e4"]}
    scores = {"e0": 5.0, "e1": 1.0, "e2": 0.5, "e3": 3.0, "e4": 0.1}
    cost = dict.fromkeys(scores, 1.0)
    assert edges_under_budget(scores, cost, 3.0, nodes) == {"e0", "e3", "e1"}
    assert edges_under_budget(scores, cost, 2.0, nodes) == {"e0", "e3"}
    assert edges_under_budget(scores, cost, 0.0, nodes) == {"e0", "e3"}  # one input per node


def test_the_magnitude_baseline_runs_as_a_stage(tiny_space, tiny_data) -> None:
    net = tiny_network(tiny_space, tiny_data)
    costs = dict.fromkeys(edge_names(net), 1.0)
    settings = EdgeMagnitudeSettings(latency_budget_ms=len(costs) / 2, timing=QUICK_TIMING,
                                     fit=ONE_EPOCH)
    pruned, record = run_stage("edge_magnitude", net, tiny_data, settings,
                               Context(unit_latency_ms=costs))
    assert record.extra["kept_latency_ms"] <= len(costs) / 2
    for name in record.extra["pruned"]:
        assert isinstance(pruned.get_submodule(name), PrunedEdge)


def test_a_member_runs_on_int8_kernels_only_where_its_quantise_stage_did() -> None:
    from hpo.pipeline import deployed_model, stored_bytes

    model = nn.Sequential(nn.Linear(4, 3))
    four_bits = {"stage": "quantise", "extra": {"bits": {"0.weight": 4}}}
    assert deployed_model(model, [{"stage": "train", "extra": {}}], None) == (model, "float")
    assert deployed_model(model, [four_bits], None) == (model, "simulated")
    # 12 weights at 4 bits + their 4-byte threshold, 3 float32 biases
    assert stored_bytes(model, [four_bits]) == 12 * 4 // 8 + 4 + 3 * 4
    assert stored_bytes(model, []) == 15 * 4
