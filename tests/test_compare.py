"""``hpo compare`` on the built-in low-effective-dimension objective (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hpo_helpers import Hpo, states

from hpo.compare import study_name
from hpo.grid import grid_cells
from hpo.storage import open_storage
from hpo.study import load_study
from hpo.synthetic import SYNTHETIC

LOW_DIM = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"


def compare(cli: Hpo, *args: object):
    return cli("compare", "--study", LOW_DIM, "--artifacts", cli.artifacts, "-q", *args)


@pytest.mark.slow
def test_random_beats_grid_at_equal_budget(cli: Hpo) -> None:
    result = compare(cli, "--samplers", "grid,random", "--trials", 30, "--repeats", 3,
                     "--name", "bb")
    assert result.code == 0, result.err
    grid_best, random_best = [], []
    for repeat in range(3):
        grid = cli.study(study_name("bb", "grid", repeat))
        rand = cli.study(study_name("bb", "random", repeat))
        assert states(grid.get_trials()) == {"COMPLETE": 30}
        assert states(rand.get_trials()) == {"COMPLETE": 30}
        # the grid sized to 30 cells over 6 axes can afford only 2 values of x1
        assert len({t.params["x1"] for t in grid.get_trials()}) == 2
        assert len({t.params["x1"] for t in rand.get_trials()}) == 30
        assert grid.user_attrs["compare_group"] == "bb" and grid.user_attrs["budget"] == 30
        grid_best.append(grid.best_value)
        random_best.append(rand.best_value)
    assert min(random_best) > max(grid_best)
    lines = result.out.splitlines()
    assert lines[0].startswith("hpo compare: group bb on ") and lines[0].endswith("new group")
    header = next(i for i, line in enumerate(lines) if line.startswith("sampler "))
    assert "random" in lines[header + 1]  # the table is sorted best first
    # 3 paired repeats cannot reach p < 0.05 (smallest Wilcoxon p: 0.25); the run says so
    assert "- Too few repeats to conclude: with 3 paired repeats" in result.out
    assert "between random and grid at 3 repeats" in result.out
    # a deterministic objective's value is its worth: no second verdict
    assert "worth on fresh seeds" not in result.out


@pytest.mark.slow
def test_compare_resumes_without_new_trials(cli: Hpo) -> None:
    args = ("--samplers", "grid,tpe", "--trials", 8, "--repeats", 2, "--name", "again")
    assert compare(cli, *args).code == 0
    before = {n: len(cli.trials(study_name("again", s, r)))
              for n, (s, r) in enumerate([("grid", 0), ("grid", 1), ("tpe", 0), ("tpe", 1)])}
    again = compare(cli, *args)
    assert again.code == 0 and "resuming: 4 of 4 studies started" in again.out
    after = {n: len(cli.trials(study_name("again", s, r)))
             for n, (s, r) in enumerate([("grid", 0), ("grid", 1), ("tpe", 0), ("tpe", 1)])}
    assert before == after == dict.fromkeys(range(4), 8)
    grid0 = [t.params for t in cli.trials(study_name("again", "grid", 0))]
    grid1 = [t.params for t in cli.trials(study_name("again", "grid", 1))]
    assert grid0 != grid1  # the seed changes the order of the cells
    # another sampler joins the group: its banner counts its own studies, not the group's
    added = compare(cli, "--samplers", "RANDOM", "--trials", 8, "--repeats", 2, "--name", "again")
    assert added.code == 0
    assert "samplers random;" in added.out and "adding to the group's 4 studies" in added.out


def test_budget_grid_sizes() -> None:
    spec = load_study(LOW_DIM)
    assert len(grid_cells(spec, budget=64)) == 2**6
    assert len(grid_cells(spec, budget=728)) == 2**6
    assert len(grid_cells(spec, budget=729)) == 3**6
    values = sorted({c["x1"] for c in grid_cells(spec, budget=729)})
    assert values == [0.0, 0.5, 1.0]


def test_synthetic_optimum_is_the_maximum() -> None:
    objective = SYNTHETIC.get("low_effective_dimension")
    best = objective.fn({"x1": 0.71, "x2": 0.3})
    assert best == pytest.approx(objective.optimum)
    assert objective.fn({"x1": 0.5, "x2": 0.3}) < best
    branin = SYNTHETIC.get("branin")
    assert branin.fn({"x": 3.14159265, "y": 2.275}) == pytest.approx(branin.optimum, abs=1e-5)


@pytest.mark.parametrize(("args", "expected"), [
    (("--samplers", "grid,annealing", "--trials", 5), "annealing"),
    (("--samplers", "grid", "--trials", 5, "--repeats", 0), "--repeats"),
])
def test_bad_compare_input_is_one_line_and_writes_nothing(cli: Hpo, args, expected) -> None:
    result = compare(cli, *args)
    assert result.code == 2
    (line,) = result.err_lines
    assert expected in line
    assert cli.nothing_written()


@pytest.mark.slow
def test_report_of_a_real_comparison(cli: Hpo) -> None:
    """compare -> report: the lecture's layout numbers come out of the real studies."""
    from hpo import groups
    from reports import group_frames
    from reports.html import report_files

    assert compare(cli, "--samplers", "grid,random", "--trials", 30, "--repeats", 2,
                   "--name", "lecture").code == 0
    out = cli.tmp / "report"
    result = cli("report", "lecture", "--out", out)
    assert result.code == 0, result.err
    group = groups.group_studies(open_storage(str(cli.storage)), "lecture")
    distinct = group_frames.distinct_values(group)
    assert distinct.loc["grid", "x1"] == 2 and distinct.loc["random", "x1"] == 30
    assert group_frames.layout_axes(group)[0] == "x1"  # the one that matters
    finals = group_frames.final_best(group)
    assert set(finals["sampler"]) == {"grid", "random"}
    files = report_files(out / "index.html")
    assert files and all(f.exists() and f.stat().st_size > 0 for f in files)


@pytest.mark.slow
def test_an_accuracy_complexity_study_is_compared_by_hypervolume(cli: Hpo) -> None:
    from hpo_helpers import TINY_MULTI

    from hpo import facts, groups
    from reports import group_frames

    result = cli("compare", "--study", TINY_MULTI, "--artifacts", cli.artifacts, "-q",
                 "--samplers", "random,nsga2", "--trials", 3, "--repeats", 2, "--name", "mo",
                 "--jobs", 1, "--threads", 1)
    assert result.code == 0, result.err
    group = groups.group_studies(open_storage(str(cli.storage)), "mo")
    finals = group_frames.final_best(group)
    for study, best in zip(group.studies, finals["best"]):
        trials = facts.complete_trials(study)
        reference = group_frames.hypervolume_reference(study, trials)
        from search_core.metrics import hypervolume_2d

        assert best == pytest.approx(hypervolume_2d([t.values[0] for t in trials],
                                                    [t.values[1] for t in trials], reference))
        assert 0 < best < 1
    assert "- Too few repeats to conclude: with 2 paired repeats" in result.out
    out = cli.tmp / "report"
    assert cli("report", "mo", "--out", out).code == 0
    assert (out / "group-mo-attainment.png").is_file()
