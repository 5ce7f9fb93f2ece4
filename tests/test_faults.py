"""Faults and hostile files: what survives a killed worker, a kill during creation or grid
enqueueing, a torn journal, a full disk, and what crafted files cannot do.

Each test fails on the code before issue 12: there a dead worker hung ``--jobs`` forever, a
torn journal line made every study of the file unreadable, grid cells ran twice, a study
whose creation was cut short locked its name, and checkpoints and CIFAR batches were
unpickled with code execution.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from hpo_helpers import TINY, TINY_SLOW, WAIT_S, Hpo, cell, grid_product, of_state, states
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import hpo.cli
import hpo.runner
from hpo.liveness import STALE_AFTER_S, stale_reason
from hpo.records import HEARTBEAT_ATTR, WORKER_ATTR
from hpo.storage import open_storage, study_names
from search_core.data import DataConfig, load_data
from search_core.errors import DataError
from search_core.result import SearchResult, load_model


class Crafted:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------------------------
# a worker that dies


def _running_in_a_worker(cli: Hpo, name: str, driver: int) -> int | None:
    """The pid of a worker process (not the driver) running a trial that reported an epoch."""
    if not cli.storage.exists() or name not in study_names(open_storage(str(cli.storage))):
        return None
    for trial in of_state(cli.trials(name), TrialState.RUNNING):
        owner = trial.user_attrs.get(WORKER_ATTR, "")
        pid = int(owner.rsplit(":", 1)[1]) if ":" in owner else None
        if pid and pid != driver and trial.user_attrs.get("history"):
            return pid
    return None


def _signal_a_worker_mid_trial(cli: Hpo, name: str, trials: int, sig: signal.Signals,
                               **env: str) -> tuple[int, str, int]:
    """``hpo run --jobs 2``; once a worker process runs a trial, send it ``sig``; the run's
    exit code and stderr, and the worker's pid."""
    argv = cli.subprocess_argv("run", "--study", TINY_SLOW, "--trials", trials, "--jobs", 2,
                               "--name", name)
    proc = subprocess.Popen(argv, cwd=cli.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + WAIT_S
        victim = None
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            victim = _running_in_a_worker(cli, name, proc.pid)
            time.sleep(0.2)
        assert victim is not None, "no worker was seen running a trial"
        os.kill(victim, sig)
        _, err = proc.communicate(timeout=WAIT_S)  # before: never returned
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, victim


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_noticed_and_the_run_finishes(cli: Hpo) -> None:
    name = "jobs"
    code, err, victim = _signal_a_worker_mid_trial(cli, name, 6, signal.SIGKILL)
    assert code == 3, err  # finished, but a worker died
    assert f"worker process {victim} was killed by SIGKILL" in err
    trials = cli.trials(name)
    assert states(trials) == {"COMPLETE": 6, "FAIL": 1}
    (failed,) = of_state(trials, TrialState.FAIL)
    assert "worker died" in failed.user_attrs["fail_reason"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == failed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params


@pytest.mark.slow
def test_a_stopped_worker_is_declared_stale_and_the_run_still_ends(cli: Hpo) -> None:
    """A SIGSTOPped --jobs worker: its trial is declared stale after the silence limit and
    run again by the other worker; the driver then killed nothing and waited forever."""
    name = "paused"
    code, err, victim = _signal_a_worker_mid_trial(cli, name, 3, signal.SIGSTOP,
                                                   HPO_STALE_AFTER_S="4")  # beats every 1 s
    assert code == 3, err  # finished, but a worker had to be killed
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err, err
    assert "re-enqueued" in lines[0] and f"worker process {victim} did not exit" in lines[1]
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    trials = cli.trials(name)
    assert states(trials) == {"COMPLETE": 3, "FAIL": 1}
    (failed,) = of_state(trials, TrialState.FAIL)
    assert "silent" in failed.user_attrs["fail_reason"]


def test_a_result_for_a_trial_declared_stale_meanwhile_is_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """A paused process that resumes after its trial was declared stale (and failed by
    another process): an UpdateFinishedTrialError traceback before."""
    from hpo.trial import TrialOutcome, record_outcome

    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(trial.number, state=TrialState.FAIL)  # what recover_stale_trials does
    record_outcome(study, trial, TrialOutcome(TrialState.COMPLETE, values=(0.5,)))
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"trial {trial.number} was declared stale" in message
    assert study.trials[0].state == TrialState.FAIL


# ---------------------------------------------------------------------------------------------
# kills during creation and grid enqueueing (cut short at the worst moment, deterministically)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


@pytest.mark.slow
def test_a_study_whose_creation_was_cut_short_is_completed_on_resume(
        cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(study: optuna.Study, *args: Any) -> None:
        study.set_user_attr("study_file", {})  # a first attribute, then the kill
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(hpo.runner, "set_study_attributes", killed)
        with pytest.raises(Killed):
            cli.run("--trials", 1)
    assert "fingerprint" not in cli.study("tiny").user_attrs  # the name was locked before

    result = cli.run("--trials", 2)
    assert result.code == 0, result.err
    study = cli.study("tiny")
    assert states(study.get_trials()) == {"COMPLETE": 2}
    assert study.user_attrs["fingerprint"] and study.user_attrs["study_file"]["name"] == "tiny"


def test_a_foreign_study_with_trials_and_no_fingerprint_is_refused(cli: Hpo) -> None:
    study = optuna.create_study(study_name="tiny", storage=open_storage(str(cli.storage)))
    study.tell(study.ask(), 1.0)
    result = cli.run("--trials", 1)
    assert result.code == 2
    (line,) = result.err_lines
    assert "not created by hpo run" in line


@pytest.mark.slow
def test_grid_enqueueing_cut_short_enqueues_each_cell_once(
        cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue = optuna.Study.enqueue_trial
    calls = []

    def cut_short(self: optuna.Study, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        enqueue(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(optuna.Study, "enqueue_trial", cut_short)
        with pytest.raises(Killed):
            cli.run("--sampler", "grid", "--trials", 100)
    assert states(cli.trials("tiny")) == {"WAITING": 2}

    result = cli.run("--sampler", "grid", "--trials", 100)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 4}
    assert Counter(cell(t.params) for t in trials) == Counter(grid_product())


# ---------------------------------------------------------------------------------------------
# owners on other hosts: heartbeats


@pytest.mark.slow
def test_a_trial_of_a_silent_host_is_failed_and_rerun(cli: Hpo) -> None:
    assert cli.run("--trials", 1).code == 0
    study = cli.study("tiny")
    trial = study.ask({"kappa": optuna.distributions.FloatDistribution(0.1, 10.0, log=True)})
    trial.set_user_attr(WORKER_ATTR, "elsewhere:1")  # a host this one cannot check
    trial.set_user_attr(HEARTBEAT_ATTR, time.time() - STALE_AFTER_S - 60)
    result = cli.run("--trials", 3)
    assert result.code == 0, result.err
    after = cli.study("tiny").get_trials()[trial.number]
    assert after.state == TrialState.FAIL
    assert "no heartbeat" in after.user_attrs["fail_reason"]


def test_stale_means_a_dead_local_owner_or_a_silent_one_anywhere() -> None:
    now = time.time()

    def running(owner: str | None, beat: float | None) -> optuna.trial.FrozenTrial:
        attrs = {k: v for k, v in ((WORKER_ATTR, owner), (HEARTBEAT_ATTR, beat)) if v}
        return optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=attrs)

    host = socket.gethostname()
    assert stale_reason(running(f"{host}:{os.getpid()}", now), now) is None
    assert stale_reason(running("elsewhere:1", now - 5), now) is None
    assert "silent" in str(stale_reason(running("elsewhere:1", now - STALE_AFTER_S - 1), now))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert "process gone" in str(stale_reason(running(f"{host}:{dead}", now), now))


# ---------------------------------------------------------------------------------------------
# the journal file


def _append_torn_line(journal: Path) -> None:
    with journal.open("ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "w", "trial_id": 0, "us')  # cut short


@pytest.mark.slow
def test_a_torn_journal_tail_is_cut_off_with_a_backup_and_nothing_is_lost(
        cli: Hpo, caplog: pytest.LogCaptureFixture) -> None:
    assert cli.run("--trials", 2).code == 0
    before = {t.number: t.values for t in cli.trials("tiny")}
    _append_torn_line(cli.storage)

    result = cli.run("--trials", 3)
    assert result.code == 0, result.err
    assert "repaired the journal" in caplog.text and "torn last line" in caplog.text
    (backup,) = cli.tmp.glob("x.journal.*.bak")
    assert backup.read_bytes().endswith(b'"us')
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 3}
    assert {n: trials[n].values for n in before} == before
    assert cli("show", "tiny").code == 0


@pytest.mark.slow
def test_a_line_glued_onto_a_torn_one_keeps_its_operations(cli: Hpo) -> None:
    """What an older version left: it appended after a torn tail, gluing the two lines."""
    assert cli.run("--trials", 2).code == 0
    _append_torn_line(cli.storage)
    backend = JournalFileBackend(str(cli.storage))
    backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "other",
                          "directions": [1]}])
    backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "third",
                          "directions": [1]}])
    with pytest.raises(ValueError):  # unreadable for Optuna, every study of the file
        JournalStorage(JournalFileBackend(str(cli.storage)))

    shown = cli("list")
    assert shown.code == 0, shown.err
    assert {line.split("\t")[0] for line in shown.out.splitlines()} == {"tiny", "other",
                                                                       "third"}
    assert states(cli.trials("tiny")) == {"COMPLETE": 2}


