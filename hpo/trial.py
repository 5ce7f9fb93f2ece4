"""One trial's life, owned here for every backend: its parameters are suggested
(``sample_params``), it runs (``run_trial``), and its end is recorded and told
(``record_outcome``).

``run_trial`` and ``sample_params`` are the only places that turn what a trial raised into
its end state: a pruning signal is PRUNED; an interrupt is FAIL with its configuration
enqueued again; a full disk is not the trial's fault and propagates (the run stops, the
trial re-runs on resume); anything else is FAIL with the reason, and the study goes on.
A backend decides where a trial runs and hands the ``TrialOutcome`` to ``record_outcome``,
in the process that owns the Optuna trial (Ray: the driver, the outcome travels as JSON).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo.compat_optuna import stored_state
from hpo.evaluation import evaluate
from hpo.intensify import replicate_seed
from hpo.records import TrialRecord, retry_attrs, set_trial_attrs
from hpo.study_spec import ParamSpec, StudySpec
from search_core.errors import disk_full

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted; configuration re-enqueued"

History = list[dict[str, float]]
EpochCallback = Callable[[Any, History], None]  # (EpochMetrics, history so far)


@dataclass(frozen=True)
class TrialTask:
    """What a trial runs: the study, its parameters and where its checkpoint goes."""

    number: int
    params: dict[str, Any]
    spec: StudySpec
    seed: int
    reference: float  # the hypervolume's reference complexity (the study's)
    checkpoint: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: its state, its values (COMPLETE) and its record. ``requeue``: its
    configuration is enqueued again; ``interrupted``: the run stops after recording it."""

    state: TrialState
    values: tuple[float, ...] | None = None
    record: TrialRecord = field(default_factory=TrialRecord)
    requeue: bool = False
    interrupted: bool = False

    @classmethod
    def failed(cls, reason: str, record: TrialRecord | None = None) -> TrialOutcome:
        return cls(TrialState.FAIL, record=replace(record or TrialRecord(), fail_reason=reason))

    def to_json(self) -> str:
        return json.dumps({"state": self.state.name, "values": self.values,
                           "record": self.record.to_user_attrs(), "requeue": self.requeue})

    @classmethod
    def from_json(cls, text: str) -> TrialOutcome:
        data = json.loads(text)
        values = data.get("values")
        return cls(TrialState[data["state"]], tuple(values) if values is not None else None,
                   TrialRecord.from_user_attrs(data.get("record", {})),
                   requeue=bool(data.get("requeue", False)))


def training_seed(spec: StudySpec, seed: int, number: int) -> int:
    """The seed trial ``number`` searches with: the run's ``seed`` for every trial
    (``training_seed: common``: trials differ only by their parameters), or one derived from
    (seed, number) (``per_trial``: no configuration is chosen for one seed's luck)."""
    if spec.training_seed == "per_trial":
        return int(np.random.SeedSequence([seed, number]).generate_state(1)[0] % 2**31)
    return seed


def trial_seed(spec: StudySpec, seed: int, attrs: Mapping[str, Any], number: int) -> int:
    """The seed a trial searches with: a re-evaluated configuration's seed index picks it
    (``hpo.intensify.replicate_seed``), else ``training_seed``."""
    replicate = replicate_seed(seed, attrs) if spec.noise.intensify else None
    return training_seed(spec, seed, number) if replicate is None else replicate


def suggest(trial: optuna.Trial, name: str, param: ParamSpec) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, list(param.choices or ()))
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high),  # type: ignore[arg-type]
                                 step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, float(param.low), float(param.high),  # type: ignore[arg-type]
                               step=param.step, log=param.log)


