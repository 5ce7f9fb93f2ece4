"""Create or resume a study, then run its trials in one or more local worker processes.

The sampler decides what to try; workers ask it, run the objective and tell the result.
Exactness of ``--trials`` across workers comes from a file lock around "count, then ask".
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import math
import multiprocessing
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.objective import evaluate, reference_complexity
from hpo.records import WORKER_ATTR, environment, owner_alive, worker_id
from hpo.samplers import PRUNERS, SAMPLERS, build_sampler
from hpo.storage import open_storage, study_names
from hpo.study import ParamSpec, StudySpec, load_study
from search_core.errors import ConfigError, NasHpoError
from search_core.registry import Registry

log = logging.getLogger(__name__)
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class RunOptions:
    study_path: str | None
    sampler: str = "tpe"
    trials: int = 20
    timeout: float | None = None
    jobs: int = 1
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


def validate(options: RunOptions) -> tuple[StudySpec, float]:
    """Everything that can be checked before anything is written; returns the study and
    its hypervolume reference complexity (this loads the data set, so a missing data
    folder fails here), unless ``options.reference`` already gives it."""
    spec = load_study(options.study_path)
    build_sampler(options.sampler, options.seed, spec.objective.directions)
    PRUNERS.get(options.pruner, "--pruner")
    if options.trials < 1:
        raise ConfigError(f"--trials: got {options.trials}; need >= 1")
    if options.jobs < 1:
        raise ConfigError(f"--jobs: got {options.jobs}; need >= 1")
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
    return options.name or spec.name


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
    name = study_name(options, spec)
    storage = open_storage(options.storage)
    sampler = build_sampler(options.sampler, options.seed, spec.objective.directions)
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get("fingerprint")
        if stored != spec.fingerprint():
            raise ConfigError(
                f"study {name!r} exists in {options.storage or 'runs/hpo.journal'} with a "
                "different study file; restore that file, or start a new study with --name"
            )
        # under the workers' lock: a live worker's trial is RUNNING before its owner is set
        with file_lock(Path(options.artifacts) / f"{name}.lock"):
            recover_stale_trials(study)
    else:
        study = optuna.create_study(storage=storage, sampler=sampler, study_name=name,
                                    directions=spec.objective.directions)
        study.set_user_attr("study_file", spec.to_dict())
        study.set_user_attr("study_source", spec.source)
        study.set_user_attr("fingerprint", spec.fingerprint())
        study.set_user_attr("reference_complexity", reference)
        study.set_user_attr("environment", environment(options.threads))
    study.set_user_attr("sampler", options.sampler)
    for key, value in options.study_attrs:
        study.set_user_attr(key, value)
    if SAMPLERS.get(options.sampler).enumerates_grid and not study.user_attrs.get("grid"):
        enqueue_grid(study, spec, options.seed, options.grid_budget)
    return study


def enqueue_grid(study: optuna.Study, spec: StudySpec, seed: int,
                 budget: int | None = None) -> None:
    """Enqueue every grid cell once, in an order shuffled by ``seed`` (a grid sized to a
    budget it exceeds is cut there)."""
    cells = grid_cells(spec, budget)
    random.Random(seed).shuffle(cells)
    cells = cells[:budget] if budget is not None else cells
    for cell in cells:
        study.enqueue_trial(cell, user_attrs={"grid_cell": True})
    study.set_user_attr("grid", len(cells))


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a dead process: mark FAIL and enqueue their parameters again."""
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if owner_alive(trial.user_attrs.get(WORKER_ATTR)):
            continue
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                    "worker died (process gone); configuration re-enqueued")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                      "grid_cell": bool(trial.user_attrs.get(
                                                          "grid_cell"))})
        stale.append(trial.number)
    if stale:
        log.warning("marked trials %s failed (their process died) and re-enqueued them", stale)
    return stale


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


