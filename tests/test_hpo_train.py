"""``hpo train``: a trial's family members trained on their own, recorded in the study,
resumable, deterministic, with one-line errors."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hpo_helpers import Hpo

from hpo.records import TRAINED_ATTR, TrialRecord
from reports.fidelity import proxy_fidelity, rank_agreement

QUICK = ("--epochs", 2, "--seeds", 2, "--batch-size", 32, "--quiet")


@pytest.fixture
def searched(cli: Hpo) -> Hpo:
    result = cli.run("--trials", 1, "--sampler", "random")
    assert result.code == 0, result.err
    return cli


def train(cli: Hpo, *args: Any) -> Any:
    return cli("train", "tiny", "--out", cli.tmp / "trained", *args)


def outcome(cli: Hpo) -> dict[str, Any]:
    return cli.study("tiny").user_attrs[TRAINED_ATTR.format(number=0)]


@pytest.mark.slow
def test_probes_are_trained_per_distinct_genotype_and_recorded(searched: Hpo) -> None:
    result = train(searched, "--probes", "all", *QUICK)
    assert result.code == 0, result.err
    family = TrialRecord.from_frozen(searched.trials("tiny")[0]).family
    recorded = outcome(searched)
    members = recorded["members"]
    assert sorted(m["genotype"] for m in members) == sorted({r["genotype"] for r in family})
    assert sorted(p for m in members for p in m["labels"]) == sorted(r["probe"] for r in family)
    for member in members:
        tests = [run["test_acc"] for run in member["runs"]]
        assert member["seeds"] == [0, 1] and len(member["runs"]) == 2
        assert member["test_acc_mean"] == pytest.approx(statistics.fmean(tests))
        assert member["test_acc_sd"] == pytest.approx(statistics.stdev(tests))
        assert all(len(run["history"]) == 2 for run in member["runs"])
        proxy = next(r["accuracy"] for r in family if r["genotype"] == member["genotype"])
        assert member["proxy_accuracy"] == proxy
        assert member["latency_ms"] > 0  # measured here, batch 1
    assert recorded["recipe"]["epochs"] == 2 and recorded["recipe"]["init"] == "scratch"
    saved = json.loads((searched.tmp / "trained" / "trial-0" / "trained.json").read_text())
    assert saved == recorded
    assert "test accuracy mean ± sd" in result.out


@pytest.mark.slow
def test_a_rerun_continues_from_the_checkpoints(searched: Hpo) -> None:
    assert train(searched, "--probes", "A", *QUICK).code == 0
    first = outcome(searched)
    checkpoints = sorted((searched.tmp / "trained" / "trial-0").glob("*.pt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    assert len(checkpoints) == 2  # one genotype, two seeds
    assert train(searched, "--probes", "A", *QUICK).code == 0
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps  # nothing trained again
    again = outcome(searched)
    for before, after in zip(first["members"], again["members"]):
        assert before["test_acc_mean"] == after["test_acc_mean"]


@pytest.mark.slow
def test_parallel_trainings_give_the_same_results(searched: Hpo, tmp_path: Path) -> None:
    assert train(searched, "--probes", "A,B", *QUICK).code == 0
    sequential = outcome(searched)
    result = searched("train", "tiny", "--out", tmp_path / "parallel", "--probes", "A,B",
                      "--jobs", 2, *QUICK)
    assert result.code == 0, result.err
    parallel = outcome(searched)
    assert [m["test_acc_mean"] for m in parallel["members"]] == \
        [m["test_acc_mean"] for m in sequential["members"]]


@pytest.mark.slow
def test_an_s_vector_and_inherited_weights(searched: Hpo) -> None:
    result = train(searched, "--s", "0.2,0.3,0.5", "--from", "inherit", "--epochs", 1,
                   "--seeds", 1, "--batch-size", 32, "--quiet")
    assert result.code == 0, result.err
    (member,) = outcome(searched)["members"]
    assert member["labels"] == ["s=0.2,0.3,0.5"]
    assert outcome(searched)["recipe"]["init"] == "inherit"


@pytest.mark.parametrize(("args", "words"), [
    (("--probes", "Z"), ["--probes", "not in trial 0's family"]),
    (("--s", "a,b"), ["--s", "comma-separated numbers"]),
    (("--probes", "A", "--seeds", 0), ["--seeds", "need >= 1"]),
    (("--probes", "A", "--train-limit", "lots"), ["--train-limit", "a number or 'all'"]),
    (("--probes", "A", "--trial", 7), ["--trial", "not a complete trial"]),
])
def test_bad_input_is_one_line_and_exit_2(searched: Hpo, args: tuple, words: list[str]) -> None:
    result = train(searched, *args, "--quiet")
    assert result.code == 2
    (line,) = result.err_lines
    assert line.startswith("hpo train: error:") and all(w in line for w in words), line
    assert TRAINED_ATTR.format(number=0) not in searched.study("tiny").user_attrs


@pytest.mark.slow
def test_the_report_shows_trained_beside_proxy(searched: Hpo) -> None:
    assert train(searched, "--probes", "all", *QUICK).code == 0
    result = searched("report", "tiny", "--out", searched.tmp / "report")
    assert result.code == 0, result.err
    (fidelity,) = proxy_fidelity(searched.study("tiny"))
    assert fidelity.trial == 0 and len(fidelity.frame) == len(outcome(searched)["members"])
    index = (searched.tmp / "report" / "index.html").read_text()
    assert "Trained vs proxy accuracy" in index and "Proxy fidelity, trial 0" in index
    assert (searched.tmp / "report" / "tiny-trained-0.png").stat().st_size > 0


@pytest.mark.slow
def test_rank_agreement_and_its_bootstrap_interval() -> None:
    proxy = [0.50, 0.60, 0.70, 0.80, 0.90, 0.95]
    same = pd.DataFrame({"proxy_accuracy": proxy, "test_acc_mean": [p + 0.05 for p in proxy]})
    tau, (low, high) = rank_agreement(same, "kendall")
    assert tau == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    reverse = same.assign(test_acc_mean=list(reversed(same["test_acc_mean"])))
    assert rank_agreement(reverse, "spearman")[0] == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    noise = pd.DataFrame({"proxy_accuracy": rng.random(12), "test_acc_mean": rng.random(12)})
    tau, (low, high) = rank_agreement(noise, "kendall")
    assert low < tau < high and high - low > 0.3  # 12 unrelated genotypes: a wide interval
    assert math.isnan(rank_agreement(same.head(2), "kendall")[0])  # too few to rank


@pytest.mark.slow
def test_the_member_under_a_latency_budget(searched: Hpo) -> None:
    result = train(searched, "--latency-budget", "1000ms", "--epochs", 1, "--seeds", 1,
                   "--batch-size", 32, "--quiet")
    assert result.code == 0, result.err
    (member,) = outcome(searched)["members"]
    assert member["labels"][0].startswith("s=") and 0 < member["latency_ms"] < 1000
    assert "under 1000 ms" in result.out
    impossible = train(searched, "--latency-budget", "0.0001ms", "--quiet")
    assert impossible.code == 2 and "no family member runs under" in impossible.err
