"""End-to-end tests of the ``hpo`` command (run, list, show, export) on tiny studies.

Every command goes through ``hpo.cli.main`` in-process (two through a subprocess), with the
storage and the artifacts under ``tmp_path``: nothing is written to the repository. A trial
of ``tests/studies/tiny.yaml`` takes about a second.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
import yaml
from hpo_helpers import (
    TINY,
    TINY_MULTI,
    TINY_SLOW,
    WAIT_S,
    Hpo,
    Result,
    cell,
    grid_product,
    of_state,
    setting,
    states,
    wait_for,
)
from optuna.trial import TrialState

import hpo.cli
import hpo.liveness
import hpo.trial
from hpo.records import WORKER_ATTR, worker_id
from hpo.samplers import PRUNERS
from hpo.storage import open_storage, study_names
from hpo.study import load_study as load_study_file
from search_core.result import SearchResult, load_model

# ---------------------------------------------------------------------------------------------
# run, resume, crash recovery, parallel workers


@pytest.mark.slow
def test_run_records_complete_trials_with_their_attributes(cli: Hpo) -> None:
    result = cli.run("--sampler", "tpe", "--trials", 3, "--seed", 7)
    assert result.code == 0, result.err
    assert "3 complete" in result.out

    study = cli.study("tiny")
    trials = study.get_trials()
    assert states(trials) == {"COMPLETE": 3}
    spec = load_study_file(TINY)
    ops = spec.search["space"]["ops"]
    for trial in trials:
        attrs = trial.user_attrs
        assert set(trial.params) == {"kappa", "t_start", "t_end", "schedule"}
        rows = attrs["family"]
        assert rows and all({"probe", "accuracy", "params"} <= set(row) for row in rows)
        assert all(f"n_{op}" in row for row in rows for op in ops)
        hypervolume = attrs["family_summary"]["hypervolume"]
        assert 0.0 <= hypervolume <= 1.0
        assert trial.value == pytest.approx(hypervolume)
        assert [epoch["epoch"] for epoch in attrs["history"]] == list(range(spec.epochs))
        assert all("val_acc" in epoch for epoch in attrs["history"])
        assert attrs["seconds"] > 0
        assert attrs["seed"] == 7
        checkpoint = Path(attrs["checkpoint"])
        assert checkpoint.is_file() and cli.artifacts in checkpoint.parents
    assert len({t.user_attrs["checkpoint"] for t in trials}) == 3

    attrs = study.user_attrs
    assert attrs["study_file"] == spec.to_dict()
    assert attrs["fingerprint"] == spec.fingerprint()
    assert attrs["environment"]["versions"]["optuna"] == optuna.__version__
    assert attrs["environment"]["versions"]["torch"] == torch.__version__
    assert attrs["environment"]["cpu"]


@pytest.mark.slow
def test_resume_keeps_earlier_trials_and_tops_up_to_trials(cli: Hpo) -> None:
    assert cli.run("--trials", 3, "--name", "resumed").code == 0
    before = [(t.number, t.values, t.params) for t in cli.trials("resumed")]

    assert cli.run("--trials", 5, "--name", "resumed").code == 0
    trials = cli.trials("resumed")
    assert states(trials) == {"COMPLETE": 5}
    assert [(t.number, t.values, t.params) for t in trials[:3]] == before


def _killable_moment(cli: Hpo, name: str) -> bool:
    """A trial has finished and the next one runs, its parameters sampled and at most one of
    its three epochs done (so it is still running when the kill lands)."""
    if not cli.storage.exists() or name not in study_names(open_storage(str(cli.storage))):
        return False
    trials = cli.trials(name)
    running = of_state(trials, TrialState.RUNNING)
    return (len(of_state(trials, TrialState.COMPLETE)) >= 1 and len(running) == 1
            and len(running[0].params) == 4
            and len(running[0].user_attrs.get("history", [])) < 2)


@pytest.mark.slow
def test_sigkilled_run_resumes_and_retries_the_killed_trial(cli: Hpo) -> None:
    name = "killed"
    argv = cli.subprocess_argv("run", "--study", TINY_SLOW, "--trials", 4, "--name", name)
    with (cli.tmp / "killed.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=cli.tmp, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_for(lambda: _killable_moment(cli, name), "a complete and a running trial",
                     proc)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)  # reaped: its pid no longer exists
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    trials = cli.trials(name)
    (killed,) = of_state(trials, TrialState.RUNNING)
    done_before = {t.number: t.values for t in of_state(trials, TrialState.COMPLETE)}

    result = cli.run("--trials", 4, "--name", name, study=TINY_SLOW)
    assert result.code == 0, result.err
    trials = cli.trials(name)
    assert states(trials) == {"COMPLETE": 4, "FAIL": 1}
    after = trials[killed.number]
    assert after.state == TrialState.FAIL
    assert "died" in after.user_attrs["fail_reason"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.number > killed.number
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert {n: trials[n].values for n in done_before} == done_before


@pytest.mark.slow
def test_resume_leaves_a_trial_being_claimed_by_a_live_worker_alone(cli: Hpo) -> None:
    """A worker asks a trial and names itself its owner under the lock; a run starting in
    between must not take the trial, owner not yet written, for a dead worker's."""
    assert cli.run("--trials", 1, "--name", "claimed").code == 0
    study = cli.study("claimed")
    results: list[Result] = []
    resumed = threading.Thread(target=lambda: results.append(
        cli.run("--trials", 2, "--name", "claimed")))
    with hpo.liveness.study_lock(str(cli.storage), "claimed"):
        trial = study.ask()  # RUNNING, no owner yet: the moment inside a worker's lock
        resumed.start()
        time.sleep(1.0)  # the resumed run reaches its recovery of stale trials meanwhile
        trial.set_user_attr(WORKER_ATTR, worker_id())
    assert study.get_trials()[trial.number].state == TrialState.RUNNING
    study.tell(trial, 0.5)  # the resumed run waits for it, then has its 2 trials
    resumed.join(timeout=WAIT_S)
    assert not resumed.is_alive() and results[0].code == 0, results
    assert states(cli.trials("claimed")) == {"COMPLETE": 2}


