"""Create or resume a study, then run its trials in one or more local worker processes.

The sampler decides what to try; workers ask it, run the objective and tell the result.
Exactness of ``--trials`` across workers comes from a file lock around "count, then ask".

Determinism: a study run with the same seed, ``--jobs`` and ``--threads`` is the same study.
Each trial's parameters are sampled under the lock by a sampler seeded for that trial
(``trial_seed``), whichever worker asks; with ``--jobs N`` the workers ask in synchronous
batches of N (``Batch``): the next batch is asked once every trial of the last one has
finished, so each batch sees the same history however long its trials took.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hpo.objective import evaluate, reference_complexity
from hpo.records import (
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    environment,
    owner_alive,
    owner_on_this_host,
    worker_id,
)
from hpo.samplers import PRUNERS, SAMPLERS, build_sampler
from hpo.storage import open_storage, storage_label, study_names
from hpo.study import ParamSpec, StudySpec, check_study_name, load_study
from search_core.errors import ConfigError, NasHpoError
from search_core.registry import Registry
from search_core.threads import (
    child_environment,
    oversubscription,
    threads_per_trial,
    workers_per_machine,
)

log = logging.getLogger(__name__)
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
EXIT_DISK_FULL = 75  # a worker's exit code when the disk was full (EX_TEMPFAIL)
HEARTBEAT_S = 30.0  # a running trial's owner writes a heartbeat this often
STALE_AFTER_S = 600.0  # a RUNNING trial without a heartbeat for this long is stale
BATCH_WAIT_S = 600.0  # the longest a batch's trial waits for the others to be asked
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class RunOptions:
    study_path: str | None
    sampler: str = "tpe"
    trials: int = 20
    timeout: float | None = None
    jobs: int | None = None  # None: as many 1-thread workers as CPUs (search_core/threads.py)
    seed: int = 0
    name: str | None = None
    storage: str | None = None
    pruner: str = "none"
    max_failures: int = 5
    artifacts: str = "runs"
    threads: int | None = None
    backend: str = "local"
    address: str | None = None  # ray: join this cluster (auto or HOST:PORT)
    concurrency: int | None = None  # ray: trials at once (default: as many as CPUs allow)
    cpus_per_trial: int = 1  # ray: CPUs (and torch threads) per trial
    retries: int = 2  # ray: retries of a trial whose worker died
    verbose: bool = False
    grid_budget: int | None = None  # grid from the ranges, sized to this many cells
    study_attrs: tuple[tuple[str, Any], ...] = ()  # extra study user attributes
    reference: float | None = None  # hypervolume reference, when known (a compare group's)


@dataclass
class RunSummary:
    name: str
    complete: int
    pruned: int
    failed: int
    best: dict[str, Any] | None
    storage: str
    artifacts: str
    stopped_because: str = ""
    worker_deaths: tuple[str, ...] = ()  # worker processes that died (their trials re-run)


def with_jobs(options: RunOptions, spec: StudySpec) -> RunOptions:
    """``options`` with ``jobs`` decided: the thread policy's number of workers for this
    machine, never more than the trials; one for the Ray backend (it runs no local workers)
    and for synthetic objectives (microseconds per trial: a worker process costs more)."""
    if options.jobs is not None:
        return options
    if options.backend != "local" or spec.objective.kind == "synthetic":
        return replace(options, jobs=1)
    jobs = workers_per_machine(threads_per_trial(options.threads))
    return replace(options, jobs=max(1, min(jobs, options.trials)))


def validate(options: RunOptions) -> tuple[StudySpec, float]:
    """Everything that can be checked before anything is written; returns the study and
    its hypervolume reference complexity (this loads the data set, so a missing data
    folder fails here), unless ``options.reference`` already gives it."""
    spec = load_study(options.study_path)
    if options.name is not None:
        check_study_name(options.name, "--name")
    build_sampler(options.sampler, options.seed, spec.objective.directions)
    PRUNERS.get(options.pruner, "--pruner")
    if options.trials < 1:
        raise ConfigError(f"--trials: got {options.trials}; need >= 1")
    if options.jobs is not None and options.jobs < 1:
        raise ConfigError(f"--jobs: got {options.jobs}; need >= 1")
    trial_threads(options)  # raises on a bad --threads
    EXECUTORS.get(options.backend, "--backend")
    if options.backend != "ray" and (options.address or options.concurrency):
        raise ConfigError("--address and --concurrency need --backend ray")
    if options.cpus_per_trial < 1 or options.retries < 0 or (options.concurrency or 1) < 1:
        raise ConfigError("--cpus-per-trial and --concurrency need >= 1, --retries >= 0")
    if options.sampler == "grid" and options.grid_budget is None:
        grid_cells(spec)  # raises when a parameter has no grid values
    if options.reference is not None:
        return spec, options.reference
    return spec, reference_complexity(spec)


def study_name(options: RunOptions, spec: StudySpec) -> str:
    return options.name or spec.name  # both checked by check_study_name


def grid_values(name: str, param: ParamSpec, grid: dict[str, tuple[Any, ...]]) -> list[Any]:
    if name in grid:
        return list(grid[name])
    if param.type == "categorical":
        return list(param.choices or ())
    if param.type == "int" and not param.log:
        step = int(param.step or 1)
        return list(range(int(param.low), int(param.high) + 1, step))  # type: ignore[arg-type]
    raise ConfigError(f"grid.{name}: the grid sampler needs explicit values for the "
                      f"{param.type} parameter {name!r}; add them under grid:")


def grid_cells(spec: StudySpec, budget: int | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid values, in a fixed order: the study's ``grid:`` block,
    or, with ``budget``, an even grid over the ranges sized to the budget."""
    names = sorted(spec.params)
    if budget is None:
        values = [grid_values(n, spec.params[n], dict(spec.grid)) for n in names]
    else:
        values = budget_grid(spec, names, budget)
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def budget_grid(spec: StudySpec, names: list[str], budget: int) -> list[list[Any]]:
    """k evenly spaced values per numeric range (log-spaced on log scales), every choice of a
    categorical, with the largest k >= 2 whose grid fits the budget (if even k = 2 does not,
    the shuffled grid is cut at the budget: that is what a grid of that budget can do)."""
    fixed = math.prod(len(spec.params[n].choices or ()) for n in names
                      if spec.params[n].type == "categorical")
    free = sum(spec.params[n].type != "categorical" for n in names)
    k = 2
    while free and fixed * (k + 1) ** free <= budget:
        k += 1
    return [_even_values(spec.params[n], k) for n in names]


