"""What a study and its trials keep besides Optuna's own fields, and how to read it back.

``TrialRecord`` owns what a trial stores (its user attributes); the attribute names are the
constants below, and nothing else in the harness or the reports spells them. Study-level
attribute names are the ``STUDY_*`` constants.
"""

from __future__ import annotations

import itertools
import os
import platform
import socket
import statistics
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpo.compat_optuna import enqueued_params
from search_core.machine import cpu_model
from search_core.threads import openmp_environment, usable_cpus

if TYPE_CHECKING:
    import pandas as pd

# trial user attributes: TrialRecord's fields, and those written while a trial runs
WORKER_ATTR = "worker"  # "host:pid" of the process running a trial
HEARTBEAT_ATTR = "heartbeat"  # time.time() of the running trial's owner's latest sign of life
HISTORY_ATTR = "history"  # per-epoch metrics, written after every epoch
FAIL_REASON_ATTR = "fail_reason"
GRID_CELL_ATTR = "grid_cell"  # the grid cell an enqueued trial runs (grid_key)
RETRY_OF_ATTR = "retry_of"  # the trial whose configuration this one runs again
CONFIG_ATTR = "config"  # intensification: the configuration evaluated (its first trial's number)
SEED_INDEX_ATTR = "seed_index"  # intensification: which of its seeds (0, 1, ...)
SAMPLER_SEED_ATTR = "sampler_seed"
RAY_NODE_ID_ATTR = "ray_node_id"  # the Ray node that ran a trial's last attempt
RAY_NODE_IP_ATTR = "ray_node_ip"
RAY_NODES_ATTR = "ray_nodes"  # every node an attempt of the trial ran on
RAY_RESTARTS_ATTR = "ray_restarts"  # Tune restarted it (its worker died)
RAY_WORKER_PID_ATTR = "ray_worker_pid"  # the process running it now
RAY_ATTRS = (RAY_NODE_ID_ATTR, RAY_NODE_IP_ATTR, RAY_NODES_ATTR, RAY_RESTARTS_ATTR,
             RAY_WORKER_PID_ATTR)

# study user attributes
STUDY_FILE_ATTR = "study_file"  # the parsed study file (StudySpec.to_dict)
STUDY_SOURCE_ATTR = "study_source"  # the study file as hpo run named it (announce.shown_path):
# relative to the folder it ran in, else the file's name; "the shipped NAME.yaml"
FINGERPRINT_ATTR = "fingerprint"  # written last: a study without it is incomplete
REFERENCE_ATTR = "reference_complexity"
ENVIRONMENT_ATTR = "environment"
SAMPLER_ATTR = "sampler"
GRID_ATTR = "grid"  # number of grid cells enqueued (written after the last)
TRAINED_ATTR = "trained_trial_{number}"  # hpo train's results for trial ``number``
REEVALUATED_ATTR = "reevaluated_trial_{number}"  # hpo reevaluate's, by fresh seed


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_on_this_host(owner: str) -> bool:
    return owner.rsplit(":", 1)[0] == socket.gethostname()


def owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a trial still runs (unknowable on another host)."""
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions, git commit, CPU and threads: enough to tell two machines' studies apart."""
    versions = {}
    for package in ("nas-hpo", "torch", "optuna", "numpy", "scikit-learn", "scikit-optimize",
                    "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads_per_trial": threads,
        "openmp": openmp_environment(threads),  # what the trials' processes get
        "host": socket.gethostname(),
    }


SCALAR_ATTRS = ("probe_A_accuracy", "probe_A_params", "family_hypervolume",
                "family_controllability")  # derived from the record, for the dashboard


