"""Unit tests of a trial's life and the facts read from a study, each in milliseconds:
the stop rule, value checks, ``run_trial``, ``record_outcome``, ``ray_outcome``, the one
best-trial rule and the per-trial-seeded sampler. No training, no subprocess."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from hpo.backends.ray import OUTCOME_KEY, ray_outcome
from hpo.compat_optuna import enqueued_params
from hpo.facts import best_numbers, best_trial, state_counts
from hpo.members import pick_trial
from hpo.objectives import MAXIMIZE, MINIMIZE, OBJECTIVES, Objective
from hpo.records import (
    FAIL_REASON_ATTR,
    RETRY_OF_ATTR,
    SCALAR_ATTRS,
    WORKER_ATTR,
    TrialRecord,
    opening_attrs,
    set_trial_attrs,
)
from hpo.samplers import SAMPLERS, TrialSeededSampler, study_sampler, trial_seed
from hpo.stopping import GRID, STOPPED_EARLY, TIMEOUT, TRIALS, StopRule
from hpo.storage import open_journal
from hpo.study import load_study
from hpo.trial import TrialOutcome, TrialTask, record_outcome, run_trial, values_problem

optuna.logging.set_verbosity(optuna.logging.WARNING)


def counts(complete: int = 0, pruned: int = 0, failed: int = 0, running: int = 0,
           waiting: int = 0) -> dict[TrialState, int]:
    found = dict.fromkeys(TrialState, 0)
    found.update({TrialState.COMPLETE: complete, TrialState.PRUNED: pruned,
                  TrialState.FAIL: failed, TrialState.RUNNING: running,
                  TrialState.WAITING: waiting})
    return found


# ------------------------------------------------------------------------------ stop rule

RULE = StopRule(trials=5, max_failures=2, base_failures=1, deadline=100.0)


@pytest.mark.parametrize(("rule", "state", "now", "reason"), [
    (RULE, counts(complete=4), 50.0, None),
    (RULE, counts(complete=3, pruned=2), 50.0, TRIALS),  # pruned count toward --trials
    (RULE, counts(complete=1, failed=2), 50.0, None),  # one failure was before this run
    (RULE, counts(complete=1, failed=3), 50.0, "2 failed trials (--max-failures)"),
    (RULE, counts(complete=1), 100.5, TIMEOUT),
    (RULE, counts(complete=5), 100.5, TRIALS),  # the budget is the reason, not the clock
    (StopRule(10, 5, grid=True), counts(complete=4), 0.0, GRID),
    (StopRule(10, 5, grid=True), counts(complete=4, waiting=1), 0.0, None),
    (StopRule(10, 5, grid=True), counts(complete=4, running=1), 0.0, None),
])
def test_stop_rule_reason(rule: StopRule, state: dict, now: float, reason: str | None) -> None:
    assert rule.reason(state, now) == reason
    assert rule.final_reason(state, now) == (reason or STOPPED_EARLY)


@pytest.mark.parametrize(("rule", "state", "plan"), [
    (RULE, counts(complete=1, running=2), (2, 2)),
    (RULE, counts(complete=3, running=2), (0, 2)),  # wait for the running ones
    (RULE, counts(complete=5, running=2), (0, 0)),  # stop
    (StopRule(10, 5, grid=True), counts(complete=1, waiting=3, running=1), (3, 1)),
    (StopRule(3, 5, grid=True), counts(complete=1, waiting=3), (2, 0)),
])
def test_stop_rule_plan(rule: StopRule, state: dict, plan: tuple[int, int]) -> None:
    assert rule.plan(state, now=0.0) == plan


# ------------------------------------------------------------------------------ values

@pytest.mark.parametrize(("values", "expected", "problem"), [
    ((0.5,), 1, None),
    ((1, 2.5), 2, None),
    ((0.5, 0.1), 1, "returned 2 value(s); the study has 1"),
    ((), 1, "returned 0 value(s)"),
    ((math.nan,), 1, "nan, not a finite number"),
    ((math.inf, 1.0), 2, "inf, not a finite number"),
    (("0.5",), 1, "'0.5', not a number"),
    ((True,), 1, "True, not a number"),
])
def test_values_problem(values: tuple, expected: int, problem: str | None) -> None:
    found = values_problem(values, expected)
    assert (found is None) if problem is None else (problem in str(found))


# ------------------------------------------------------------------------------ run_trial

def study_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: units\nobjective: {{kind: {kind}}}\n"
                    "params:\n  x: {type: float, low: 0.0, high: 1.0}\n")
    return path


def returning(values: Any) -> Objective:
    def from_params(spec: Any, params: Any, seed: int) -> Any:
        if isinstance(values, Exception):
            raise values
        return values
    return Objective((MAXIMIZE,), "test objective", from_params=from_params)


@pytest.mark.parametrize(("values", "state", "reason"), [
    ([0.25], TrialState.COMPLETE, None),
    ([math.nan], TrialState.FAIL, "the objective returned nan, not a finite number"),
    ([0.1, 0.2], TrialState.FAIL, "the objective returned 2 value(s); the study has 1"),
    (ValueError("boom"), TrialState.FAIL, "ValueError: boom"),
])
def test_run_trial_tells_how_the_trial_ended(tmp_path: Path, values: Any, state: TrialState,
                                             reason: str | None) -> None:
    with OBJECTIVES.temporarily("units_objective", returning(values)):
        spec = load_study(study_file(tmp_path, "units_objective"))
        outcome = run_trial(TrialTask(number=0, params={"x": 0.5}, spec=spec, seed=7,
                                      reference=1.0))
    assert outcome.state == state
    assert outcome.record.fail_reason == reason
    assert outcome.record.seed == 7
    assert outcome.values == (tuple(values) if state == TrialState.COMPLETE else None)


def test_run_trial_propagates_a_full_disk(tmp_path: Path) -> None:
    full = OSError(28, "No space left on device")
    with OBJECTIVES.temporarily("units_objective", returning(full)):
        spec = load_study(study_file(tmp_path, "units_objective"))
        with pytest.raises(OSError, match="No space"):
            run_trial(TrialTask(number=0, params={"x": 0.5}, spec=spec, seed=0, reference=1.0))


def test_a_temporary_registration_is_undone() -> None:
    with OBJECTIVES.temporarily("units_objective", returning([1.0])):
        assert "units_objective" in OBJECTIVES
    assert "units_objective" not in OBJECTIVES


# ------------------------------------------------------------------------------ record_outcome

@pytest.mark.parametrize(("outcome", "state", "value", "requeued"), [
    (TrialOutcome(TrialState.COMPLETE, (0.75,), TrialRecord(seed=3)), TrialState.COMPLETE,
     0.75, False),
    (TrialOutcome(TrialState.PRUNED), TrialState.PRUNED, None, False),
    (TrialOutcome.failed("broken"), TrialState.FAIL, None, False),
    (TrialOutcome(TrialState.FAIL, record=TrialRecord(fail_reason="cut"), requeue=True,
                  interrupted=True), TrialState.FAIL, None, True),
])
def test_record_outcome(outcome: TrialOutcome, state: TrialState, value: float | None,
                        requeued: bool) -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    record_outcome(study, trial, outcome, params={"x": 0.5})
    done = study.trials[0]
    assert done.state == state and done.value == value
    assert done.user_attrs.get(FAIL_REASON_ATTR) == outcome.record.fail_reason
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(waiting) == int(requeued)
    if requeued:
        assert enqueued_params(waiting[0]) == {"x": 0.5}
        assert waiting[0].user_attrs[RETRY_OF_ATTR] == 0



def test_a_trials_numbers_come_first_in_a_journal_also_when_it_was_re_enqueued(
        tmp_path: Path) -> None:
    """The numbers' slots are written when a trial is asked or enqueued; the journal keeps a
    key where it was first written, so the numbers lead once the trial ends (read back by
    another process's storage, as optuna-dashboard reads it)."""
    path = tmp_path / "x.journal"
    study = optuna.create_study(storage=open_journal(path), direction="maximize")
    first = study.ask()
    set_trial_attrs(first, opening_attrs({WORKER_ATTR: "host:1", "history": []}))
    cut = TrialOutcome(TrialState.FAIL, record=TrialRecord(fail_reason="cut"), requeue=True)
    record_outcome(study, first, cut, params={"x": 0.5})
    again = study.ask()  # the re-enqueued configuration
    set_trial_attrs(again, opening_attrs({WORKER_ATTR: "host:2"}))
    record = TrialRecord(seed=1, family=({"probe": "A", "accuracy": 0.9, "params": 10},),
                         family_summary={"hypervolume": 0.5, "controllability": 0.1})
    record_outcome(study, again, TrialOutcome(TrialState.COMPLETE, (0.5,), record))
    stored = optuna.load_study(study_name=study.study_name, storage=open_journal(path))
    done = stored.trials[again.number].user_attrs
    assert list(done)[:len(SCALAR_ATTRS)] == list(SCALAR_ATTRS)
    assert [done[key] for key in SCALAR_ATTRS] == [0.9, 10, 0.5, 0.1]
    assert done[RETRY_OF_ATTR] == first.number


# ------------------------------------------------------------------------------ ray_outcome

@pytest.mark.parametrize(("result", "error", "state", "reason"), [
    (None, True, TrialState.FAIL, "Ray worker failed 3 times"),
    ({"val_acc": 0.5}, False, TrialState.PRUNED, None),  # the scheduler stopped it
    (None, False, TrialState.PRUNED, None),
    ({OUTCOME_KEY: TrialOutcome(TrialState.COMPLETE, (0.5,)).to_json()}, False,
     TrialState.COMPLETE, None),
    ({OUTCOME_KEY: TrialOutcome.failed("ValueError: x").to_json()}, False, TrialState.FAIL,
     "ValueError: x"),
])
def test_ray_outcome(result: dict | None, error: bool, state: TrialState,
                     reason: str | None) -> None:
    outcome = ray_outcome(result, error, retries=2)
    assert outcome.state == state
    assert (outcome.record.fail_reason or "").startswith(reason or "")


def test_an_outcome_travels_as_json_with_its_requeue() -> None:
    sent = TrialOutcome(TrialState.FAIL, record=TrialRecord(fail_reason="disk full"),
                        requeue=True)
    assert TrialOutcome.from_json(sent.to_json()) == sent


# ------------------------------------------------------------------------------ best trial

def pareto_study(hypervolumes: list[float | None], values: list[tuple[float, float]]
                 ) -> optuna.Study:
    study = optuna.create_study(directions=[MAXIMIZE, MINIMIZE])
    for hv, value in zip(hypervolumes, values):
        trial = study.ask()
        summary = {} if hv is None else {"hypervolume": hv}
        record_outcome(study, trial, TrialOutcome(TrialState.COMPLETE, value,
                                                  TrialRecord(family_summary=summary)))
    return study


@pytest.mark.parametrize(("hypervolumes", "values", "best"), [
    ([0.2, 0.5, 0.4], [(0.9, 10.0), (0.8, 5.0), (0.7, 1.0)], 1),  # the largest hypervolume
    ([0.5, 0.5], [(0.9, 10.0), (0.9, 10.0)], 0),  # a tie: the lower number
    ([None, None], [(0.7, 1.0), (0.9, 10.0)], 1),  # no hypervolume: the best first value
    ([None, 0.1], [(0.9, 1.0), (0.5, 10.0)], 1),  # a hypervolume beats none
])
def test_the_best_trial_of_a_pareto_study(hypervolumes: list, values: list, best: int) -> None:
    study = pareto_study(hypervolumes, values)
    assert best_trial(study).number == best
    assert pick_trial(study, "best").number == best  # hpo export and hpo train
    assert best in best_numbers(study) or best_trial(study).number == best


def test_the_best_trial_of_a_single_value_study() -> None:
    study = optuna.create_study(direction="minimize")
    assert best_trial(study) is None and best_numbers(study) == set()
    for value in (3.0, 1.0, 2.0):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.FAIL)
    assert best_trial(study).number == 1 == pick_trial(study, "best").number
    assert best_numbers(study) == {1}
    assert state_counts(study)[TrialState.FAIL] == 1


