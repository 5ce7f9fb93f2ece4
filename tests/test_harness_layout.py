"""The harness's layout as a user meets it: ``hpo run`` reads its study file once per
process (workers get the spec, never the path), and ``hpo export --trial best`` and
``hpo report`` name the same best trial of a Pareto study."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hpo_helpers import TINY, TINY_MULTI, Hpo, states

from hpo.facts import best_trial


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Hpo:
    return Hpo(tmp_path, capsys)


@pytest.mark.slow
def test_hpo_run_reads_its_study_file_once(cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver opens the file once and it is gone right after: the two worker processes
    could not read it, yet both trials complete."""
    study = cli.tmp / "gone.yaml"
    shutil.copy(TINY, study)
    opened: list[Path] = []
    real_open = Path.open

    def open_once(path: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(path, *args, **kwargs)
        if path.resolve() == study.resolve():
            opened.append(path)
            path.unlink()  # the open handle still reads it; nothing else can
        return handle

    monkeypatch.setattr(Path, "open", open_once)
    result = cli("run", "--study", study, "--trials", 2, "--jobs", 2, "--sampler", "random")
    assert result.code == 0, result.err
    assert len(opened) == 1 and not study.exists()
    assert states(cli.trials("tiny")) == {"COMPLETE": 2}


@pytest.mark.slow
def test_export_best_and_the_report_name_the_same_trial(cli: Hpo) -> None:
    result = cli.run("--trials", 4, "--sampler", "random", "--seed", 3, study=TINY_MULTI)
    assert result.code == 0, result.err
    study = cli.study("tiny_multi")
    best = best_trial(study)
    assert best is not None
    out = cli.tmp / "best.json"
    assert cli("export", "tiny_multi", "--trial", "best", "--s", "0.3,0.3,0.4",
               "--out", out).code == 0
    exported = json.loads(out.read_text())["trial"]
    assert cli("report", "tiny_multi", "--out", cli.tmp / "report").code == 0
    page = (cli.tmp / "report" / "index.html").read_text()
    reported = {int(n) for n in re.findall(r"Probes A-D of trial (\d+)", page)}
    assert exported == best.number and reported == {best.number}
    # seed 3 makes Optuna's first Pareto trial (what export once took) another trial than
    # the largest family hypervolume (what the report took): the two once disagreed here
    assert study.best_trials[0].number != best.number
