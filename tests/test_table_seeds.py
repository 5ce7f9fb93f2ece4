"""``hpo table build`` for a seed-structured table: more seeds for the first N
configurations (``--subset N --subset-seeds K``), evaluated seed by seed; and a table is
extended only by code that still computes its stored values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hpo_helpers import TINY, Hpo

from hpo.study import load_study
from hpo.table_file import read_rows


def build(cli: Hpo, out: Path, *args: object):
    return cli("table", "build", "--study", TINY, "--out", out, "-q", *args)


@pytest.mark.slow
def test_a_subset_gets_more_seeds_seed_by_seed(cli: Hpo) -> None:
    out = cli.tmp / "t.csv"
    result = build(cli, out, "--configs", 2, "--seeds", 1, "--subset", 3, "--subset-seeds", 2)
    assert result.code == 0, result.err
    grid = len(load_study(TINY).grid["kappa"]) * len(load_study(TINY).grid["schedule"])
    rows = [(int(r["config"]), int(r["seed"])) for r in read_rows(out)]
    assert rows == [(c, 0) for c in range(grid + 2)] + [(c, 1) for c in range(3)]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["design"]["subset"], meta["design"]["subset_seeds"]) == (3, 2)
    assert meta["command"].endswith("--subset 3 --subset-seeds 2")
    alone = build(cli, out, "--configs", 2, "--subset", 3)
    assert alone.code == 2 and len(alone.err_lines) == 1 and "go together" in alone.err


@pytest.mark.slow
def test_a_table_is_not_extended_by_code_that_computes_other_values(cli: Hpo) -> None:
    out = cli.tmp / "t.csv"
    assert build(cli, out, "--configs", 1, "--seeds", 1).code == 0
    assert build(cli, out, "--configs", 2, "--seeds", 1).code == 0  # same code: extends
    lines = out.read_text().splitlines()
    cells = lines[1].split(",")
    value = cells[lines[0].split(",").index("value")]
    out.write_text("\n".join([lines[0], lines[1].replace(value, "0.123456789"),
                              *lines[2:]]) + "\n")  # as if another version had built it
    before = out.read_bytes()
    result = build(cli, out, "--configs", 2, "--seeds", 2)
    assert result.code == 2 and len(result.err_lines) == 1
    assert "now and 0.123457 in the table" in result.err and "another --out" in result.err
    assert out.read_bytes() == before
