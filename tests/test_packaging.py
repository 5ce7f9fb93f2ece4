"""What an installed nas-hpo carries: its version, its license, its type hints."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata, resources

import pytest

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
