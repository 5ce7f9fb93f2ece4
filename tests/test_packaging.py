"""What an installed nas-hpo carries: its version, its license, its type hints."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pytest
from setuptools import find_packages

import hpo


@pytest.mark.slow
def test_version_is_the_installed_distributions() -> None:
    assert hpo.__version__ == metadata.version("nas-hpo")
    shown = subprocess.run([sys.executable, "-m", "hpo", "--version"], capture_output=True,
                           text=True, timeout=60, check=True)
    assert shown.stdout.strip() == f"hpo {metadata.version('nas-hpo')}"


def test_license_is_an_spdx_expression() -> None:
    assert metadata.metadata("nas-hpo")["License-Expression"] == "MIT"


@pytest.mark.parametrize("package", ["hpo", "search_core", "reports", "compress"])
def test_every_package_says_it_is_typed(package: str) -> None:
    assert resources.files(package).joinpath("py.typed").is_file()


REPO = Path(__file__).resolve().parent.parent
DATA_PACKAGES = {"hpo.studies": "studies", "hpo.tables": "tables"}


def declared() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_code_package_and_the_shipped_data_are_declared() -> None:
    """pyproject lists packages by hand (the data packages map to other folders): a new
    subpackage missing from the list would be missing from the wheel."""
    found = find_packages(str(REPO), include=["search_core*", "hpo*", "reports*", "compress*"])
    setuptools = declared()
    assert sorted(setuptools["packages"]) == sorted([*found, *DATA_PACKAGES])
    assert setuptools["package-dir"] == DATA_PACKAGES


@pytest.mark.slow
def test_the_wheel_carries_the_studies_tables_and_type_hints(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: setuptools writes build/ beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for folder in ("hpo", "search_core", "reports", "compress", "studies", "tables"):
        shutil.copytree(REPO / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", str(source), "-w", str(tmp_path)],
                   check=True, timeout=300, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("nas_hpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    studies = {f"hpo/studies/{p.name}" for p in (REPO / "studies").glob("*.yaml")}
    assert studies <= names
    assert {"hpo/tables/digits-compare.csv", "hpo/tables/digits-compare.json"} <= names
    assert {f"{package}/py.typed" for package in ("hpo", "search_core", "reports",
                                                  "compress")} <= names
    assert not any(name.startswith(("tests/", "studies/", "tables/")) for name in names)
