"""The Python API (``import hpo``): run a study and read its results as pandas; the search as
an objective of the user's own Optuna study, whose trials ``hpo show``/``hpo report`` read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hpo_helpers import TINY, Hpo

import hpo
import hpo.trial
from hpo.study_spec import StudyError
from search_core.errors import ConfigError


def test_run_and_load_return_the_studys_trials_as_pandas(tmp_path: Path) -> None:
    storage = str(tmp_path / "api.journal")
    results = hpo.run("low-dim-synthetic", sampler="random", trials=6, seed=3,
                      storage=storage, artifacts=str(tmp_path / "art"))
    frame = results.trials()
    assert len(frame) == 6 and set(frame["state"]) == {"COMPLETE"}
    assert "low_effective_dimension" in frame and "param_x1" in frame
    best = results.best_trial
    assert best is not None
    assert best.value == frame["low_effective_dimension"].max()
    assert frame.loc[frame["best"], "number"].tolist() == [best.number]
    again = hpo.load("low-dim-synthetic", storage)
    assert again.trials().equals(frame)
    assert results.family().empty and results.front().empty  # nothing was trained


def test_a_study_given_as_a_mapping_runs_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(hpo.read_study("low-dim-synthetic").source)).read_text())
    raw["name"] = "from-a-dict"
    results = hpo.run(raw, sampler="tpe", trials=3, storage=str(tmp_path / "d.journal"),
                      artifacts=str(tmp_path / "art"))
    assert results.name == "from-a-dict" and len(results.trials()) == 3
    raw["params"]["x1"]["hgih"] = 2
    with pytest.raises(ConfigError) as bad:
        hpo.read_study(raw)
    assert "\n" not in str(bad.value) and "hgih" in str(bad.value)
    with pytest.raises(StudyError, match="did you mean the shipped study 'digits'"):
        hpo.read_study("digitz")


@pytest.mark.slow
def test_the_objective_in_a_users_own_optuna_study_is_what_hpo_show_and_report_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objective = hpo.OptunaObjective(TINY, artifacts=str(tmp_path / "art"))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "x.journal")))
    study = optuna.create_study(study_name="mine", storage=storage,
                                directions=objective.directions,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    results = hpo.load("mine", str(tmp_path / "x.journal"))
    family = results.family()
    assert {"A", "B", "C", "D"} <= set(family["probe"]) and family["accuracy"].between(0, 1).all()
    front = results.front()
    assert not front.empty and set(front["trial"]) <= {0, 1}
    cli = Hpo(tmp_path, capsys)
    shown = cli("show", "mine")
    assert shown.code == 0 and "hypervolume" in shown.out
    report = cli("report", "mine", "--out", tmp_path / "report")
    assert report.code == 0, report.err
    assert (tmp_path / "report" / "index.html").is_file()


def test_the_objective_refuses_a_study_of_other_directions(tmp_path: Path) -> None:
    objective = hpo.OptunaObjective(TINY)
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ConfigError, match=r"directions=objective\.directions"):
        objective.prepare(study)


def test_a_failed_search_is_a_failed_trial_with_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the data loader broke")

    monkeypatch.setattr(hpo.trial, "evaluate", broken)
    objective = hpo.OptunaObjective("low-dim-synthetic", artifacts=str(tmp_path / "art"))
    study = optuna.create_study(directions=objective.directions)
    study.optimize(objective, n_trials=2, catch=(hpo.TrialFailed,))
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: the data loader broke"


@pytest.mark.slow
def test_importing_hpo_loads_neither_optuna_nor_torch() -> None:
    code = ("import sys, hpo; hpo.__version__; "
            "print('optuna' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["False", "False"]


def docstring_examples() -> list[tuple[str, str]]:
    """The ```python blocks of hpo.api's docstrings, by where they are."""
    import inspect
    import re

    import hpo.api

    owners = [hpo.api, *(getattr(hpo.api, name) for name in hpo.api.__all__)]
    return [(getattr(owner, "__name__", "hpo.api"), block)
            for owner in owners
            for block in re.findall(r"```python\n(.*?)```", inspect.getdoc(owner) or "", re.S)]


@pytest.mark.slow
@pytest.mark.parametrize(("where", "code"), docstring_examples())
def test_the_docstring_examples_run(where: str, code: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{where}: {done.stderr[-2000:]}"


def test_the_api_documents_its_examples() -> None:
    assert {where for where, _ in docstring_examples()} >= {"hpo.api", "OptunaObjective"}
