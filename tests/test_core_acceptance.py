"""The issue's acceptance run: one digits search with the 3-op set on this CPU.

Calibrated over seeds 0-2 (uniform-probe accuracy 0.927 / 0.972 / 0.931, controllability
-0.89 / -0.88 / -0.95, 57-97 s each on 2 cores); the test runs seed 0.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from search_core import SearchConfig, TrainConfig, load_data, search
from search_core.__main__ import main as search_main


@pytest.mark.slow
def test_digits_search_is_accurate_and_controllable() -> None:
    config = SearchConfig(train=TrainConfig(epochs=30, kappa=1.0), seed=0, threads=2)
    data = load_data(config.data)
    result = search(config, data)
    table = result.family(data)
    assert table.member("A").accuracy >= 0.90
    assert table.controllability <= -0.5
    # raising the penalty on an op lowers its count: B penalises the conv, C the pool
    counts = {p: table.member(p).op_counts["total"] for p in "ABCD"}
    assert counts["B"].get("sep_conv_3x3", 0) < counts["C"].get("sep_conv_3x3", 0)
    assert counts["C"].get("max_pool_3x3", 0) < counts["B"].get("max_pool_3x3", 0)
    assert counts["D"].get("skip_connect", 0) <= counts["A"].get("skip_connect", 0)


@pytest.mark.slow
def test_cli_writes_checkpoint_and_family(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = search_main(["--epochs", "1", "--channels", "4", "--nodes", "2", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["hypervolume"] <= 1.0
    assert (out / "checkpoint.pt").stat().st_size > 0
    frame = pd.read_csv(out / "family.csv")
    assert list(frame["probe"][:4]) == ["A", "B", "C", "D"]
    assert len(frame) == 4 + 15  # seed probes + Das-Dennis lattice with 4 divisions
    assert "val_acc=" in capsys.readouterr().out


def test_cli_missing_data_folder_is_one_line_error(tmp_path, capsys) -> None:
    code = search_main(["--data", "mnist", "--data-root", str(tmp_path / "nowhere")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train-images-idx3-ubyte" in err
