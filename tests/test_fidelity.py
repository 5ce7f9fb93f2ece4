"""A study's fidelity (epochs, training and validation subsets, channels) and the
higher-fidelity family accuracy (``probes.accuracy: finetune``)."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from hpo_helpers import Hpo, setting

from hpo.records import TrialRecord
from hpo.study import load_study
from hpo.study_config import build_search_config
from hpo.study_spec import StudyError
from reports.fidelity import proxy_fidelity
from search_core.data import DataSplits
from search_core.family import evaluate_family
from search_core.probes import seed_probes
from search_core.result import SearchResult
from search_core.train import TrainRecipe, fine_tuned_accuracy, train_network

TINY = Path(__file__).resolve().parent / "studies" / "tiny.yaml"


def test_fidelity_sets_the_subsets_and_the_width(cli: Hpo) -> None:
    edits = [setting("fidelity.train_limit", 60), setting("fidelity.val_limit", 20),
             setting("fidelity.channels", 2), setting("fidelity.name", "cheap")]
    path = cli.write_study(lambda raw: [edit(raw) for edit in edits])
    spec = load_study(path)
    config = build_search_config(spec, {"kappa": 1.0})
    assert (config.data.train_limit, config.data.val_limit) == (60, 20)
    assert config.space.channels == 2 and config.train.epochs == 1
    assert spec.fidelity.name == "cheap"
    assert spec.fingerprint() != load_study(TINY).fingerprint()


def test_a_study_without_the_new_keys_keeps_its_fingerprint() -> None:
    """Studies started before fidelity subsets and probes.accuracy existed must resume:
    their fingerprint (recorded in the storage) is the one the earlier release computed."""
    assert load_study(TINY).fingerprint() == "4af9f8b04f4dcded"


def test_fidelity_and_a_parameter_may_not_set_the_same_setting(cli: Hpo) -> None:
    def edit(raw: dict) -> None:
        raw["fidelity"]["channels"] = 2
        raw["params"]["channels"] = {"type": "int", "low": 2, "high": 4}

    with pytest.raises(StudyError) as info:
        load_study(cli.write_study(edit))
    assert "params.channels: sets space.channels, as fidelity.channels does" in str(info.value)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("fidelity.width", 2, ["fidelity.width", "valid keys", "channels", "train_limit"]),
    ("fidelity.train_limit", 3, ["train_limit", ">= 10"]),
    ("probes.accuracy", "trained", ["probes.accuracy", "proxy", "finetune"]),
    ("probes.finetune_epochs", 0, ["probes.finetune_epochs", "[1, 100]"]),
])
def test_bad_fidelity_and_probe_settings_are_one_line(cli: Hpo, key: str, value: object,
                                                      words: list[str]) -> None:
    with pytest.raises(StudyError) as info:
        load_study(cli.write_study(setting(key, value)))
    message = str(info.value)
    assert "\n" not in message and len(message) <= 300
    for word in words:
        assert word in message, (word, message)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_shared_weights_and_leaves_them(
    tiny_result: SearchResult, tiny_data: DataSplits
) -> None:
    genotype = tiny_result.genotype(seed_probes(tiny_result.config.space.ops)[0].s)
    before = copy.deepcopy(tiny_result.supernet.state_dict())
    recipe = TrainRecipe(epochs=1, batch_size=32, seed=3)
    acc = fine_tuned_accuracy(genotype, tiny_result.config.space, tiny_data,
                              tiny_result.supernet, recipe)
    after = tiny_result.supernet.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    trained = train_network(genotype, tiny_result.config.space, tiny_data,
                            TrainRecipe(epochs=1, batch_size=32, seed=3, init="inherit"),
                            supernet=tiny_result.supernet)
    assert acc == trained.val_acc  # the same training as hpo train --from inherit, same seed
    scratch = train_network(genotype, tiny_result.config.space, tiny_data,
                            TrainRecipe(epochs=1, batch_size=32, seed=3))
    assert scratch.history[0]["train_loss"] != trained.history[0]["train_loss"]


@pytest.mark.slow
def test_family_accuracy_by_fine_tuning_each_distinct_genotype(
    tiny_result: SearchResult, tiny_data: DataSplits
) -> None:
    recipe = TrainRecipe(epochs=1, batch_size=32, seed=0)
    probes = seed_probes(tiny_result.config.space.ops)
    table = evaluate_family(tiny_result, tiny_data, probes, finetune=recipe)
    proxy = evaluate_family(tiny_result, tiny_data, probes)
    assert table.accuracy_kind == "finetune" and table.summary()["accuracy"] == "finetune"
    assert proxy.summary()["accuracy"] == "proxy"
    space = tiny_result.config.space
    for member in table.members:
        assert member.accuracy == fine_tuned_accuracy(member.genotype, space, tiny_data,
                                                      tiny_result.supernet, recipe)
    assert [m.genotype for m in table.members] == [m.genotype for m in proxy.members]


@pytest.mark.slow
def test_a_study_with_fine_tuned_family_accuracy_runs(cli: Hpo) -> None:
    path = cli.write_study(lambda raw: raw["probes"].update(accuracy="finetune",
                                                            finetune_epochs=1))
    result = cli.run("--trials", 1, "--sampler", "random", study=path)
    assert result.code == 0, result.err
    (trial,) = cli.trials("tiny")
    record = TrialRecord.from_frozen(trial)
    assert record.family_summary["accuracy"] == "finetune"
    assert all(0 <= row["accuracy"] <= 1 for row in record.family)
    trained = cli("train", "tiny", "--probes", "A,B", "--epochs", 1, "--seeds", 1,
                  "--batch-size", 32, "--quiet", "--out", cli.tmp / "trained")
    assert trained.code == 0, trained.err
    (fidelity,) = proxy_fidelity(cli.study("tiny"))
    assert fidelity.accuracy_kind == "finetune"
    assert cli("report", "tiny", "--out", cli.tmp / "report").code == 0
    assert "Trained vs finetune accuracy" in (cli.tmp / "report" / "index.html").read_text()


@pytest.mark.slow
def test_rank_correlation_and_its_interval() -> None:
    from reports.fidelity import rank_correlation

    same, (low, high) = rank_correlation([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], "kendall")
    assert same == pytest.approx(1.0)  # every resample with variation agrees fully:
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    reverse, _ = rank_correlation([1, 2, 3, 4], [4, 3, 2, 1], "spearman")
    assert reverse == pytest.approx(-1.0)
    one_swap, (low, high) = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4], "kendall")
    assert one_swap == pytest.approx(4 / 6) and low < one_swap <= high
    assert math.isnan(rank_correlation([1, 2], [1, 2], "kendall")[0])


def test_the_proxy_on_the_test_split_is_measured_on_the_test_split(
    tiny_result: SearchResult, tiny_data: DataSplits
) -> None:
    from search_core.data import Split
    from search_core.family import hard_accuracy

    choice = tiny_result.genotype(seed_probes(tiny_result.config.space.ops)[0].s).choice(
        tiny_result.config.space)
    val = hard_accuracy(tiny_result.supernet, choice, tiny_data)
    as_test = dataclasses.replace(tiny_data, test=tiny_data.val)
    assert hard_accuracy(tiny_result.supernet, choice, as_test, "test") == val
    wrong = Split(tiny_data.val.x, (tiny_data.val.y + 1) % tiny_data.num_classes)
    relabelled = dataclasses.replace(as_test, val=wrong)
    assert hard_accuracy(tiny_result.supernet, choice, relabelled, "test") == val
    assert hard_accuracy(tiny_result.supernet, choice, relabelled) != val
