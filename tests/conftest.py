"""Shared fixtures: a tiny search space, a shrunken digits data set and one tiny search."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hpo_helpers import Hpo

from search_core.config import SearchConfig, SearchSpace, TrainConfig
from search_core.data import DataConfig, DataSplits, load_data
from search_core.engine import search
from search_core.family import FamilyTable, evaluate_family
from search_core.result import SearchResult
from search_core.threads import THREAD_VARS, WAIT_VARS

TINY_SPACE = SearchSpace(channels=4, nodes=2, cells=3)
TINY_DATA = DataConfig(name="digits", train_limit=200, val_limit=100)


@pytest.fixture(autouse=True)
def _restore_openmp_environment() -> Iterator[None]:
    """``hpo.cli.main`` puts the thread policy into ``os.environ`` (for the processes it
    starts); in-process calls must not hand it on to later tests."""
    saved = {name: os.environ.get(name) for name in (*WAIT_VARS, *THREAD_VARS)}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def _single_thread():
    """One intra-op thread: the suite runs on two CPU cores and must be reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    """3 cells (normal, reduce, reduce) of 2 nodes (5 edges), 4 channels, 3 ops."""
    return TINY_SPACE


@pytest.fixture(scope="session")
def tiny_config() -> SearchConfig:
    return SearchConfig(
        space=TINY_SPACE,
        train=TrainConfig(epochs=2, batch_size=32),
        data=TINY_DATA,
        seed=0,
        threads=1,
    )


@pytest.fixture(scope="session")
def tiny_data(tiny_config: SearchConfig) -> DataSplits:
    return load_data(tiny_config.data)


@pytest.fixture(scope="session")
def tiny_result(tiny_config: SearchConfig, tiny_data: DataSplits) -> SearchResult:
    """A 2-epoch search; tests must not train or otherwise modify it."""
    return search(tiny_config, tiny_data)


@pytest.fixture(scope="session")
def tiny_family(tiny_result: SearchResult, tiny_data: DataSplits) -> FamilyTable:
    return evaluate_family(tiny_result, tiny_data)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Hpo:
    """The ``hpo`` command against ``tmp_path/x.journal`` and ``tmp_path/art``."""
    return Hpo(tmp_path, capsys)