@pytest.mark.slow
def test_two_workers_share_one_journal_exactly(cli: Hpo) -> None:
    result = cli.run("--jobs", 2, "--trials", 4, "--name", "parallel", study=TINY_SLOW)
    assert result.code == 0, result.err
    trials = cli.trials("parallel")
    assert states(trials) == {"COMPLETE": 4}
    pids = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials}
    assert len(pids) == 2
    assert str(os.getpid()) not in pids


@pytest.mark.slow
def test_two_workers_make_the_same_study_for_the_same_seed(cli: Hpo) -> None:
    """--jobs 2: parameters sampled per trial under the lock, in synchronous batches, so the
    TPE trials after the random start see the same history in both runs."""
    runs = []
    for name in ("first", "second"):
        result = cli.run("--jobs", 2, "--trials", 8, "--seed", 3, "--name", name)
        assert result.code == 0, result.err
        trials = cli.trials(name)
        assert states(trials) == {"COMPLETE": 8}
        assert len({t.user_attrs["worker"] for t in trials}) == 2
        runs.append([(t.number, t.params, t.values) for t in trials])
    assert runs[0] == runs[1]
    other = cli.run("--jobs", 2, "--trials", 8, "--seed", 4, "--name", "other")
    assert other.code == 0
    assert [t.params for t in cli.trials("other")] != [params for _, params, _ in runs[0]]


def test_batches_are_asked_whole_and_wait_for_every_trial_of_the_last_one() -> None:
    from hpo.backends.local import Batch

    study = optuna.create_study()
    batch = Batch(2)
    first = study.ask()
    assert batch.open(study, to_start=5)
    batch.add(first.number)
    assert not batch.asked()  # its trial waits for the other worker's ask
    study.tell(first, 1.0)  # (it could not run before; here it shows the batch holds)
    assert batch.open(study, to_start=4)  # room for the second trial of the batch
    second = study.ask()
    batch.add(second.number)
    assert batch.asked()
    assert not batch.open(study, to_start=3)  # the batch is full and still running
    study.tell(second, state=TrialState.FAIL)
    assert batch.open(study, to_start=1)  # a new batch, of the one trial left
    batch.add(study.ask().number)
    assert batch.asked()
    assert not batch.open(study, to_start=0)


