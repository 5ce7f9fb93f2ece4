"""Ray, scikit-optimize and matplotlib are extras: a feature whose extra is missing says,
in one line before anything runs, which extra installs it (CI's wheel check runs
``--backend ray`` where ray is really absent)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
from hpo_helpers import Hpo

from hpo.backend_registry import BACKENDS
from hpo.samplers import SAMPLERS
from search_core.errors import ConfigError, require_extra

ABSENT = "nas_hpo_no_such_module"


def test_require_extra_names_the_extra_only_when_the_module_is_missing() -> None:
    require_extra("yaml", "any", "reading YAML")  # installed: nothing happens
    with pytest.raises(ConfigError, match=r'pip install "nas-hpo\[plot\]"'):
        require_extra(ABSENT, "plot", "a report's figures")


def test_a_backend_without_its_extra_is_one_line_and_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hpo = Hpo(tmp_path, capsys)
    with BACKENDS.temporarily("ray", replace(BACKENDS.get("ray"), needs=(ABSENT, "ray"))):
        answer = hpo.run("--backend", "ray")
    assert answer.code == 2
    assert answer.err_lines == [f'hpo run: error: --backend ray needs {ABSENT}, which is not '
                                'installed; install it with pip install "nas-hpo[ray]"']
    assert hpo.nothing_written()


def test_a_sampler_without_its_extra_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    hpo = Hpo(tmp_path, capsys)
    with SAMPLERS.temporarily("skopt", replace(SAMPLERS.get("skopt"), needs=(ABSENT, "skopt"))):
        answer = hpo.run("--sampler", "skopt")
    assert answer.code == 2
    assert len(answer.err_lines) == 1 and 'pip install "nas-hpo[skopt]"' in answer.err
    assert hpo.nothing_written()


def test_a_report_without_matplotlib_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    hpo = Hpo(tmp_path, capsys)
    assert hpo.run("--trials", "1").code == 0
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    answer = hpo("report", "tiny", "--out", tmp_path / "out")
    assert answer.code == 2
    assert len(answer.err_lines) == 1 and 'pip install "nas-hpo[plot]"' in answer.err
    assert not (tmp_path / "out").exists()
