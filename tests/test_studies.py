"""The shipped study files parse, validate and say what the issue promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.runner import grid_cells
from hpo.study import DEFAULT_STUDY, load_study

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_validates_and_has_a_grid(path: Path) -> None:
    spec = load_study(path)
    assert spec.name == path.stem
    assert spec.params, "a study tunes something"
    cells = grid_cells(spec)
    assert len(cells) == len({tuple(sorted(c.items())) for c in cells}) >= 2


def test_default_study_is_digits_with_the_seed_experiment_1_ops() -> None:
    spec = load_study(None)
    assert Path(spec.source) == DEFAULT_STUDY
    assert spec.data["name"] == "digits"
    assert set(spec.search["space"]["ops"]) == {"max_pool_3x3", "skip_connect", "sep_conv_3x3"}
    assert spec.objective.kind == "hypervolume"


def test_seed_experiments_are_shipped() -> None:
    by_data = {load_study(p).data.get("name"): load_study(p) for p in STUDIES}
    assert {"digits", "fashion-mnist", "cifar10"} <= set(by_data)
    five_ops = load_study(next(p for p in STUDIES if p.stem == "fashion-mnist-exp2"))
    assert len(five_ops.search["space"]["ops"]) == 5
    assert five_ops.epochs == 20