@pytest.mark.slow
def test_an_unrepairable_journal_is_refused_in_one_line(cli: Hpo) -> None:
    assert cli.run("--trials", 1).code == 0
    with cli.storage.open("ab") as f:
        f.write(b"not json at all\n{}\n")
    result = cli("list")
    assert result.code == 2
    (line,) = result.err_lines
    assert "restore" in line and str(cli.storage) in line


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 4 MiB tmpfs; skipped where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()[:100]})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_resuming_loses_nothing(small_disk: Path) -> None:
    filler = small_disk / "filler"
    storage, artifacts = small_disk / "x.journal", small_disk / "art"
    argv = [sys.executable, "-m", "hpo.cli", "run", "--study", str(TINY), "--trials", "40",
            "--jobs", "1", "--threads", "1", "-q", "--storage", str(storage),
            "--artifacts", str(artifacts)]
    # leave room for a few trials (a tiny trial writes ~200 KiB of checkpoint and journal)
    filler.write_bytes(b"\0" * (4 * 2**20 - 1_000_000))
    first = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert first.returncode == 4, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert "run the same command again" in lines[0]
    done_before = {t.number: t.values for t in of_state(_trials(storage),
                                                        TrialState.COMPLETE)}
    assert done_before, "no trial completed before the disk was full"

    filler.unlink()
    wanted = len(done_before) + 3
    second = subprocess.run([*argv[:7], str(wanted), *argv[8:]], capture_output=True,
                            text=True, timeout=WAIT_S, check=False)
    assert second.returncode == 0, second.stderr
    trials = _trials(storage)
    assert {n: trials[n].values for n in done_before} == done_before
    assert len(of_state(trials, TrialState.COMPLETE)) == wanted


