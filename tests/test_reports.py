"""reports/: data objects, figures and the HTML report, on a tiny real study and hand-made
comparison groups in one journal file."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from hpo import groups
from hpo.cli.report import add_parser, cmd_report
from hpo.storage import open_storage
from reports import group_frames, study_frames
from reports.html import render_table, report_files, write_report
from reports.page import Section, add_table
from search_core.errors import ConfigError
from search_core.metrics import pareto_front

ROOT = Path(__file__).resolve().parent.parent
FLOAT = optuna.distributions.FloatDistribution(0.0, 1.0)
CAT = optuna.distributions.CategoricalDistribution(["a", "b", "c"])

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(storage, name: str, values: list[float], params: list[dict],
           direction: str = "maximize", **attrs):
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    dists = {"x": FLOAT, "y": FLOAT, "c": CAT}
    for value, p in zip(values, params):
        study.add_trial(optuna.trial.create_trial(
            params=p, distributions={k: dists[k] for k in p}, value=value))
    return study


def _group_attrs(group: str, sampler: str, repeat: int) -> dict:
    return {"compare_group": group, "sampler": sampler, "repeat": repeat, "budget": 10,
            "seed": repeat, "study_source": "synthetic"}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tiny (3 real trials with families), a synthetic study, groups `cmp` and `ttt`."""
    tmp = tmp_path_factory.mktemp("reports")
    url = str(tmp / "x.journal")
    subprocess.run(
        [sys.executable, "-m", "hpo.cli", "run", "--study", "tests/studies/tiny.yaml",
         "--trials", "3", "--storage", url, "--artifacts", str(tmp / "art"), "--threads", "1",
         "-q"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    storage = open_storage(url, must_exist=True)
    rng = np.random.default_rng(0)
    _study(storage, "synthetic", list(rng.random(6)),
           [{"x": float(rng.random()), "c": "abc"[i % 3]} for i in range(6)], sampler="random")
    # cmp: grid uses only 2 distinct x values, random 10; 3 samplers x 3 repeats.
    for sampler in ("grid", "random", "tpe"):
        for repeat in range(3):
            xs = ([0.0, 1.0] * 5 if sampler == "grid" else list((np.arange(10) + rng.random())
                                                               / 10.5))
            ys = list(rng.random(10))
            values = [float(x + 0.1 * y + 0.05 * rng.random()) for x, y in zip(xs, ys)]
            _study(storage, f"cmp-{sampler}-{repeat}", values,
                   [{"x": float(x), "y": float(y)} for x, y in zip(xs, ys)],
                   **_group_attrs("cmp", sampler, repeat))
    # ttt: hand-made values; known optimum 0.9.
    for sampler, values in (("a", [0.1, 0.5, 0.9]), ("b", [0.2, 0.3, 0.4])):
        _study(storage, f"ttt-{sampler}", values, [{"x": v} for v in values],
               known_optimum=0.9, **_group_attrs("ttt", sampler, 0))
    # pareto: (accuracy, complexity) studies; hand-made points, reference complexity 10.
    runs = {("a", 0): [(0.5, 8.0), (0.9, 4.0)], ("a", 1): [(0.6, 2.0)],
            ("b", 0): [(0.2, 5.0)], ("b", 1): [(0.4, 1.0), (0.1, 9.0)]}
    for (sampler, repeat), points in runs.items():
        study = optuna.create_study(study_name=f"pareto-{sampler}-{repeat}", storage=storage,
                                    directions=["maximize", "minimize"])
        for key, value in {**_group_attrs("pareto", sampler, repeat),
                           "reference_complexity": 10.0}.items():
            study.set_user_attr(key, value)
        for acc, cx in points:
            study.add_trial(optuna.trial.create_trial(
                params={"x": acc}, distributions={"x": FLOAT}, values=[acc, cx]))
    # low: a minimised objective; hand-made values.
    for sampler, values in (("a", [0.5, 0.2, 0.4]), ("b", [0.9, 0.6, 0.7])):
        _study(storage, f"low-{sampler}", values, [{"x": v} for v in values],
               direction="minimize", **_group_attrs("low", sampler, 0))
    return url


@pytest.fixture(scope="module")
def storage(journal: str):
    return open_storage(journal, must_exist=True)


def _non_dominated(acc, cx) -> bool:
    acc, cx = np.asarray(acc, float), np.asarray(cx, float)
    for i in range(len(acc)):
        if np.any((acc >= acc[i]) & (cx <= cx[i]) & ((acc > acc[i]) | (cx < cx[i]))):
            return False
    return True


@pytest.mark.slow
def test_study_data(storage):
    study = optuna.load_study(study_name="tiny", storage=storage)
    frame = study_frames.study_frame(study)
    assert len(frame) == 3 and frame["best_so_far"].is_monotonic_increasing
    assert frame["best_so_far"].iloc[-1] == pytest.approx(study.best_value)

    front = study_frames.best_family_front(study)
    assert front is not None and front.trial == study.best_trial.number
    f = front.front
    assert _non_dominated(f["accuracy"], f["params"])
    assert f["accuracy"].max() == front.members["accuracy"].max()  # most accurate is on it
    assert f["params"].min() == front.members["params"].min()  # smallest too
    assert set(front.members.loc[front.members["is_seed_probe"], "probe"]) == set("ABCD")

    union = study_frames.union_front(study)
    assert union is not None and set(union.members["trial"]) == {t.number for t in study.trials}
    u = union.front
    assert _non_dominated(u["accuracy"], u["params"])
    assert u["accuracy"].max() == union.members["accuracy"].max()
    assert len(u) == len(pareto_front(union.members["accuracy"], union.members["params"]))

    probes = study_frames.probe_table(study.best_trial)
    assert list(probes["probe"]) == list("ABCD")
    assert {"accuracy", "params", "cell_params", "n_sep_conv_3x3"} <= set(probes.columns)
    counts = study_frames.op_counts_by_probe(study.best_trial)
    assert list(counts.index) == list("ABCD")
    assert list(counts.columns) == ["max_pool_3x3", "skip_connect", "sep_conv_3x3"]

    imp = study_frames.importance(study)
    assert imp == {} or set(imp) == set(study.best_trial.params)
    par = study_frames.parallel_frame(study)
    params = par.drop(columns="value")
    assert ((params >= 0) & (params <= 1)).all().all()


def test_synthetic_study_has_no_family(storage):
    study = optuna.load_study(study_name="synthetic", storage=storage)
    assert study_frames.best_family_front(study) is None and study_frames.union_front(study) is None
    assert study_frames.probe_table(study.best_trial).empty
    assert len(study_frames.study_frame(study)) == 6


def test_group_best_so_far(storage):
    group = groups.group_studies(storage, "cmp")
    assert group is not None and len(group.studies) == 9
    assert group.samplers == ["grid", "random", "tpe"]
    curves = group_frames.best_so_far(group)
    for study in group.studies:
        curve = curves[curves["study"] == study.study_name].sort_values("trial")
        assert curve["best"].is_monotonic_increasing
        assert curve["best"].iloc[-1] == pytest.approx(study.best_value)
    summary = group_frames.best_so_far_summary(curves)
    assert (summary["q25"] <= summary["median"]).all()
    assert (summary["median"] <= summary["q75"]).all()
    finals = group_frames.final_best(group)
    assert len(finals) == 9 and (finals["trials"] == 10).all()


@pytest.mark.slow
def test_distinct_values_and_layout(storage):
    group = groups.group_studies(storage, "cmp")
    distinct = group_frames.distinct_values(group)
    assert distinct.loc["grid", "x"] == 2
    assert distinct.loc["random", "x"] == 10
    assert distinct.loc["grid", "y"] == 10
    axes = group_frames.layout_axes(group)
    assert axes is not None and set(axes) <= {"x", "y"}
    # the objective is mostly x: fANOVA (or the fallback's first param) picks it
    assert axes[0] == "x"


def test_trials_to_target(storage):
    group = groups.group_studies(storage, "ttt")
    assert group_frames.default_target(group) == 0.9  # known optimum
    ttt = group_frames.trials_to_target(group).set_index("sampler")
    assert ttt.loc["a", "trials"] == 3 and math.isnan(ttt.loc["b", "trials"])
    ttt = group_frames.trials_to_target(group, target=0.35).set_index("sampler")
    assert ttt.loc["a", "trials"] == 2 and ttt.loc["b", "trials"] == 3


def test_group_of_a_minimised_objective(storage):
    group = groups.group_studies(storage, "low")
    curves = group_frames.best_so_far(group)
    assert curves[curves["sampler"] == "a"]["best"].tolist() == [0.5, 0.2, 0.2]
    finals = group_frames.final_best(group).set_index("sampler")["best"]
    assert finals.to_dict() == {"a": 0.2, "b": 0.6}
    ttt = group_frames.trials_to_target(group, target=0.3).set_index("sampler")  # reached: <= 0.3
    assert ttt.loc["a", "trials"] == 2 and math.isnan(ttt.loc["b", "trials"])
    assert group_frames.paired_verdict(group).ranks.index[0] == "a"


def test_pareto_group_scores_by_hypervolume_and_attainment(storage):
    group = groups.group_studies(storage, "pareto")
    curves = group_frames.best_so_far(group).set_index(["study", "trial"])
    # box: complexity 0..10 x accuracy 0..1; a0's (0.5, 8) covers 2 x 0.5, then (0.9, 4)
    # dominates it and covers 6 x 0.9
    assert curves.loc[("pareto-a-0", 1), "best"] == pytest.approx(0.5 * 2 / 10)
    assert curves.loc[("pareto-a-0", 2), "best"] == pytest.approx(0.9 * 6 / 10)
    assert curves.loc[("pareto-b-1", 2), "best"] == pytest.approx(0.4 * 9 / 10)
    finals = group_frames.final_best(group).set_index("study")["best"]
    assert finals["pareto-a-1"] == pytest.approx(0.6 * 8 / 10)
    surfaces = group_frames.attainment(group)
    a = surfaces[surfaces["sampler"] == "a"].set_index("complexity")
    assert list(a.index) == [2.0, 4.0, 8.0]
    assert (a.loc[2.0, "best"], a.loc[4.0, "best"], a.loc[4.0, "worst"]) == (0.6, 0.9, 0.6)
    assert np.isnan(a.loc[2.0, "worst"]) and a.loc[2.0, "median"] == 0.6
    assert group_frames.paired_verdict(group).ranks.index[0] == "a"


def test_paired_verdict_pairs_repeats(storage):
    group = groups.group_studies(storage, "cmp")
    verdict = group_frames.paired_verdict(group)
    assert verdict.samplers == ["grid", "random", "tpe"] and verdict.repeats == 3
    assert len(verdict.pairs) == 3
    assert all(0 <= p.p_value <= p.p_holm <= 1 for p in verdict.pairs)
    finals = group_frames.final_best(group)
    blocks = finals.pivot_table(index="repeat", columns="sampler", values="best")
    assert verdict.ranks.to_dict() == pytest.approx(
        blocks.rank(axis=1, ascending=False).mean().to_dict())
    assert verdict.sentences()[0].startswith("Too few repeats to conclude: with 3 paired")


def _check_index(index: Path) -> list[Path]:
    text = index.read_text()
    assert not re.search(r"https?://", text)
    assert "<script" not in text
    files = report_files(index)
    assert files
    for path in files:
        assert path.is_file() and path.stat().st_size > 0, path
    return files


@pytest.mark.slow
def test_report(journal, tmp_path):
    index = write_report(journal, ["tiny", "synthetic", "cmp", "ttt"], tmp_path / "out")
    files = _check_index(index)
    names = {p.name for p in files}
    for stem in ("tiny-front", "tiny-ops", "tiny-history", "tiny-importance",
                 "tiny-parallel", "synthetic-history", "group-cmp-best-trials",
                 "group-cmp-best-time", "group-cmp-final", "group-cmp-layout", "group-cmp-cd"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    assert "tiny-front.png" in names and "synthetic-front.png" not in names
    text = index.read_text()
    assert "tests/studies/tiny.yaml" in text and "grid, random, tpe" in text
    assert "Too few repeats to conclude" in text and "group-cmp-pairs.csv" in text
    assert re.search(r"Target [0-9.]+: grid reached it in \d of 3 repeats", text)


@pytest.mark.slow
def test_a_second_report_into_one_folder_keeps_none_of_the_first(journal, tmp_path):
    """It kept the first study's figures and tables beside its own."""
    out = tmp_path / "out"
    write_report(journal, ["tiny"], out)
    assert any(p.name.startswith("tiny-") for p in out.iterdir())
    (out / "notes.txt").write_text("mine")
    write_report(journal, ["synthetic"], out)
    names = {p.name for p in out.iterdir()}
    assert not any(n.startswith("tiny-") for n in names), sorted(names)
    assert "synthetic-history.png" in names and "notes.txt" in names


def test_unknown_name(journal, tmp_path):
    with pytest.raises(ConfigError, match=r"available studies: .*tiny.*groups: .*cmp"):
        write_report(journal, ["nope"], tmp_path)


@pytest.mark.slow
def test_cli(journal, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "ttt", "--out", str(tmp_path / "r"),
                              "--storage", journal])
    assert cmd_report(args) == 0
    assert "index.html" in capsys.readouterr().out
    _check_index(tmp_path / "r" / "index.html")


@pytest.mark.slow
def test_no_torch(journal, tmp_path):
    code = ("import sys, reports, reports.study_frames, reports.group_frames, reports.fidelity\n"
            "import reports.figures, reports.html, hpo.cli.report\n"
            "from reports.html import write_report\n"
            f"write_report({journal!r}, ['tiny', 'cmp'], {str(tmp_path)!r})\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.mark.slow
def test_report_layout_fits_its_window_and_names_no_private_path(journal, tmp_path):
    index = write_report(journal, ["tiny", "cmp"], tmp_path / "out")
    text = index.read_text()
    css = re.search(r"<style>(.*)</style>", text, re.S)[1]
    assert re.search(r"\.table-wrap\s*\{[^}]*overflow-x:\s*auto", css)
    assert "anywhere" not in css  # it broke "COMPLETE" letter by letter
    assert text.count("<table") == text.count("<div class='table-wrap'><table")
    assert str(Path(journal).parent) not in text and str(tmp_path) not in text
    assert "storage: x.journal" in text
    assert "{'" not in text  # the best trial is text, not a raw dict
    assert "rows: <a href='group-cmp-best-so-far.csv'>csv</a>" in text  # linked, not drawn
    assert "L0, L1, ... are the points of an even lattice" in text
    assert "Importances come from 3 complete trials: too few" in text
    assert "3 repeat(s) per sampler: the boxes, bands and tests below rest on too few" in text


def test_parallel_axes_are_labelled_with_choices_and_range_ends(storage):
    frame = study_frames.parallel_frame(optuna.load_study(study_name="synthetic", storage=storage))
    ticks = frame.attrs["ticks"]
    assert ticks["c"] == [(0.0, "a"), (0.5, "b"), (1.0, "c")]
    assert [label for _, label in ticks["x"]] == ["0", "1"]


def test_a_long_table_shows_a_preview_and_links_every_row(tmp_path):
    frame = pd.DataFrame({"trial": range(30), "empty": [None] * 30, "value": np.arange(30.0)})
    heading, box, link = render_table("Trials", frame, tmp_path / "t.csv", 10, 3)
    assert heading == "<h3>Trials (first 10 of 30 rows; all in the csv)</h3>"
    assert re.findall(r"<th>(.*?)</th>", box) == ["trial", "value"]  # no all-empty column
    assert re.findall(r"<tr>\s*<td>(\d+)</td>", box) == [str(i) for i in range(10)]
    assert link == "<div class='files'><a href='t.csv'>csv</a></div>"


def _digits_like_study() -> optuna.Study:
    """Two trials of a hypervolume study with the shipped digits study's 7 parameters (its
    Trials table had 16 columns and was cut at 1100 px)."""
    study = optuna.create_study(direction="maximize")
    with warnings.catch_warnings():  # experimental in Optuna 3.2-5.0
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["hypervolume"])
    dists = {"kappa": FLOAT, "t_start": FLOAT, "t_end": FLOAT, "bandwidth": FLOAT,
             "num_refs": optuna.distributions.IntDistribution(2, 8),
             "schedule": CAT, "placement": CAT}
    for number, value in enumerate((0.6, 0.7)):
        params = {name: (0.5 if isinstance(d, optuna.distributions.FloatDistribution)
                         else 4 if isinstance(d, optuna.distributions.IntDistribution) else "a")
                  for name, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=value,
            user_attrs={"family_summary": {"hypervolume": value, "controllability": 0.1},
                        "seconds": 1.0 + number, "seed": 0}))
    return study


def test_the_trials_table_names_parameters_plainly_and_fits_its_box(tmp_path):
    study = _digits_like_study()
    frame = study_frames.study_frame(study)
    assert len(frame.columns) == 16 and "param_kappa" in frame  # the data for the figures
    table = study_frames.trials_table(study, frame)
    assert not [c for c in table.columns if c.startswith("param_")]
    assert {"kappa", "schedule", "placement", "num_refs"} <= set(table.columns)
    assert list(table.columns).count("hypervolume") == 1 and "value" not in table
    assert table["hypervolume"].tolist() == [0.6, 0.7]

    section = Section("Study s", "study")
    add_table(section, tmp_path, "s-trials", "Trials", table,
              csv_only=study_frames.TRIALS_CSV_ONLY)
    (shown,) = section.tables
    assert len(shown.frame.columns) == 13  # 16 less the duplicate, elapsed_s, best_so_far
    assert {"elapsed_s", "best_so_far"} <= set(pd.read_csv(shown.path).columns)
    heading, box, link = render_table(*shown[:4], 3, shown.csv_only)
    assert heading == "<h3>Trials</h3>" and box.startswith("<div class='table-wrap'><table")
    assert re.findall(r"<th>(.*?)</th>", box)[:5] == ["number", "state", "hypervolume",
                                                       "kappa", "t_start"]
    assert link == ("<div class='files'><a href='s-trials.csv'>csv</a> (also elapsed_s, "
                    "best_so_far)</div>")


def test_wall_time_counts_time_spent_running_trials_not_the_gap_between_sessions() -> None:
    from datetime import datetime, timedelta

    from reports.study_frames import busy_seconds as _busy_seconds

    t0 = datetime(2026, 12, 1, 12)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    # two workers overlap (0-10, 5-20), then the run stops; resumed 5 hours later (18000-18030)
    spans = [(at(0), at(10)), (at(5), at(20)), (at(18000), at(18030))]
    assert _busy_seconds(spans, at(10)) == 10
    assert _busy_seconds(spans, at(20)) == 20
    assert _busy_seconds(spans, at(18030)) == 50
    assert _busy_seconds(spans, at(18015)) == 35


def test_the_reference_complexity_is_shown_as_a_number_not_a_float() -> None:
    """The report said "reference complexity 61010.0"."""
    from reports.study_section import _number

    assert [_number(v) for v in (61010.0, 2.734512, None, 7)] == ["61,010", "2.735", "-", "7"]