def _threads(options: RunOptions) -> int:
    return options.threads or max(1, (os.cpu_count() or 1) // options.jobs)


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


def next_action(
    study: optuna.Study, options: RunOptions, deadline: float | None, base_failures: int
) -> str:
    """"ask", "wait" (another worker's trial may still fail) or "stop"."""
    to_start, running = trials_to_start(study, options, base_failures, deadline)
    if to_start:
        return "ask"
    return "wait" if running else "stop"


def run_worker(
    options: RunOptions,
    name: str,
    index: int,
    deadline: float | None,
    base_failures: int,
    progress: Any = None,
) -> None:
    """Ask, run and tell trials until the study has its trials (or a stop condition)."""
    spec = load_study(options.study_path)
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(options.storage),
        sampler=build_sampler(options.sampler, options.seed + index, spec.objective.directions),
        pruner=PRUNERS.get(options.pruner)(spec.epochs),
    )
    lock = Path(options.artifacts) / f"{name}.lock"
    while True:
        with file_lock(lock):
            action = next_action(study, options, deadline, base_failures)
            trial = study.ask() if action == "ask" else None
            if trial is not None:
                trial.set_user_attr(WORKER_ATTR, worker_id())
        if action == "stop":
            return
        if trial is None:
            time.sleep(0.5)
            continue
        run_trial(study, trial, spec, options, name)
        if progress is not None:
            progress.update(study)


def run_trial(
    study: optuna.Study, trial: optuna.Trial, spec: StudySpec, options: RunOptions, name: str
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

    params: dict[str, Any] = {}
    try:
        params = {n: suggest(trial, n, p) for n, p in spec.params.items()}
        trial.set_user_attr("seed", options.seed)
        outcome = evaluate(
            spec, params, options.seed, study.user_attrs["reference_complexity"],
            on_epoch=on_epoch,
            checkpoint=Path(options.artifacts) / name / f"trial-{trial.number}.pt",
            threads=_threads(options),
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
    trial.set_user_attr("checkpoint", outcome.checkpoint)
    study.tell(trial, outcome.values)


def _worker_entry(options: dict[str, Any], name: str, index: int, deadline: float | None,
                  base_failures: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    run_worker(RunOptions(**options), name, index, deadline, base_failures)


def run(options: RunOptions, progress: Any = None) -> RunSummary:
    """Validate, create or resume the study, run its trials, summarise."""
    spec, reference = validate(options)
    study = create_or_resume(options, spec, reference)
    base_failures = state_counts(study)[TrialState.FAIL]
    deadline = time.time() + options.timeout if options.timeout else None
    if progress is not None:
        progress.start(study, options.trials)
    EXECUTORS.get(options.backend)(options, study, spec, progress, base_failures, deadline)
    if progress is not None:
        progress.update(study)
        progress.close()
    return summarise(study, options, base_failures)


def execute_local(options: RunOptions, study: optuna.Study, spec: StudySpec, progress: Any,
                  base_failures: int, deadline: float | None) -> None:
    """Trials in this process (--jobs 1) or in --jobs worker processes on one storage."""
    if options.jobs == 1:
        run_worker(options, study.study_name, 0, deadline, base_failures, progress)
    else:
        _run_processes(options, study.study_name, deadline, base_failures, study, progress)


def execute_ray(options: RunOptions, study: optuna.Study, spec: StudySpec, progress: Any,
                base_failures: int, deadline: float | None) -> None:
    """Trials on Ray Tune (imported only now: the local backend never loads Ray)."""
    from hpo import ray_backend

    ray_backend.execute(options, study, spec, progress, base_failures, deadline)


def _run_processes(options: RunOptions, name: str, deadline: float | None, base_failures: int,
                   study: optuna.Study, progress: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_worker_entry,
                    args=(asdict(options), name, index, deadline, base_failures))
        for index in range(options.jobs)
    ]
    for worker in workers:
        worker.start()
    try:
        while any(w.is_alive() for w in workers):
            if progress is not None:
                progress.update(study)
            time.sleep(1.0)
    finally:
        for worker in workers:
            worker.join(timeout=5)


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
        storage=options.storage or "runs/hpo.journal",
        artifacts=str(Path(options.artifacts) / study.study_name),
        stopped_because=reason,
    )


Executor = Callable[[RunOptions, optuna.Study, StudySpec, Any, int, "float | None"], None]
EXECUTORS: Registry[Executor] = Registry("backend")
EXECUTORS.add("local", execute_local)
EXECUTORS.add("ray", execute_ray)

__all__ = ["EXECUTORS", "NasHpoError", "RunOptions", "RunSummary", "run"]