def test_a_journal_lock_left_by_a_killed_process_is_broken_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna waited out 30 s (with its raw warnings) for a lock a SIGKILLed process held."""
    from hpo.journal import OwnedJournalLock
    from hpo.records import worker_id

    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = OwnedJournalLock(str(tmp_path / "x.journal"))
    lock_file = tmp_path / "x.journal.lock"  # Optuna's name: other Optuna processes see it
    lock_file.write_text(f"{socket.gethostname()}:{gone.pid}")

    def no_waiting(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s for a dead holder's lock")

    monkeypatch.setattr(time, "sleep", no_waiting)
    assert lock.acquire()
    assert lock_file.read_text() == worker_id()  # signed by its new holder
    lock.release()
    assert not lock_file.exists() and list(tmp_path.iterdir()) == []
    # a live holder (this process) or one on another host is waited for, not broken
    for holder in (worker_id(), f"elsewhere:{gone.pid}"):
        lock_file.write_text(holder)
        with pytest.raises(AssertionError, match="waited"):
            lock.acquire()
        assert lock_file.read_text() == holder
        lock_file.unlink()


def test_a_read_only_disk_is_one_line_and_changes_nothing(
        small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal, artifacts = small_disk / "x.journal", small_disk / "art"
    journal.write_bytes(b"")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        code = hpo.cli.main(["run", "--study", str(TINY), "--storage", str(journal),
                             "--artifacts", str(artifacts), "--trials", "1", "-q"])
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Read-only file system" in line and str(small_disk) in line
    assert journal.read_bytes() == b"" and not artifacts.exists()


def _trials(storage: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=open_storage(str(storage))).get_trials()


# ---------------------------------------------------------------------------------------------
# files that would run code


def test_a_crafted_checkpoint_does_not_run_code(tmp_path: Path, cli: Hpo) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "trial-0.pt"
    torch.save({"version": 1, "config": Crafted(marker), "supernet": {}, "hypernet": {},
                "data_info": {}}, evil)
    with pytest.raises(DataError, match="not a checkpoint written by nas-hpo"):
        SearchResult.load(evil)
    with pytest.raises(DataError, match="not a checkpoint written by nas-hpo"):
        load_model(evil)

    assert cli.run("--trials", 1).code == 0  # and through `hpo export`
    (trial,) = cli.trials("tiny")
    Path(trial.user_attrs["checkpoint"]).write_bytes(evil.read_bytes())
    result = cli("export", "tiny", "--s", "0.2,0.2,0.6", "--out", tmp_path / "g.json")
    assert result.code == 2
    (line,) = result.err_lines
    assert "refused to load" in line
    assert not marker.exists()


def test_a_crafted_cifar_batch_does_not_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Crafted(marker), b"labels": []}))
    with pytest.raises(DataError, match=r"refused posix\.system|refused os\.system"):
        load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# names and passwords


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "x" * 300, ".hidden", "a..b"])
def test_study_names_cannot_leave_the_artifacts_folder(cli: Hpo, name: str) -> None:
    result = cli.run("--trials", 1, "--name", name)
    assert result.code == 2
    (line,) = result.err_lines
    assert "--name" in line and len(line) < 300
    assert cli.nothing_written()


@pytest.mark.slow
def test_a_storage_password_is_never_printed(cli: Hpo) -> None:
    url = "postgresql://hpo:s3cret-pw@127.0.0.1:9/nowhere"  # nothing listens on port 9
    for result in (cli.run("--trials", 1, "--storage", url), cli("list", "--storage", url)):
        assert result.code == 2
        assert "s3cret-pw" not in result.out + result.err
        assert "hpo:***@127.0.0.1" in result.err


POSTGRES = os.environ.get("NAS_HPO_TEST_POSTGRES")


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL server: .ci/run starts one "
                                         "(eval \"$(bash .ci/postgres.sh)\")")
def test_postgresql_with_the_documented_url(cli: Hpo) -> None:
    assert POSTGRES is not None and POSTGRES.startswith("postgresql://")
    name = f"pg{os.getpid()}{int(time.time())}"
    result = cli.run("--trials", 2, "--storage", POSTGRES, "--name", name)
    assert result.code == 0, result.err
    password = POSTGRES.split(":")[2].split("@")[0]
    assert password not in result.out + result.err
    assert "***@" in result.out
    study = optuna.load_study(study_name=name, storage=open_storage(POSTGRES))
    assert states(study.get_trials()) == {"COMPLETE": 2}
    shown = cli("show", name, "--storage", POSTGRES)
    assert shown.code == 0 and password not in shown.out + shown.err
