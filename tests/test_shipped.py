"""The study files and tables shipped with nas-hpo: found as package data from any folder,
listed and copied out by ``hpo studies``, and run by name with ``--study NAME``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hpo_helpers import Hpo

from hpo.shipped import shipped_folder, shipped_studies, study_path
from hpo.study import STUDY_KEYS, load_study

REPO = Path(__file__).resolve().parent.parent


def test_every_study_file_of_the_repository_is_shipped() -> None:
    assert set(shipped_studies()) == {p.stem for p in (REPO / "studies").glob("*.yaml")}
    assert (shipped_folder("tables") / "digits-compare.csv").is_file()


def test_a_shipped_study_runs_by_name_from_any_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_study("digits-compare") == load_study(REPO / "studies" / "digits-compare.yaml")
    assert study_path(None) == shipped_studies()["digits"]
    # its table is found with it, though this folder has no tables/
    table_study = load_study("digits-compare-table.yaml")
    assert Path(table_study.objective.path).is_file()


def test_a_local_file_wins_over_a_shipped_name(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(shipped_studies()["low-dim-synthetic"].read_text())
    raw["name"] = "mine"
    Path("digits").write_text(yaml.safe_dump(raw))
    assert load_study("digits").name == "mine"


def test_studies_list_names_each_with_its_summary(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    hpo = Hpo(tmp_path, capsys)
    listed = hpo("studies", "list")
    assert listed.code == 0
    lines = listed.out.splitlines()
    assert [line.split()[0] for line in lines] == list(shipped_studies())
    assert all(len(line) <= 110 and len(line.split(None, 1)) == 2 for line in lines)
    assert "the seed" not in listed.out.lower()


def test_studies_copy_writes_the_study_and_its_table_then_it_runs_there(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    hpo = Hpo(tmp_path, capsys)
    copied = hpo("studies", "copy", "digits-compare-table", "--to", tmp_path / "mine")
    assert copied.code == 0, copied.err
    study = tmp_path / "mine" / "digits-compare-table.yaml"
    assert study.read_bytes() == shipped_studies()["digits-compare-table"].read_bytes()
    assert (tmp_path / "mine" / "tables" / "digits-compare.csv").is_file()
    assert (tmp_path / "mine" / "tables" / "digits-compare.json").is_file()
    monkeypatch.chdir(tmp_path / "mine")
    spec = load_study(study.name)  # the copy reads the copied table, relative to its folder
    assert Path(spec.objective.path) == Path("tables/digits-compare.csv")
    ran = hpo.run("--trials", "2", study=study)
    assert ran.code == 0, ran.err


def test_studies_copy_never_overwrites(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    hpo = Hpo(tmp_path, capsys)
    target = tmp_path / "low-dim-synthetic.yaml"
    target.write_text("mine")
    refused = hpo("studies", "copy", "low-dim-synthetic", "--to", tmp_path)
    assert refused.code == 2
    assert len(refused.err_lines) == 1 and "exists" in refused.err
    assert target.read_text() == "mine"


@pytest.mark.parametrize(("command", "typo"), [("run", "--study"), ("studies", "copy")])
def test_a_misspelt_shipped_name_gets_did_you_mean(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   command: str, typo: str) -> None:
    hpo = Hpo(tmp_path, capsys)
    answer = hpo(command, typo, "digitz")
    assert answer.code == 2
    assert len(answer.err_lines) == 1
    assert "did you mean the shipped study 'digits'" in answer.err


def schema_validator(hpo: Hpo) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    printed = hpo("studies", "schema")
    assert printed.code == 0
    schema = json.loads(printed.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_knows_every_study_key_and_accepts_every_shipped_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    validator = schema_validator(Hpo(tmp_path, capsys))
    assert set(validator.schema["properties"]) == set(STUDY_KEYS)
    studies = [*shipped_studies().values(), *(REPO / "tests" / "studies").glob("*.yaml")]
    for path in studies:
        errors = [error.message for error in validator.iter_errors(yaml.safe_load(
            path.read_text()))]
        assert errors == [], path.name


@pytest.mark.parametrize(("where", "key"), [((), "parms"), (("search", "train"), "epochz"),
                                            (("data",), "val_fractoin"),
                                            (("objective",), "knd")])
def test_the_schema_underlines_a_misspelt_key(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              where: tuple[str, ...], key: str) -> None:
    validator = schema_validator(Hpo(tmp_path, capsys))
    raw = yaml.safe_load(shipped_studies()["digits"].read_text())
    section = raw
    for part in where:
        section = section.setdefault(part, {})
    section[key] = 1
    (error,) = validator.iter_errors(raw)
    assert key in error.message and list(error.path) == list(where)