# ------------------------------------------------------------------------------ sampler

def test_a_trial_seeded_sampler_samples_trial_n_the_same_whoever_asks() -> None:
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    first = optuna.create_study(sampler=TrialSeededSampler(SAMPLERS.get("random").build, 5))
    for _ in range(3):
        trial = first.ask({"x": distribution})
        first.tell(trial, trial.params["x"])
    # another process: a new sampler object, asked for trial 2 only after the same history
    second = optuna.create_study(sampler=TrialSeededSampler(SAMPLERS.get("random").build, 5))
    for frozen in first.trials[:2]:
        second.add_trial(frozen)
    assert second.ask({"x": distribution}).params == first.trials[2].params
    alone = optuna.samplers.RandomSampler(seed=trial_seed(5, 2))
    assert first.trials[2].params["x"] == alone.sample_independent(
        first, first.trials[2], "x", distribution)


def test_a_qmc_study_has_one_sequence_not_a_seed_per_trial() -> None:
    assert isinstance(study_sampler("tpe", 0, [MAXIMIZE]), TrialSeededSampler)
    assert isinstance(study_sampler("qmc", 0, [MAXIMIZE]), optuna.samplers.QMCSampler)


@pytest.mark.slow  # imports Ray Tune (no cluster is started)
def test_a_full_disk_on_ray_fails_and_requeues_the_trial_and_asks_no_more(
        tmp_path: Path) -> None:
    import dataclasses

    from hpo.backends.ray import DISK_FULL, HALT_KEY, make_searcher
    from hpo.options import RunOptions

    spec = load_study(Path(__file__).resolve().parent.parent / "studies"
                      / "low-dim-synthetic.yaml")
    options = RunOptions(study_path=None, storage=f"sqlite:///{tmp_path / 's.db'}",
                         backend="ray")
    optuna.create_study(study_name="full", storage=options.storage,
                        directions=spec.objective.directions)
    searcher = make_searcher(spec, options, "full",
                             study_sampler("random", 0, spec.objective.directions))
    asked = searcher.suggest("t1")
    outcome = dataclasses.replace(TrialOutcome.failed(DISK_FULL), requeue=True)
    searcher.on_trial_complete("t1", {HALT_KEY: DISK_FULL, OUTCOME_KEY: outcome.to_json()})
    assert searcher.halt == DISK_FULL and searcher.suggest("t2") == searcher.FINISHED
    failed, again = optuna.load_study(study_name="full", storage=options.storage).trials
    assert failed.state == TrialState.FAIL and failed.user_attrs[FAIL_REASON_ATTR] == DISK_FULL
    assert again.state == TrialState.WAITING and again.user_attrs[RETRY_OF_ATTR] == 0
    assert enqueued_params(again) == {k: v for k, v in asked.items() if not k.startswith("_")}