@pytest.mark.slow
def test_grid_with_two_workers_runs_each_cell_once(cli: Hpo) -> None:
    result = cli.run("--sampler", "grid", "--jobs", 2, "--trials", 100)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 4}
    cells = Counter(cell(t.params) for t in trials)
    assert set(cells) == grid_product()
    assert set(cells.values()) == {1}


@pytest.mark.slow
def test_grid_single_worker_covers_the_grid_across_runs(cli: Hpo) -> None:
    assert cli.run("--sampler", "grid", "--trials", 2).code == 0
    first = cli.trials("tiny")
    assert states(first) == {"COMPLETE": 2, "WAITING": 2}  # the other cells stay queued
    first = of_state(first, TrialState.COMPLETE)
    assert len({cell(t.params) for t in first}) == 2

    assert cli.run("--sampler", "grid", "--trials", 4).code == 0
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 4}
    assert Counter(cell(t.params) for t in trials) == Counter(grid_product())
    assert [t.params for t in trials[:2]] == [t.params for t in first]


# ---------------------------------------------------------------------------------------------
# failures, pruning, multi-objective


def _evaluate_failing(monkeypatch: pytest.MonkeyPatch, fails: Callable[[int], bool]) -> list[int]:
    """Replace the trial's ``evaluate``: call n (1-based) raises when ``fails(n)``."""
    calls: list[int] = []
    real = hpo.trial.evaluate

    def evaluate(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls) + 1)
        if fails(len(calls)):
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(hpo.trial, "evaluate", evaluate)
    return calls


@pytest.mark.slow
def test_failing_trial_is_recorded_and_the_study_goes_on(
    cli: Hpo, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _evaluate_failing(monkeypatch, lambda n: n == 2)
    result = cli.run("--trials", 3, "--jobs", 1)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 3, "FAIL": 1}
    (failed,) = of_state(trials, TrialState.FAIL)
    assert failed.number == 1
    assert "boom" in failed.user_attrs["fail_reason"]
    assert len(calls) == 4