def _even_values(param: ParamSpec, k: int) -> list[Any]:
    if param.type == "categorical":
        return list(param.choices or ())
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        points = [low * (high / low) ** (i / (k - 1)) for i in range(k)]
    else:
        points = [low + (high - low) * i / (k - 1) for i in range(k)]
    if param.type == "int":
        return sorted({round(p) for p in points})
    if param.step:
        points = [low + round((p - low) / param.step) * param.step for p in points]
    return sorted(set(points))


def suggest(trial: optuna.Trial, name: str, param: ParamSpec) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(name, list(param.choices or ()))
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high),  # type: ignore[arg-type]
                                 step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, float(param.low), float(param.high),  # type: ignore[arg-type]
                               step=param.step, log=param.log)


def create_or_resume(options: RunOptions, spec: StudySpec, reference: float) -> optuna.Study:
    """The study, created or resumed under the workers' lock. Creation is complete from the
    user's view: a study left without its attributes by a killed run (and without trials)
    gets them on the next run; its grid cells are enqueued once each, however often a run is
    killed while enqueueing."""
    name = study_name(options, spec)
    storage = open_storage(options.storage)
    sampler = build_sampler(options.sampler, options.seed, spec.objective.directions)
    with file_lock(lock_path(options, name)):
        if name in study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
            _check_same_study(study, spec, options)
            recover_stale_trials(study)
        else:
            study = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                        directions=spec.objective.directions)
        if "fingerprint" not in study.user_attrs:  # new, or its creation was cut short
            _set_study_attributes(study, spec, options, reference)
        study.set_user_attr("sampler", options.sampler)
        for key, value in options.study_attrs:
            study.set_user_attr(key, value)
        if SAMPLERS.get(options.sampler).enumerates_grid and not study.user_attrs.get("grid"):
            enqueue_grid(study, spec, options.seed, options.grid_budget)
    return study


