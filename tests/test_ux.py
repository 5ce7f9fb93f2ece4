"""What a user sees: argument errors before torch is imported, sampler names in any case and
"did you mean", the start banner, the summary, Ctrl-C, hpo list/show, metric names and the
scalar trial attributes the dashboard shows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hpo_helpers import TINY, TINY_SLOW, WAIT_S, Hpo, of_state, wait_for
from optuna.trial import FrozenTrial, TrialState

from hpo.records import (
    FAIL_REASON_ATTR,
    HISTORY_ATTR,
    RETRY_OF_ATTR,
    SAMPLER_ATTR,
    SCALAR_ATTRS,
    STUDY_SOURCE_ATTR,
)
from hpo.trial import INTERRUPTED

LOW_DIM = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"

BAD_ARGUMENTS = {  # argv -> what its one error line must say
    "run --sampler tpx": "unknown sampler 'tpx' (did you mean tpe?)",
    "run --pruner Medain": "unknown pruner 'Medain' (did you mean median?)",
    "run --trials 0": "--trials: got 0; need >= 1",
    "run --backend rya": "unknown backend 'rya' (did you mean ray?)",
    "compare --samplers tpe,rnadom --trials 3": "unknown sampler 'rnadom' (did you mean random?)",
    "compare --samplers TPE,tpe --trials 3": "names a sampler twice",
}


@pytest.mark.slow
def test_argument_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(TINY.read_text().replace("fidelity:", "fidelty:"))
    grid_typo = tmp_path / "grid.yaml"
    grid_typo.write_text(TINY.read_text().replace("  kappa: [0.3, 3.0]", "  kapa: [0.3, 3.0]"))
    cases = {**BAD_ARGUMENTS,
             f"run --study {typo}": "unknown top-level key(s) fidelty (did you mean fidelity?)",
             f"run --study {grid_typo}": "grid.kapa: not declared under params (did you mean "
                                         "kappa?)"}
    script = (
        "import contextlib, io, json, sys\n"
        "from hpo.cli import main\n"
        "found = {}\n"
        f"for argv in {list(cases)!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        f"        code = main(argv.split() + ['--storage', {str(tmp_path / 'x.journal')!r}])\n"
        "    found[argv] = [code, err.getvalue(), 'torch' in sys.modules]\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=WAIT_S, check=True)
    found = json.loads(done.stdout)
    for argv, wanted in cases.items():
        code, err, torch_loaded = found[argv]
        assert code == 2, argv
        assert len(err.splitlines()) == 1 and wanted in err, (argv, err)
        assert not torch_loaded, f"{argv}: torch was imported before the error"
    assert not (tmp_path / "x.journal").exists()


def test_sampler_names_in_any_case_are_stored_as_registered(cli: Hpo) -> None:
    result = cli.run("--sampler", "TPE", "--trials", 2, "--name", "cased", study=LOW_DIM)
    assert result.code == 0, result.err
    assert cli.study("cased").user_attrs[SAMPLER_ATTR] == "tpe"
    compared = cli("compare", "--study", LOW_DIM, "--samplers", "Random,QMC", "--trials", 2,
                   "--repeats", 1, "--name", "g")
    assert compared.code == 0, compared.err
    listed = cli("list").out
    assert "g.random.r0" in listed and "g.qmc.r0" in listed


def test_building_a_shipped_sampler_warns_about_nothing() -> None:
    """Optuna marks QMC (and others) experimental; that is our registry's choice, not a
    warning for the user running hpo (it printed twice per study)."""
    import warnings

    from hpo.samplers import SAMPLERS, build_sampler

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in SAMPLERS:
            build_sampler(name, 0, ["maximize"])
    assert [str(w.message) for w in caught] == []


def test_the_banner_says_new_or_resuming_and_the_summary_is_readable(cli: Hpo) -> None:
    first = cli.run("--trials", 2, "--name", "told", study=LOW_DIM)
    assert first.code == 0, first.err
    banner = first.out.splitlines()[0]
    assert banner.startswith("hpo run: study told from ")
    assert "sampler tpe (seed 0); 2 trials;" in banner and banner.endswith("new study")
    assert str(cli.storage) in banner

    second = cli.run("--trials", 3, "--name", "told", study=LOW_DIM)
    assert second.out.splitlines()[0].endswith("resuming: 2 of 3 done")
    study = cli.study("told")
    best = study.best_trial
    summary = second.out.splitlines()[1:]
    assert summary[0] == "study told: 3 complete; 3 trials finished"
    name = study.metric_names[0]
    assert summary[1] == f"best {name} {best.value:.4g} (trial {best.number})"
    for key, value in best.params.items():
        assert f"{key}={value:.4g}" in summary[2]
    assert f"hpo report told --storage {cli.storage} --out report/" in second.out
    assert "{" not in second.out  # no raw JSON


def test_metric_names_and_scalar_attributes_for_the_dashboard(cli: Hpo) -> None:
    assert cli.run("--trials", 1, "--name", "dash").code == 0
    study = cli.study("dash")
    assert study.metric_names == ["hypervolume"]
    (trial,) = study.get_trials()
    family = {row["probe"]: row for row in trial.user_attrs["family"]}
    assert trial.user_attrs["probe_A_accuracy"] == family["A"]["accuracy"]
    assert trial.user_attrs["probe_A_params"] == family["A"]["params"]
    assert trial.user_attrs["family_hypervolume"] == pytest.approx(trial.value)
    assert isinstance(trial.user_attrs["family_controllability"], float)


def test_the_dashboard_lists_a_trials_numbers_before_its_bookkeeping(cli: Hpo) -> None:
    """optuna-dashboard shows user attributes in the storage's order; the journal keeps each
    key where it was first written, and worker, sampler_seed, heartbeat and history are
    written while the trial runs, before its numbers exist."""
    assert cli.run("--trials", 1, "--name", "ordered").code == 0
    (trial,) = cli.trials("ordered")
    keys = list(trial.user_attrs)
    assert keys[:len(SCALAR_ATTRS)] == list(SCALAR_ATTRS)
    assert keys.index("family_controllability") < keys.index("worker")
    assert all(trial.user_attrs[key] is not None for key in SCALAR_ATTRS)


@pytest.mark.slow
def test_ctrl_c_prints_one_line_exits_130_and_requeues_the_trial(cli: Hpo) -> None:
    argv = cli.subprocess_argv("run", "--study", TINY_SLOW, "--trials", 3, "--name", "cut")
    proc = subprocess.Popen(argv, cwd=cli.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        def running_with_an_epoch() -> bool:
            if not cli.storage.exists():
                return False
            try:
                trials = cli.trials("cut")
            except KeyError:
                return False
            return any(t.user_attrs.get(HISTORY_ATTR) for t in of_state(trials,
                                                                          TrialState.RUNNING))

        wait_for(running_with_an_epoch, "a trial's first epoch", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    (line,) = err.strip().splitlines()
    found = re.fullmatch(r"hpo run: interrupted; trial (\d+) re-enqueued; rerun the same "
                         r"command to resume", line)
    assert found, line
    trials = {t.number: t for t in cli.trials("cut")}
    cut = trials[int(found[1])]
    assert cut.state == TrialState.FAIL and cut.user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
    (again,) = [t for t in trials.values() if t.user_attrs.get(RETRY_OF_ATTR) == cut.number]
    assert again.state == TrialState.WAITING
    assert again.system_attrs["fixed_params"] == cut.params

    resumed = cli.run("--trials", 3, "--name", "cut", study=TINY_SLOW)
    assert resumed.code == 0, resumed.err
    assert cli.study("cut").trials[again.number].state == TrialState.COMPLETE


def test_list_and_show_count_states_and_mark_the_best(cli: Hpo) -> None:
    assert cli.run("--trials", 3, "--name", "seen", study=LOW_DIM).code == 0
    study = cli.study("seen")
    failed = study.ask()  # a failed trial beside the complete ones
    failed.set_user_attr(FAIL_REASON_ATTR, "ValueError: made to fail")
    study.tell(failed, state=TrialState.FAIL)
    best = study.best_trial

    (line,) = cli("list").out.splitlines()
    name, counts, best_text, sampler = line.split("\t")
    assert (name, counts, sampler) == ("seen", "3 complete, 1 failed", "sampler tpe")
    assert best_text == f"best {study.metric_names[0]} {best.value:.4g} (trial {best.number})"

    shown = cli("show", "seen").out.splitlines()
    header, rows = shown[0].split(), shown[1:]
    assert header[:3] == ["best", "number", "state"]
    starred = [row for row in rows if row.split()[0] == "*"]
    assert len(starred) == 1 and starred[0].split()[1] == str(best.number)
    assert "None" not in "\n".join(shown) and "NaN" not in "\n".join(shown)
    assert rows[-1].rstrip().endswith("ValueError: made to fail")

    timing = cli("show", "seen", "--timing").out.splitlines()[-1]
    assert timing.startswith("timing over 3 complete trials (medians per trial): ")
    assert "e+" not in timing


@pytest.mark.slow
def test_export_says_what_it_exported(cli: Hpo) -> None:
    assert cli.run("--trials", 1, "--name", "ex").code == 0
    out = cli.tmp / "g.json"
    exported = cli("export", "ex", "--s", "0.2,0.3,0.5", "--out", out, "--model",
                   cli.tmp / "m.pt")
    assert exported.code == 0, exported.err
    payload = json.loads(out.read_text())
    assert payload["s"] == [0.2, 0.3, 0.5]  # no float32 noise
    first, second = exported.out.splitlines()
    assert first.startswith("trial 0 at s=(0.200, 0.300, 0.500): validation accuracy "
                            f"{payload['accuracy']:.4f}")
    assert f"{payload['params']:,} parameters" in first
    assert "search_core.load_model" in second


def test_the_progress_bar_keeps_its_bar_in_120_columns() -> None:
    """With three trials running, failures and a best value, the bar shrank to 4 cells."""
    from optuna.trial import create_trial
    from tqdm import tqdm

    from hpo.progress import BAR_FORMAT, running_epochs
    from hpo.records import HISTORY_ATTR

    def running(number: int, epoch: int) -> FrozenTrial:
        trial = create_trial(state=TrialState.RUNNING, user_attrs={
            HISTORY_ATTR: [{"epoch": epoch, "epochs": 30}]})
        trial.number = number
        return trial

    text = running_epochs([running(107, 12), running(108, 3), running(109, 28)])
    assert text == "#107 13/30 (+2)"
    line = tqdm.format_meter(n=45, total=100, elapsed=754.0, ncols=120, prefix="fashion-exp1",
                             unit="trial", bar_format=BAR_FORMAT,
                             postfix=f"{text} · 12 failed · best hypervolume 0.8123")
    bar = line.split("|")[1]
    assert len(line) <= 120 and len(bar) >= 20, line
    assert line.endswith("#107 13/30 (+2) · 12 failed · best hypervolume 0.8123"), line


def test_the_bar_says_what_the_run_waits_for(capsys: pytest.CaptureFixture[str]) -> None:
    """On Ray the bar showed nothing for ~25 s while Ray started."""
    import optuna

    from hpo.progress import StudyProgress

    progress = StudyProgress()
    progress.start(optuna.create_study(study_name="waiting"), total=5)
    progress.note("starting Ray")
    progress.close()
    assert "starting Ray" in capsys.readouterr().err


def test_a_study_names_its_file_without_a_private_path(cli: Hpo,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``study_source`` was the file's absolute path (a user's temporary folder in a shared
    storage): now the file's name when it lies outside the working folder, its path relative
    to the working folder when inside it."""
    outside = cli.write_study(lambda raw: None)  # under tmp_path, not the working folder
    assert cli.run("--trials", 1, "--name", "outside", study=outside).code == 0
    assert cli.study("outside").user_attrs[STUDY_SOURCE_ATTR] == outside.name

    monkeypatch.chdir(cli.tmp)
    inside = cli.tmp / "mine" / "study.yaml"
    inside.parent.mkdir()
    inside.write_text(TINY.read_text())
    assert cli.run("--trials", 1, "--name", "inside", study=inside.resolve()).code == 0
    assert cli.study("inside").user_attrs[STUDY_SOURCE_ATTR] == "mine/study.yaml"


def test_a_shipped_study_file_is_stored_by_its_shipped_name() -> None:
    from hpo.announce import shown_path
    from hpo.shipped import default_study

    assert shown_path(str(default_study())) == "the shipped digits.yaml"


def test_the_storage_folder_holds_no_lock_file_per_study(cli: Hpo) -> None:
    """Each study's lock file was a hidden file beside the journal (runs/ filled with one per
    study); they now share one hidden folder beside it."""
    from hpo.liveness import LOCK_FOLDER, lock_path

    for name in ("first", "second"):
        assert cli.run("--trials", 1, "--name", name).code == 0
    assert sorted(p.name for p in cli.tmp.iterdir()) == sorted(
        [LOCK_FOLDER, cli.storage.name, cli.artifacts.name])
    locks = sorted(p.name for p in (cli.tmp / LOCK_FOLDER).iterdir())
    assert locks == [f"x.journal.{name}.hpo-lock" for name in ("first", "second")]
    assert lock_path(f"sqlite:///{cli.tmp}/s.db", "a") == cli.tmp / LOCK_FOLDER / "s.db.a.hpo-lock"
    assert lock_path("postgresql://u@h/db", "a") is None
