"""``hpo profile``, latency as the study's complexity axis and as op costs, and
``hpo export --latency-budget``: end to end through the CLI on tiny studies."""

from __future__ import annotations

import json

import pytest
import torch
from hpo_helpers import TINY, Hpo, Result, setting

import hpo.cli
from search_core.genotype import Genotype
from search_core.latency import LatencyTable

QUICK = ("--fit", 3, "--validate", 3, "--rounds", 7)


def profile(cli: Hpo, *args: object) -> Result:
    """``hpo profile`` (it takes no --storage) on the tiny study, quick settings."""
    capsys = cli._capsys
    capsys.readouterr()
    code = hpo.cli.main(["profile", "--study", str(TINY), *map(str, (*QUICK, *args))])
    out, err = capsys.readouterr()
    return Result(code, out, err)


@pytest.mark.slow
def test_profile_writes_a_table_that_predicts_held_out_networks(cli: Hpo) -> None:
    out = cli.tmp / "t.json"
    result = profile(cli, "--out", out)
    assert result.code == 0, result.err
    table = LatencyTable.load(out)
    assert table.fingerprint["threads"] == 1 and table.fingerprint["torch"] == torch.__version__
    assert list(table.entries) == [1]
    (validation,) = table.validations
    assert validation["fit"] == 3 and len(validation["records"]) == 3
    assert {"naive", "corrected"} <= set(validation)
    assert "rank corr" in result.out and "corrected" in result.out
    assert out.name in result.out

    again = profile(cli, "--out", cli.tmp / "t2.json", "--compare", out, "--batch", 4, "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert summary["batches"] == [1, 4]
    assert [s["batch"] for s in summary["spaces"]] == [1, 4]
    agreement = summary["agreement_with"]
    assert agreement["entries"] == len(table.entries[1])  # batch 1 parts in both
    assert 0 <= agreement["within_spread"] <= 1 and agreement["fingerprint_differs"] == []


@pytest.mark.parametrize("args, words", [
    (["--threads", "0"], ["--threads", "0"]),
    (["--fit", "1"], ["--fit", "1"]),
    (["--compare", "nope.json"], ["--compare", "nope.json"]),
    (["--device", "tpu"], ["--device", "tpu"]),
])
def test_profile_bad_input_is_one_line_and_writes_nothing(cli: Hpo, args, words) -> None:
    out = cli.tmp / "t.json"
    result = profile(cli, "--out", out, *args)
    assert result.code == 2
    (line,) = result.err_lines
    assert all(w in line for w in words)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_profile_on_cuda_without_a_gpu_says_so(cli: Hpo) -> None:
    result = profile(cli, "--out", cli.tmp / "t.json", "--device", "cuda")
    assert result.code == 2
    (line,) = result.err_lines
    assert "cuda" in line and "--device cpu" in line


@pytest.mark.slow
def test_a_study_on_the_latency_axis_records_measured_latencies(cli: Hpo) -> None:
    study = cli.write_study(setting("objective.complexity", "latency"))
    assert cli.run("--trials", 1, "--name", "lat", study=study).code == 0
    s = cli.study("lat")
    reference = s.user_attrs["reference_complexity"]
    (trial,) = s.get_trials()
    rows = trial.user_attrs["family"]
    assert trial.user_attrs["family_summary"]["complexity"] == "latency"
    assert all(row["latency_ms"] > 0 for row in rows)
    assert reference >= 0.5 * max(row["latency_ms"] for row in rows)  # the slowest network
    assert 0 < trial.value <= reference


@pytest.mark.slow
def test_a_compare_group_shares_one_measured_reference(cli: Hpo) -> None:
    """A measured (noisy) reference measured per study would make the group's hypervolumes
    incomparable: the group measures it once."""
    study = cli.write_study(setting("objective.complexity", "latency"))
    result = cli("compare", "--study", study, "--samplers", "random,tpe", "--trials", 1,
                 "--repeats", 2, "--name", "g", "--artifacts", cli.artifacts, "--threads", 1,
                 "-q")
    assert result.code == 0, result.err
    names = [f"g.{sampler}.r{r}" for r in range(2) for sampler in ("random", "tpe")]
    references = {cli.study(n).user_attrs["reference_complexity"] for n in names}
    assert len(references) == 1 and references.pop() > 0


@pytest.mark.slow
def test_latency_op_costs_need_a_table_before_anything_is_written(cli: Hpo) -> None:
    missing = cli.tmp / "missing.json"
    study = cli.write_study(lambda raw: raw["search"]["train"].update(
        op_costs="latency", latency_table=str(missing)))
    result = cli.run("--trials", 1, study=study)
    assert result.code == 2
    (line,) = result.err_lines
    assert str(missing) in line and "hpo profile" in line
    assert cli.nothing_written()

    table = cli.tmp / "t.json"
    assert profile(cli, "--out", table).code == 0
    study = cli.write_study(lambda raw: raw["search"]["train"].update(
        op_costs="latency", latency_table=str(table)))
    assert cli.run("--trials", 1, "--name", "costed", study=study).code == 0
    assert cli.trials("costed")[0].state.name == "COMPLETE"


@pytest.mark.slow
def test_export_under_a_latency_budget(cli: Hpo) -> None:
    assert cli.run("--trials", 1, "--name", "x").code == 0
    table = cli.tmp / "t.json"
    assert profile(cli, "--out", table).code == 0
    out = cli.tmp / "g.json"
    roomy = cli("export", "x", "--latency-budget", "10s", "--latency-table", table, "--out", out)
    assert roomy.code == 0, roomy.err
    payload = json.loads(out.read_text())
    assert payload["latency_ms"] <= payload["latency_budget_ms"] == 10_000
    assert payload["searched"]["s_vectors"] > 100
    assert payload["searched"]["under_budget"] == payload["searched"]["measured"] >= 1
    genotype = Genotype.from_dict(payload["genotype"])
    assert "under 10000 ms" in roomy.out and "validation accuracy" in roomy.out
    assert payload["accuracy"] >= 0 and genotype.edges

    tight_out = cli.tmp / "none.json"
    tight = cli("export", "x", "--latency-budget", "1us", "--out", tight_out)
    assert tight.code == 2
    (line,) = tight.err_lines
    assert "no family member" in line and "fastest" in line
    assert not tight_out.exists()

    bad = cli("export", "x", "--latency-budget", "soon", "--out", tight_out)
    assert bad.code == 2 and "soon" in bad.err_lines[0]