def test_max_failures_stops_the_study(cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    _evaluate_failing(monkeypatch, lambda n: True)
    result = cli.run("--trials", 3, "--max-failures", 1)
    assert result.code == 1
    assert states(cli.trials("tiny")) == {"FAIL": 1}


@pytest.mark.slow
def test_pruned_trials_count_toward_trials(cli: Hpo) -> None:
    # accuracy never reaches 2: every trial is pruned at its first report (epoch 0 of 3)
    with PRUNERS.temporarily("unreachable",
                             lambda epochs: optuna.pruners.ThresholdPruner(lower=2.0)):
        result = cli.run("--pruner", "unreachable", "--trials", 3, study=TINY_SLOW)
    assert result.code == 0, result.err
    assert "3 pruned" in result.out
    trials = cli.trials("tiny_slow")
    assert states(trials) == {"PRUNED": 3}
    for trial in trials:
        assert list(trial.intermediate_values) == [0]
        assert len(trial.user_attrs["history"]) == 1
        assert "checkpoint" not in trial.user_attrs


@pytest.mark.slow
def test_multi_objective_study_with_nsga2(cli: Hpo) -> None:
    result = cli.run("--sampler", "nsga2", "--trials", 3, study=TINY_MULTI)
    assert result.code == 0, result.err
    study = cli.study("tiny_multi")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = study.get_trials()
    assert states(trials) == {"COMPLETE": 3}
    for trial in trials:
        probe_a = next(row for row in trial.user_attrs["family"] if row["probe"] == "A")
        assert trial.values == pytest.approx([probe_a["accuracy"], probe_a["params"]])
    shown = cli("show", "tiny_multi", "--format", "json")
    assert shown.code == 0
    assert [[r["value_0"], r["value_1"]] for r in json.loads(shown.out)["trials"]] == [
        t.values for t in trials
    ]


def test_single_objective_sampler_refuses_a_multi_objective_study(cli: Hpo) -> None:
    result = cli.run("--sampler", "skopt", "--trials", 3, study=TINY_MULTI)
    assert result.code == 2
    (line,) = result.err_lines
    assert "skopt" in line and "nsga2" in line
    assert cli.nothing_written()


def test_threads_apply_to_the_whole_trial(cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    """--threads covers the search and the family evaluation (else workers oversubscribe)."""
    import search_core.engine
    import search_core.family

    seen: dict[str, int] = {}

    def search(config: Any, *args: Any, **kwargs: Any) -> object:
        seen["search"] = torch.get_num_threads()
        return object()

    def evaluate_family(*args: Any, **kwargs: Any) -> Any:
        seen["family"] = torch.get_num_threads()
        raise RuntimeError("stopped after the family evaluation started")

    monkeypatch.setattr(search_core.engine, "search", search)
    monkeypatch.setattr(search_core.family, "evaluate_family", evaluate_family)
    threads = torch.get_num_threads() + 2
    result = cli.run("--trials", 1, "--max-failures", 1, "--threads", threads)
    assert result.code == 1
    (trial,) = cli.trials("tiny")
    assert "stopped after the family evaluation" in trial.user_attrs["fail_reason"]
    assert seen == {"search": threads, "family": threads}


# ---------------------------------------------------------------------------------------------
# list, show, export


@pytest.mark.slow
def test_list_show_and_export(cli: Hpo) -> None:
    assert cli.run("--trials", 2, "--name", "shown").code == 0
    trials = cli.trials("shown")

    listed = cli("list")
    assert listed.code == 0
    assert [line.split("\t")[0] for line in listed.out.splitlines()] == ["shown"]

    shown = cli("show", "shown", "--format", "json")
    assert shown.code == 0
    payload = json.loads(shown.out)
    assert payload["study"] == "shown"
    assert [(r["number"], r["state"], r["value"]) for r in payload["trials"]] == [
        (t.number, "COMPLETE", t.value) for t in trials
    ]

    csv = cli("show", "shown", "--format", "csv")
    assert csv.code == 0
    frame = pd.read_csv(io.StringIO(csv.out))
    assert frame["number"].tolist() == [t.number for t in trials]
    assert frame["param_kappa"].tolist() == pytest.approx([t.params["kappa"] for t in trials])

    table = cli("show", "shown")
    assert table.code == 0 and "schedule" in table.out.splitlines()[0].split()

    s = [0.2, 0.3, 0.5]
    out, model_file = cli.tmp / "g.json", cli.tmp / "m.pt"
    exported = cli("export", "shown", "--s", ",".join(map(str, s)), "--out", out,
                   "--model", model_file)
    assert exported.code == 0, exported.err
    genotype = json.loads(out.read_text())
    best = cli.study("shown").best_trial
    ops = load_study_file(TINY).search["space"]["ops"]
    assert genotype["trial"] == best.number
    assert genotype["ops"] == list(ops)
    assert genotype["s"] == pytest.approx(s)
    assert set(genotype["genotype"]) == {"normal", "reduce"}
    assert {e["op"] for edges in genotype["genotype"].values() for e in edges} <= set(ops)
    checkpoint = SearchResult.load(best.user_attrs["checkpoint"])
    assert genotype["genotype"] == checkpoint.genotype(s).to_dict()

    model = load_model(model_file)
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10)

    other = cli("export", "shown", "--trial", 1 - best.number, "--s", "0.2,0.3,0.5",
                "--out", cli.tmp / "other.json")
    assert other.code == 0
    assert json.loads((cli.tmp / "other.json").read_text())["trial"] == 1 - best.number


def test_export_refuses_an_unknown_study_and_a_bad_complexity_vector(cli: Hpo) -> None:
    assert cli.run("--trials", 1, "--name", "kept42").code == 0
    out = cli.tmp / "g.json"

    unknown = cli("export", "nope", "--s", "0.2,0.3,0.5", "--out", out)
    assert unknown.code == 2
    (line,) = unknown.err_lines
    assert "'nope'" in line and "kept42" in line

    bad_s = cli("export", "kept42", "--s", "1,0.5,0.5", "--out", out)
    assert bad_s.code == 2
    (line,) = bad_s.err_lines
    assert "summing to 1" in line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, one line on stderr, nothing written


BAD_INPUTS = [
    pytest.param(["--sampler", "nope"], None, ["nope", "tpe", "grid", "skopt"],
                 id="unknown-sampler"),
    pytest.param(["--pruner", "sometimes"], None, ["sometimes", "median", "hyperband"],
                 id="unknown-pruner"),
    pytest.param(["--trials", "0"], None, ["--trials", "0"], id="zero-trials"),
    pytest.param(["--jobs", "0"], None, ["--jobs", "0"], id="zero-jobs"),
    pytest.param([], "missing", ["missing.yaml", "not found"], id="missing-study-file"),
    pytest.param([], "malformed", ["not valid YAML"], id="malformed-yaml"),
    pytest.param([], setting("colour", "blue"), ["colour"], id="unknown-top-level-key"),
    pytest.param([], setting("epochs", 3), ["epochs"], id="top-level-epochs"),
    pytest.param([], setting("params.kappa.scale", 2), ["params.kappa", "scale"],
                 id="unknown-key-in-param"),
    pytest.param([], setting("fidelity.epochs", "ten"), ["fidelity.epochs", "ten"],
                 id="wrong-type"),
    pytest.param([], setting("fidelity", 3), ["fidelity"], id="fidelity-not-a-mapping"),
    pytest.param([], setting("params.kappa.low", 20.0), ["params.kappa", "low"],
                 id="empty-range"),
    pytest.param([], setting("params.t_end.high", 0.8), ["t_end", "t_start"],
                 id="t-end-above-t-start"),
    pytest.param([], setting("grid.kappa", [0.3, 30.0]), ["grid.kappa", "30"],
                 id="grid-value-outside-range"),
    pytest.param(["--sampler", "grid"], setting("grid.t_start", None), ["t_start", "grid"],
                 id="grid-without-float-values"),
    pytest.param([], setting("params.learning_rate", {"type": "float", "low": 0.1, "high": 1}),
                 ["learning_rate", "not a tunable setting"], id="not-a-setting"),
    pytest.param([], setting("objective", {"kind": "multi", "probe": "Z"}),
                 ["objective.probe", "'Z'"], id="unknown-objective-probe"),
    pytest.param([], setting("probes.lattice_divisions", 0), ["lattice_divisions"],
                 id="zero-lattice-divisions"),
]


@pytest.mark.parametrize(("args", "study", "expected"), BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cli: Hpo, args: list[str], study: str | Callable[[dict[str, Any]], None] | None,
    expected: list[str],
) -> None:
    """``study``: None (tiny.yaml), "missing", "malformed" or an edit of tiny.yaml."""
    path = TINY if study is None else cli.tmp / f"{study}.yaml"
    if study == "malformed":
        path.write_text("name: tiny\nparams: {kappa: [0.1, 1.0\n")
    elif callable(study):
        path = cli.write_study(study)
    result = cli.run(*args, study=path)
    assert result.code == 2
    (line,) = result.err_lines
    assert line.startswith("hpo run: error:")
    for word in expected:
        assert word in line
    assert result.out == ""
    assert cli.nothing_written()


@pytest.mark.slow
def test_console_script_prints_exactly_one_line_on_bad_input(cli: Hpo) -> None:
    script = Path(sys.executable).with_name("hpo")
    assert script.is_file(), "the hpo console script is not installed"
    argv = [str(script), *cli.argv("run", "--study", TINY, "--sampler", "nope")]
    proc = subprocess.run(argv, cwd=cli.tmp, capture_output=True, text=True, timeout=WAIT_S,
                          check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "unknown sampler 'nope'" in line
    assert cli.nothing_written()


@pytest.mark.slow
def test_changed_study_file_under_the_same_name_is_refused(cli: Hpo) -> None:
    assert cli.run("--trials", 1, "--name", "fixed").code == 0
    journal = cli.storage.read_bytes()

    changed = cli.write_study(setting("fidelity.epochs", 2))
    result = cli.run("--trials", 2, "--name", "fixed", study=changed)
    assert result.code == 2
    (line,) = result.err_lines
    assert "'fixed' exists" in line and "different study file" in line
    assert cli.storage.read_bytes() == journal
    assert states(cli.trials("fixed")) == {"COMPLETE": 1}


@pytest.mark.slow
def test_sqlite_storage_url(cli: Hpo) -> None:
    url = f"sqlite:///{cli.tmp / 'studies.db'}"
    result = cli.run("--trials", 2, "--storage", url)  # overrides the journal default
    assert result.code == 0, result.err
    study = optuna.load_study(study_name="tiny", storage=url)
    assert states(study.get_trials()) == {"COMPLETE": 2}
    listed = cli("list", "--storage", url)
    assert listed.code == 0 and listed.out.startswith("tiny\t2 complete\t")
    assert not cli.storage.exists()  # nothing went to the default journal


def test_unknown_storage_scheme_is_one_line(cli: Hpo) -> None:
    result = cli.run("--trials", 1, "--storage", "mongodb://localhost/x")
    assert result.code == 2
    (line,) = result.err_lines
    assert "unknown scheme" in line and "sqlite:///" in line


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("through", ["--address", "RAY_ADDRESS"])
def test_an_unreachable_ray_cluster_is_one_line_before_anything_is_written(
        cli: Hpo, monkeypatch: pytest.MonkeyPatch, through: str) -> None:
    address = f"127.0.0.1:{closed_port()}"
    flags = ["--address", address] if through == "--address" else []
    if through == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", address)
    result = cli.run("--backend", "ray", "--trials", 1, *flags)
    assert result.code == 2
    assert len(result.err_lines) == 1 and f"{through} {address}: no Ray cluster" in result.err
    assert cli.nothing_written()


@pytest.mark.parametrize("content", [b"secret-token", b'{"a": 1}\n{"b": 2}',
                                     b"number,state\n0,COMPLETE"])
def test_a_file_that_is_not_a_journal_is_refused_and_left_unchanged(
        cli: Hpo, content: bytes) -> None:
    """`hpo list --storage auth_token` once "repaired" a token file to 0 bytes."""
    path = cli.tmp / "auth_token"
    path.write_bytes(content)
    for command in (("list",), ("show", "x"), ("run", "--trials", "1", "--study", TINY)):
        result = hpo_main(cli, path, *command)
        assert result.code == 2, (command, result.err)
        assert len(result.err_lines) == 1 and "not an Optuna journal" in result.err, result.err
    assert path.read_bytes() == content
    assert sorted(p.name for p in cli.tmp.iterdir()) == ["auth_token"]  # no backup, no lock


def hpo_main(cli: Hpo, storage: Path, command: str, *args: object) -> Result:
    """``hpo COMMAND`` with ``--storage`` last (it wins over the helper's default)."""
    return cli(command, *args, "--storage", storage)


@pytest.mark.parametrize(("storage", "said"), [
    ("{tmp}", "a folder, not a journal file"),
    ("journal://", "a folder, not a journal file"),
    ("sqlite:///{tmp}", "a folder, not a database file"),
    ("sqlite:///{tmp}/new/dir/x.db", "no such database file"),
])
def test_a_storage_that_cannot_be_one_is_one_line_and_creates_nothing(
        cli: Hpo, storage: str, said: str) -> None:
    result = cli("list", "--storage", storage.format(tmp=cli.tmp))
    assert result.code == 2 and len(result.err_lines) == 1 and said in result.err, result.err
    assert not (cli.tmp / "new").exists()


def test_artifacts_naming_a_file_is_one_line(cli: Hpo) -> None:
    target = cli.tmp / "afile"
    target.write_text("mine")
    result = cli.run("--trials", 1, "--artifacts", target)
    assert result.code == 2 and "a file, not a folder" in result.err
    assert target.read_text() == "mine" and not cli.storage.exists()


@pytest.mark.parametrize("forge", ["key", "op_code"])
def test_a_forged_journal_operation_is_one_line_not_a_traceback(cli: Hpo, forge: str) -> None:
    synthetic = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"
    assert cli.run("--trials", 2, study=synthetic).code == 0
    text = cli.storage.read_text()
    if forge == "key":
        text = text.replace('"trial_id"', '"trial_iX"', 1)
    else:
        text += '{"op_code": 99, "worker_id": "x"}\n'
    cli.storage.write_text(text)
    result = cli("list")
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert "holds an operation Optuna cannot replay" in result.err
    assert cli.storage.read_text() == text  # nothing repaired or cut


@pytest.mark.parametrize("forged", ["Infinity", "NaN", "-Infinity"])
def test_a_forged_value_that_is_not_finite_is_one_line(cli: Hpo, forged: str) -> None:
    """A journal edited to hold ``inf`` showed "best hypervolume inf"."""
    synthetic = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"
    assert cli.run("--trials", 2, study=synthetic).code == 0
    text, count = re.subn(r'"values": ?\[[-0-9.e]+', f'"values": [{forged}',
                          cli.storage.read_text(), count=1)
    assert count == 1
    cli.storage.write_text(text)
    for command in (["list"], ["show", "low-dim-synthetic"]):
        result = cli(*command)
        assert result.code == 2 and len(result.err_lines) == 1, (command, result.err)
        assert "not finite numbers" in result.err and "restore it" in result.err


def test_a_study_too_large_for_the_memory_is_refused_before_anything_is_built(
        cli: Hpo) -> None:
    """Within every documented bound (~9 TB of weights): validation built every op for
    minutes, then the trial died in the allocator."""
    huge = yaml.safe_load(TINY.read_text())
    huge["search"]["space"].update(cells=64, nodes=16, channels=4096)
    study = cli.tmp / "huge.yaml"
    study.write_text(yaml.safe_dump(huge))
    result = cli.run("--trials", 1, study=study)
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert "GiB of memory" in result.err and "lower search.space" in result.err
    assert not cli.storage.exists() and not cli.artifacts.exists()


@pytest.mark.slow
def test_jobs_never_exceed_the_trials(cli: Hpo) -> None:
    synthetic = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"
    result = cli.run("--trials", 2, "--jobs", 8, study=synthetic)
    assert result.code == 0 and "2 trials, 2 at once" in result.out, result.out


@pytest.mark.slow
def test_a_dollar_in_a_parameter_name_is_text_in_the_report(cli: Hpo) -> None:
    """matplotlib read "x$3$" as TeX math and the report died before index.html."""
    study = cli.tmp / "dollar.yaml"
    study.write_text("name: dollar\nobjective: {kind: synthetic, name: low_effective_dimension}"
                     "\nparams:\n  x1: {type: float, low: 0.0, high: 1.0}\n"
                     "  x2: {type: float, low: 0.0, high: 1.0}\n"
                     '  "x$3$": {type: float, low: 0.0, high: 1.0}\n')
    assert cli.run("--trials", 25, study=study).code == 0
    result = cli("report", "dollar", "--out", cli.tmp / "report")
    assert result.code == 0, result.err
    assert "x$3$" in (cli.tmp / "report" / "index.html").read_text()


def test_report_out_naming_a_file_is_one_line(cli: Hpo) -> None:
    synthetic = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"
    assert cli.run("--trials", 2, study=synthetic).code == 0
    target = cli.tmp / "afile"
    target.write_text("mine")
    result = cli("report", "low-dim-synthetic", "--out", target)
    assert result.code == 2 and "a file, not a folder" in result.err, result.err
    assert target.read_text() == "mine"