def _check_same_study(study: optuna.Study, spec: StudySpec, options: RunOptions) -> None:
    stored = study.user_attrs.get("fingerprint")
    if stored is None and study.get_trials(deepcopy=False):
        raise ConfigError(f"study {study.study_name!r} in {storage_label(options.storage)} has "
                          "trials but was not created by hpo run; use another --name")
    if stored is not None and stored != spec.fingerprint():
        raise ConfigError(
            f"study {study.study_name!r} exists in {storage_label(options.storage)} with a "
            "different study file; restore that file, or start a new study with --name"
        )


def _set_study_attributes(study: optuna.Study, spec: StudySpec, options: RunOptions,
                          reference: float) -> None:
    """The study's own records; the fingerprint last: a study without it is incomplete."""
    study.set_user_attr("study_file", spec.to_dict())
    study.set_user_attr("study_source", spec.source)
    study.set_user_attr("reference_complexity", reference)
    study.set_user_attr("environment", environment(trial_threads(options)))
    study.set_user_attr("fingerprint", spec.fingerprint())


def lock_path(options: RunOptions, name: str) -> Path:
    return Path(options.artifacts) / f"{name}.lock"


def grid_key(params: dict[str, Any]) -> str:
    """A grid cell as a string: what makes enqueueing it twice detectable."""
    return json.dumps(params, sort_keys=True, default=str)


def enqueue_grid(study: optuna.Study, spec: StudySpec, seed: int,
                 budget: int | None = None) -> None:
    """Enqueue every grid cell once, in an order shuffled by ``seed`` (a grid sized to a
    budget it exceeds is cut there). Cells already in the study (from an enqueueing that
    was cut short) are not enqueued again; the ``grid`` mark comes last."""
    cells = grid_cells(spec, budget)
    random.Random(seed).shuffle(cells)
    cells = cells[:budget] if budget is not None else cells
    present = {t.user_attrs.get("grid_cell") for t in study.get_trials(deepcopy=False)}
    for cell in cells:
        key = grid_key(cell)
        if key not in present:
            study.enqueue_trial(cell, user_attrs={"grid_cell": key})
    study.set_user_attr("grid", len(cells))


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a dead process (this host: its pid is gone; any host: no
    heartbeat for ``STALE_AFTER_S``): mark FAIL and enqueue their parameters again. Call it
    under the workers' lock."""
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial)
        if reason is None:
            continue
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                    f"{reason}; configuration re-enqueued")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        attrs = {"retry_of": trial.number}
        if trial.user_attrs.get("grid_cell"):
            attrs["grid_cell"] = trial.user_attrs["grid_cell"]
        study.enqueue_trial(trial.params, user_attrs=attrs)
        stale.append(trial.number)
    if stale:
        log.warning("marked trials %s failed (their process died) and re-enqueued them", stale)
    return stale


def stale_reason(trial: optuna.trial.FrozenTrial, now: float | None = None) -> str | None:
    """Why a RUNNING trial is stale, or None while its owner may be alive."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    if owner is not None and owner_on_this_host(owner) and not owner_alive(owner):
        return "worker died (process gone)"
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    age = (time.time() if now is None else now) - float(beat or 0)
    if age > STALE_AFTER_S:
        return f"worker silent for {age:.0f} s (no heartbeat; host gone?)"
    return None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def state_counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def trial_threads(options: RunOptions) -> int:
    """Torch threads of one trial: the thread policy's (search_core/threads.py) for local
    workers; on Ray, --threads or else the CPUs reserved per trial."""
    if options.backend == "ray":
        threads = options.cpus_per_trial if options.threads is None else options.threads
        return threads_per_trial(threads)
    return threads_per_trial(options.threads, options.jobs or 1)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed for the trial numbered ``number`` of a study run with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class Batch:
    """The trials the local workers of one run ask together. A batch starts once every
    trial of the last one has finished; its size is fixed then (``--jobs``, or fewer when
    fewer trials remain), each worker asks one trial of it, and no trial of it runs before
    all are asked: every trial of a batch is sampled from the same history, however long
    the trials before took and however late a worker came. Shared by the worker processes
    (shared memory), changed under the study's file lock only."""

    def __init__(self, size: int, ctx: Any = multiprocessing) -> None:
        self.size = size
        self.members = ctx.Array("i", size, lock=False)  # trial numbers
        self.count = ctx.Value("i", 0, lock=False)  # asked so far
        self.target = ctx.Value("i", 0, lock=False)  # to ask in this batch

    def open(self, study: optuna.Study, to_start: int) -> bool:
        """Whether a trial may be asked now: the batch has room, or the last batch has
        finished and a new one starts (of at most ``to_start`` trials)."""
        if self.count.value < self.target.value:
            return True
        numbers = set(self.members[: self.count.value])
        if any(t.number in numbers and not t.state.is_finished()
               for t in study.get_trials(deepcopy=False)):
            return False
        self.count.value, self.target.value = 0, min(self.size, to_start)
        return self.target.value > 0

    def add(self, number: int) -> None:
        self.members[self.count.value] = number
        self.count.value += 1

    def asked(self) -> bool:
        """Whether every trial of the batch has been asked (read without the lock)."""
        return self.count.value >= self.target.value