def opening_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a trial writes first, when it is asked or enqueued: an empty slot (None) for each
    of ``SCALAR_ATTRS``, then ``attrs``. optuna-dashboard lists a trial's attributes in the
    order its storage returns them, and Optuna's journal storage (our default) keeps each
    key where it was first written (a dict updated in place), so the numbers written when the
    trial ends lead the list, before ``worker``, ``sampler_seed``, ``heartbeat`` and
    ``history``. RDB storages promise no order (SQLite returns them sorted by key)."""
    return dict.fromkeys(SCALAR_ATTRS) | attrs


RETRY_CARRIES = (GRID_CELL_ATTR, CONFIG_ATTR, SEED_INDEX_ATTR)  # what a retry keeps


def retry_attrs(number: int, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The opening attributes of a retry of trial ``number`` (``attrs``: its user
    attributes): the trial it retries, and its grid cell and intensification tags."""
    return opening_attrs({RETRY_OF_ATTR: number,
                          **{key: attrs[key] for key in RETRY_CARRIES if key in attrs}})


def set_trial_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Write ``attrs`` into ``trial`` in their order (one storage write each)."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


@dataclass(frozen=True)
class TrialRecord:
    """Everything a trial stores besides Optuna's own fields, as its user attributes.

    ``to_user_attrs`` gives the attributes a finished trial's record writes (fields that are
    None or empty are left out); ``from_frozen`` reads any trial back, whatever it holds.
    ``history`` and ``worker``/``heartbeat`` are also written while the trial runs."""

    seed: int | None = None
    sampler_seed: int | None = None
    worker: str | None = None
    history: tuple[dict[str, float], ...] = ()
    family: tuple[dict[str, Any], ...] = ()
    family_summary: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    threads: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)  # where it ran: device, device_name
    precision: str | None = None
    resumed_from: int | None = None  # epochs done by an earlier attempt, when it resumed
    checkpoint: str | None = None
    fail_reason: str | None = None
    grid_cell: str | None = None
    retry_of: int | None = None
    heartbeat: float | None = None
    ray: dict[str, Any] = field(default_factory=dict)  # RAY_ATTRS of a trial run on Ray
    pipeline: tuple[dict[str, Any], ...] = ()  # per compressed member: its stages' records

    def to_user_attrs(self) -> dict[str, Any]:
        """The record as user attributes; the few scalars first (optuna-dashboard lists
        attributes in the order they were first written)."""
        attrs: dict[str, Any] = self.scalars()
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "ray":
                attrs |= value
            elif value is not None and value != () and value != {}:
                attrs[item.name] = list(value) if isinstance(value, tuple) else value
        return attrs

    def scalars(self) -> dict[str, float]:
        """A few numbers of the family as flat attributes (the rest are JSON lists that
        optuna-dashboard cuts off): probe A's accuracy and parameters, the family's
        hypervolume and controllability. Derived; never read back."""
        probe_a = next((row for row in self.family if row.get("probe") == "A"), {})
        values = (probe_a.get("accuracy"), probe_a.get("params"), self.hypervolume,
                  self.controllability)
        return {key: value for key, value in zip(SCALAR_ATTRS, values) if value is not None}

    @classmethod
    def from_user_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        known = {item.name for item in fields(cls)} - {"ray"}
        kwargs = {key: attrs[key] for key in known if key in attrs}
        for key in ("history", "family", "pipeline"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key] or ())
        ray = {key: attrs[key] for key in RAY_ATTRS if key in attrs}
        return cls(**kwargs, ray=ray)

    @classmethod
    def from_frozen(cls, trial: optuna.trial.FrozenTrial) -> TrialRecord:
        return cls.from_user_attrs(trial.user_attrs)

    @property
    def hypervolume(self) -> float | None:
        return self.family_summary.get("hypervolume")

    @property
    def controllability(self) -> float | None:
        return self.family_summary.get("controllability")


def stored_objective(study: optuna.Study) -> dict[str, Any]:
    """The ``objective`` section of the saved study file ({} if unknown)."""
    study_file = study.user_attrs.get(STUDY_FILE_ATTR)
    objective = study_file.get("objective") if isinstance(study_file, dict) else None
    return objective if isinstance(objective, dict) else {}