def suggest_all(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    return {name: suggest(trial, name, param) for name, param in spec.params.items()}


def sample_params(study: optuna.Study, trial: optuna.Trial,
                  spec: StudySpec) -> dict[str, Any] | None:
    """The trial's parameters; None if the sampler failed on this study (the trial is then
    recorded FAIL with the reason, and the study goes on)."""
    try:
        return suggest_all(trial, spec)
    except Exception as err:
        if disk_full(err):
            raise
        outcome = TrialOutcome.failed(f"sampling failed: {type(err).__name__}: {err}")
        record_outcome(study, trial, outcome)
        return None


def run_trial(task: TrialTask, on_epoch: EpochCallback | None = None) -> TrialOutcome:
    """Run one trial and say how it ended; ``on_epoch(metrics, history)`` after each epoch
    may raise ``optuna.TrialPruned``."""
    history: History = []
    started = TrialRecord(seed=task.seed)

    def each_epoch(metrics: Any) -> None:
        history.append(metrics.to_dict())
        if on_epoch is not None:
            on_epoch(metrics, history)

    try:
        result = evaluate(task.spec, task.params, task.seed, task.reference,
                          on_epoch=each_epoch, checkpoint=task.checkpoint, threads=task.threads)
    except optuna.TrialPruned:
        return TrialOutcome(TrialState.PRUNED, record=replace(started, history=tuple(history)))
    except KeyboardInterrupt:
        return replace(TrialOutcome.failed(INTERRUPTED, started), requeue=True,
                       interrupted=True)
    except Exception as err:  # a failing trial is recorded, the study goes on
        if disk_full(err):
            raise  # not the trial's fault: stop; the trial is re-run on resume
        return TrialOutcome.failed(f"{type(err).__name__}: {err}", started)
    table = result.family
    record = replace(
        started, history=tuple(result.history), seconds=result.seconds, threads=result.threads,
        device=result.device, precision=result.precision, resumed_from=result.resumed_from,
        checkpoint=result.checkpoint,
        family=tuple(table.rows()) if table is not None else (),
        family_summary=table.summary() if table is not None else {},
        pipeline=tuple(result.pipeline),
    )
    values = tuple(result.values)
    problem = values_problem(values, len(task.spec.objective.directions))
    if problem is not None:
        return TrialOutcome.failed(problem, record)
    return TrialOutcome(TrialState.COMPLETE, values, record)


def values_problem(values: tuple[Any, ...], expected: int) -> str | None:
    """Why ``values`` cannot be told to a study with ``expected`` objectives (the count, a
    value that is not a finite number), or None: Optuna would fail such a trial without
    saying why."""
    if len(values) != expected:
        return f"the objective returned {len(values)} value(s); the study has {expected}"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            return f"the objective returned {value!r}, not a number"
        if not math.isfinite(float(value)):
            return f"the objective returned {float(value)}, not a finite number"
    return None


def record_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome,
                   params: dict[str, Any] | None = None) -> None:
    """Write the outcome's record into the trial, tell the study, and enqueue ``params``
    again when the outcome asks for it. A trial another process already finished (this one
    was paused or cut off past the silence limit, so its trial was declared stale and run
    again) keeps that end: one warning, this result discarded."""
    try:
        if stored_state(study, trial).is_finished():
            raise UpdateFinishedTrialError(f"trial {trial.number} is already finished")
        _record(study, trial, outcome, params)
    except UpdateFinishedTrialError:  # finished before, or while, this records it
        log.warning("trial %d was declared stale and run again by another process while this "
                    "one was paused or cut off; this result is discarded", trial.number)


def _record(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome,
            params: dict[str, Any] | None) -> None:
    set_trial_attrs(trial, outcome.record.to_user_attrs())
    if outcome.state == TrialState.COMPLETE:
        study.tell(trial, list(outcome.values or ()))
    else:
        study.tell(trial, state=outcome.state)
    if outcome.state == TrialState.FAIL and not (outcome.interrupted or outcome.requeue):
        log.warning("trial %d failed: %s", trial.number, outcome.record.fail_reason)
    if outcome.requeue and params is not None:
        study.enqueue_trial(params, user_attrs=retry_attrs(trial.number, trial.user_attrs))