def trials_to_start(
    study: optuna.Study, options: RunOptions, base_failures: int, deadline: float | None
) -> tuple[int, int]:
    """(trials still to start, trials running), shared by every backend. (0, 0) means stop:
    the study has its trials, --max-failures new failures or the deadline passed. A grid
    starts only its enqueued cells."""
    counts = state_counts(study)
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    failed = counts[TrialState.FAIL] - base_failures
    expired = deadline is not None and time.time() > deadline
    if done >= options.trials or failed >= options.max_failures or expired:
        return 0, 0
    running = counts[TrialState.RUNNING]
    to_start = options.trials - done - running
    if SAMPLERS.get(options.sampler).enumerates_grid:
        to_start = min(to_start, counts[TrialState.WAITING])
    return max(to_start, 0), running


def run_worker(
    options: RunOptions,
    name: str,
    index: int,
    deadline: float | None,
    base_failures: int,
    progress: Any = None,
    batch: Batch | None = None,
    driver: int | None = None,
) -> None:
    """Ask, run and tell trials until the study has its trials (or a stop condition, or
    the ``driver`` process that started this worker is gone)."""
    spec = load_study(options.study_path)
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(options.storage),
        pruner=PRUNERS.get(options.pruner)(spec.epochs),
    )
    lock = lock_path(options, name)
    checked = time.monotonic()
    while True:
        with file_lock(lock):
            to_start, running = trials_to_start(study, options, base_failures, deadline)
            if running and time.monotonic() - checked > HEARTBEAT_S:  # a host may be gone
                recover_stale_trials(study)
                checked = time.monotonic()
            action = "ask" if to_start else ("wait" if running else "stop")
            if action == "ask" and batch is not None and not batch.open(study, to_start):
                action = "wait"
            asked = ask(study, spec, options) if action == "ask" else None
            if asked is not None and batch is not None:
                batch.add(asked[0].number)
        if action == "stop" or (driver is not None and os.getppid() != driver):
            return
        if asked is None:
            time.sleep(0.5)
            continue
        if batch is not None:
            _wait_until_asked(batch, deadline)
        run_trial(study, *asked, spec, options, name)
        if progress is not None:
            progress.update(study)


def _wait_until_asked(batch: Batch, deadline: float | None) -> None:
    """Hold a trial back until the other workers have asked theirs of the same batch (a
    worker still starting up, or replacing one that died); give up at the deadline or
    after ``BATCH_WAIT_S`` (the run goes on, its batches no longer reproducible)."""
    until = time.monotonic() + BATCH_WAIT_S
    while not batch.asked() and (deadline is None or time.time() < deadline):
        if time.monotonic() > until:
            log.warning("gave up waiting %.0f s for the other workers' trials of this batch: "
                        "this run's parameters are no longer reproducible", BATCH_WAIT_S)
            return
        time.sleep(0.05)


def ask(study: optuna.Study, spec: StudySpec,
        options: RunOptions) -> tuple[optuna.Trial, dict[str, Any]] | None:
    """A new trial and its parameters, sampled now (under the lock) by a sampler seeded for
    this trial; None if sampling failed (the trial is recorded FAIL with the reason)."""
    entry = SAMPLERS.get(options.sampler)
    number = len(study.get_trials(deepcopy=False))
    seed = trial_seed(options.seed, number) if entry.seed_per_trial else options.seed
    study.sampler = build_sampler(options.sampler, seed, spec.objective.directions)
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker_id())
    trial.set_user_attr("sampler_seed", seed)
    try:
        return trial, {n: suggest(trial, n, p) for n, p in spec.params.items()}
    except Exception as err:  # a sampler that fails on this study: recorded, the study goes on
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            raise
        reason = f"sampling failed: {type(err).__name__}: {err}"
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, reason)
        return None