# ------------------------------------------------------------------------------ what is shown

@pytest.mark.parametrize(("url", "secret", "shown"), [
    ("postgresql://u:pw@h:5432/db", "pw", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:pa ss@h/db", "pa ss", "postgresql://u:***@h/db"),  # a space
    ("postgresql://u:p@ss@h/db", "p@ss", "postgresql://u:***@h/db"),  # a raw @
    ("postgresql://u@h/db?sslmode=x&password=secret", "secret",
     "postgresql://u@h/db?sslmode=x&password=***"),
    ("postgresql://u@h/db?PASSWORD=secret", "secret", "postgresql://u@h/db?PASSWORD=***"),
    ("runs/hpo.journal", None, "runs/hpo.journal"),
    (None, None, "runs/hpo.journal"),
])
def test_a_storage_is_shown_without_its_password(url: str | None, secret: str | None,
                                                 shown: str) -> None:
    from hpo.storage_urls import mask_secrets, storage_label

    assert storage_label(url) == shown
    if secret is not None:
        said = mask_secrets(f"the driver said: cannot log in to {url} with {secret}", url)
        assert secret not in said and "***" in said


def test_spreadsheet_formulas_in_csv_cells_are_defused() -> None:
    from hpo.spreadsheet import defuse_formulas

    frame = pd.DataFrame({"=cmd": ["=cmd|' /C calc'!A0", "@SUM(A1)", "+1", "plain", None],
                          "value": [-0.5, 1.0, 2.0, 3.0, 4.0]})
    safe = defuse_formulas(frame)
    assert list(safe.columns) == ["'=cmd", "value"]
    assert safe["'=cmd"].tolist()[:4] == ["'=cmd|' /C calc'!A0", "'@SUM(A1)", "'+1", "plain"]
    assert safe["value"].tolist() == [-0.5, 1.0, 2.0, 3.0, 4.0]  # numbers untouched


def test_timing_pairs_only_trials_of_one_process() -> None:
    """Two workers, each trial 10 s plus 1 s of harness, started 5 s apart: pairing
    consecutive starts across workers gave 5 - 10 = -5 s of overhead ("-19.80 s, -78.4 %")."""
    import datetime

    from optuna.distributions import FloatDistribution
    from optuna.trial import FrozenTrial

    from hpo.records import WORKER_ATTR, TrialRecord, timing_summary

    zero = datetime.datetime(2026, 1, 1)

    def trial(number: int, worker: str, start_s: float) -> FrozenTrial:
        attrs = {**TrialRecord(seconds=10.0).to_user_attrs(), WORKER_ATTR: worker}
        return FrozenTrial(number=number, state=TrialState.COMPLETE, value=0.5,
                           datetime_start=zero + datetime.timedelta(seconds=start_s),
                           datetime_complete=zero + datetime.timedelta(seconds=start_s + 10),
                           params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                           user_attrs=attrs, system_attrs={}, intermediate_values={},
                           trial_id=number)

    trials = [trial(n, f"h:{n % 2}", start_s=5.0 * n + (n // 2) * 1.0) for n in range(6)]
    timing = timing_summary(trials)
    assert timing["evaluate_s"] == 10.0 and timing["overhead_s"] == pytest.approx(1.0)
    assert timing["overhead_share"] == pytest.approx(0.1)