def metric_names(study: optuna.Study) -> list[str]:
    """A name per value: the study's metric names, else its stored objective's (a study
    created before they were set), else "value"."""
    if study.metric_names:
        return list(study.metric_names)
    from hpo.objectives import ObjectiveSpec
    from search_core.errors import ConfigError

    try:
        names = ObjectiveSpec(**stored_objective(study)).metric_names
    except (ConfigError, TypeError):
        names = []
    return names if len(names) == len(study.directions) else ["value"] * len(study.directions)


PARAM_PREFIX = "param_"  # a parameter's column in a trials frame (trial_row, study_frame)


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One flat row per trial for `hpo show`."""
    record = TrialRecord.from_frozen(trial)
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    if trial.values is not None:
        for i, value in enumerate(trial.values):
            row["value" if len(trial.values) == 1 else f"value_{i}"] = value
    params = trial.params or enqueued_params(trial)
    row |= {f"{PARAM_PREFIX}{k}": v for k, v in params.items()}
    for key in (CONFIG_ATTR, SEED_INDEX_ATTR):
        if key in trial.user_attrs:
            row[key] = trial.user_attrs[key]
    row["hypervolume"] = record.hypervolume
    row["controllability"] = record.controllability
    row["seconds"] = record.seconds
    row["fail_reason"] = record.fail_reason
    return row


def readable_columns(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A trials frame (``value``/``value_i`` and ``param_*`` columns) under the names a
    person reads: the values named (``named_values``), each parameter under its own name
    (``param_`` kept where that name is taken)."""
    frame = named_values(frame, names)
    renames = {}
    for column in frame.columns:
        short = str(column).removeprefix(PARAM_PREFIX)
        if short != column and short not in frame.columns:
            renames[column] = short
    return frame.rename(columns=renames)


def named_values(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """A trials frame with each value under its objective's name (``names``, from
    ``metric_names``), a column that repeats one dropped (the family's hypervolume when it is
    the objective); unchanged when the names are unknown ("value" for each)."""
    values = ["value"] if "value" in frame else [f"value_{i}" for i in range(len(names))]
    renames = dict(zip([v for v in values if v in frame], names))
    if len(set(renames.values())) < len(renames):
        return frame
    frame = frame.drop(columns=[n for n in renames.values() if n in frame and n not in renames])
    return frame.rename(columns=renames)


def timing_summary(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Where a study's wall time went, from consecutive complete trials of one process
    (trials in parallel processes overlap: their starts say nothing of each other).

    ``evaluate_s``: the search plus family evaluation (the trial's ``seconds``);
    ``overhead_s``: the rest of a trial's cycle — sampling, storage writes, logging, and the
    gap until the same process starts its next trial — per trial (medians over trials)."""
    done = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                   and TrialRecord.from_frozen(t).seconds is not None),
                  key=lambda t: t.datetime_start)
    lanes: dict[Any, list[optuna.trial.FrozenTrial]] = {}
    for trial in done:  # the Ray worker process, else the hpo process that ran it
        lane = trial.user_attrs.get(RAY_WORKER_PID_ATTR, trial.user_attrs.get(WORKER_ATTR))
        lanes.setdefault(lane, []).append(trial)
    pairs = [pair for lane in lanes.values() for pair in itertools.pairwise(lane)]
    if not pairs:
        return {}
    evaluate_s = [float(TrialRecord.from_frozen(t).seconds or 0.0) for t, _ in pairs]
    overhead = [(nxt.datetime_start - t.datetime_start).total_seconds() - seconds
                for (t, nxt), seconds in zip(pairs, evaluate_s)]
    median = statistics.median
    span = (done[-1].datetime_complete - done[0].datetime_start).total_seconds()
    return {
        "trials": len(done),
        "span_s": span,
        "evaluate_s": median(evaluate_s),
        "overhead_s": median(overhead),
        "overhead_share": median(overhead) / median(evaluate_s),
    }