def run_trial(
    study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], spec: StudySpec,
    options: RunOptions, name: str
) -> None:
    """One trial: FAIL with its reason on any error, PRUNED when the pruner says so."""
    history: list[dict[str, float]] = []
    single = len(spec.objective.directions) == 1

    def on_epoch(metrics: Any) -> None:
        log.info("trial %d epoch %d/%d: loss %.3f, val_acc %.3f, %.1f s", trial.number,
                 metrics.epoch + 1, metrics.epochs, metrics.train_loss, metrics.val_acc,
                 metrics.seconds)
        history.append(metrics.to_dict())
        trial.set_user_attr("history", history)
        if single:
            trial.report(metrics.val_acc, metrics.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {metrics.epoch}")

    try:
        trial.set_user_attr("seed", options.seed)
        with Heartbeat(study, lambda: [trial._trial_id]):
            outcome = evaluate(
                spec, params, options.seed, study.user_attrs["reference_complexity"],
                on_epoch=on_epoch,
                checkpoint=Path(options.artifacts) / name / f"trial-{trial.number}.pt",
                threads=trial_threads(options),
            )
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return
    except KeyboardInterrupt:
        trial.set_user_attr("fail_reason", "interrupted; configuration re-enqueued")
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
        raise
    except Exception as err:  # a failing trial is recorded, the study goes on
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            raise  # not the trial's fault: stop; the trial is re-run on resume
        reason = f"{type(err).__name__}: {err}"
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, reason)
        return
    table = outcome.family
    if table is not None:
        trial.set_user_attr("family", table.rows())
        trial.set_user_attr("family_summary", table.summary())
    trial.set_user_attr("seconds", outcome.seconds)
    trial.set_user_attr("threads", outcome.threads)
    trial.set_user_attr("checkpoint", outcome.checkpoint)
    study.tell(trial, outcome.values)


class Heartbeat:
    """While a trial runs, a thread of its owner writes ``HEARTBEAT_ATTR`` (now) every
    ``HEARTBEAT_S`` into each trial ``trial_ids()`` names, so that a process on another host
    can tell a silent (dead) owner from a busy one (``stale_reason``)."""

    def __init__(self, study: optuna.Study, trial_ids: Callable[[], list[int]]) -> None:
        self._study, self._trial_ids = study, trial_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.beat()

    def beat(self) -> None:
        for trial_id in self._trial_ids():
            try:
                self._study._storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except Exception as err:  # finished meanwhile, storage briefly away: next beat
                log.debug("heartbeat of trial id %s not written: %s", trial_id, err)


def _worker_entry(options: dict[str, Any], name: str, index: int, deadline: float | None,
                  base_failures: int, batch: Batch, driver: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_worker(RunOptions(**options), name, index, deadline, base_failures, batch=batch,
                   driver=driver)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        sys.exit(EXIT_DISK_FULL)  # the driver says it, in one line


def run(options: RunOptions, progress: Any = None) -> RunSummary:
    """Validate, create or resume the study, run its trials, summarise."""
    spec, reference = validate(options)
    options = with_jobs(options, spec)
    if options.backend == "local" and (
            warning := oversubscription(trial_threads(options), options.jobs or 1)):
        log.warning(warning)
    study = create_or_resume(options, spec, reference)
    base_failures = state_counts(study)[TrialState.FAIL]
    deadline = time.time() + options.timeout if options.timeout else None
    if progress is not None:
        progress.start(study, options.trials)
    deaths = EXECUTORS.get(options.backend)(options, study, spec, progress, base_failures,
                                            deadline)
    if progress is not None:
        progress.update(study)
        progress.close()
    return replace(summarise(study, options, base_failures), worker_deaths=tuple(deaths))


def execute_local(options: RunOptions, study: optuna.Study, spec: StudySpec, progress: Any,
                  base_failures: int, deadline: float | None) -> list[str]:
    """Trials in this process (--jobs 1) or in --jobs worker processes on one storage."""
    if options.jobs == 1:
        run_worker(options, study.study_name, 0, deadline, base_failures, progress)
        return []
    return _run_processes(options, study.study_name, deadline, base_failures, study, progress)


def execute_ray(options: RunOptions, study: optuna.Study, spec: StudySpec, progress: Any,
                base_failures: int, deadline: float | None) -> list[str]:
    """Trials on Ray Tune (imported only now: the local backend never loads Ray). Tune
    retries a trial whose worker died itself (--retries)."""
    from hpo import ray_backend

    ray_backend.execute(options, study, spec, progress, base_failures, deadline)
    return []


def _run_processes(options: RunOptions, name: str, deadline: float | None, base_failures: int,
                   study: optuna.Study, progress: Any) -> list[str]:
    """--jobs worker processes; one that dies (OOM killer, segfault, kill -9) is noticed
    within a second: its trial is failed and re-enqueued, and a new worker takes its place
    (at most --max-failures times). Returns what happened to the workers that died."""
    ctx = multiprocessing.get_context("spawn")
    batch = Batch(options.jobs or 1, ctx)

    def start(index: int) -> Any:
        worker = ctx.Process(target=_worker_entry, name=f"hpo-worker-{index}",
                             args=(asdict(options), name, index, deadline, base_failures,
                                   batch, os.getpid()))
        with child_environment(trial_threads(options)):  # read before it imports torch
            worker.start()
        return worker

    workers = {index: start(index) for index in range(options.jobs or 1)}
    deaths: list[str] = []
    try:
        while workers:
            for index, worker in list(workers.items()):
                if worker.exitcode is None:
                    continue
                del workers[index]
                if worker.exitcode == EXIT_DISK_FULL:
                    raise OSError(errno.ENOSPC, "no space left on the device", options.artifacts)
                if worker.exitcode != 0:
                    deaths.append(_worker_died(study, options, name, worker))
                    if len(deaths) <= options.max_failures:
                        workers[index] = start(index)
            if progress is not None:
                progress.update(study)
            time.sleep(0.5)
    finally:
        for worker in workers.values():
            worker.join(timeout=5)
    return deaths


def _worker_died(study: optuna.Study, options: RunOptions, name: str, worker: Any) -> str:
    """Fail and re-enqueue the trial of a worker that died; say what happened."""
    with file_lock(lock_path(options, name)):
        trials = recover_stale_trials(study)
    code = worker.exitcode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}")
    retried = f"trial {trials[0]} re-enqueued" if len(trials) == 1 else (
        f"trials {trials} re-enqueued" if trials else "it held no trial")
    message = f"worker process {worker.pid} {how}; {retried}"
    log.warning(message)
    return message


def summarise(study: optuna.Study, options: RunOptions, base_failures: int) -> RunSummary:
    counts = state_counts(study)
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    best: dict[str, Any] | None = None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if complete and len(study.directions) == 1:
        trial = study.best_trial
        best = {"number": trial.number, "value": trial.value, "params": trial.params}
    elif complete:
        best = {"pareto_trials": [t.number for t in study.best_trials]}
    reason = "trials" if done >= options.trials else "stopped early"
    if reason != "trials" and SAMPLERS.get(options.sampler).enumerates_grid \
            and counts[TrialState.WAITING] == counts[TrialState.RUNNING] == 0:
        reason = "grid"  # every grid cell ran: the grid is smaller than --trials
    if counts[TrialState.FAIL] - base_failures >= options.max_failures:
        reason = f"{options.max_failures} failed trials (--max-failures)"
    return RunSummary(
        name=study.study_name,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        best=best,
        storage=storage_label(options.storage),
        artifacts=str(Path(options.artifacts) / study.study_name),
        stopped_because=reason,
    )


Executor = Callable[[RunOptions, optuna.Study, StudySpec, Any, int, "float | None"], list[str]]
EXECUTORS: Registry[Executor] = Registry("backend")
EXECUTORS.add("local", execute_local)
EXECUTORS.add("ray", execute_ray)

__all__ = ["EXECUTORS", "NasHpoError", "RunOptions", "RunSummary", "run"]
