"""The local backend: trials in this process (``--jobs 1``) or in ``--jobs`` worker
processes on one storage.

Exactness of ``--trials`` across workers comes from the study's file lock around "count,
then ask". Determinism: a study run with the same seed, ``--jobs`` and ``--threads`` is the
same study. Each trial's parameters are sampled under the lock by the study's sampler, which
samples trial N with a seed of its own (``hpo.samplers.TrialSeededSampler``), whichever
worker asks; with ``--jobs N`` the workers ask in
synchronous batches of N (``Batch``): the next batch is asked once every trial of the last
one has finished, so each batch sees the same history however long its trials took.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from hpo.backends.base import RunJob
from hpo.compat_optuna import trial_id
from hpo.facts import state_counts
from hpo.intensify import enqueue_next, tag_new
from hpo.liveness import (
    Heartbeat,
    heartbeat_s,
    recover_stale_trials,
    study_lock,
)
from hpo.options import RunOptions, trial_threads
from hpo.placement import VISIBLE_VAR, worker_gpu
from hpo.records import (
    HISTORY_ATTR,
    REFERENCE_ATTR,
    RETRY_OF_ATTR,
    SAMPLER_SEED_ATTR,
    WORKER_ATTR,
    opening_attrs,
    set_trial_attrs,
    worker_id,
)
from hpo.samplers import PRUNERS, sampler_seed, study_sampler
from hpo.stopping import StopRule
from hpo.storage import open_storage
from hpo.study_spec import StudySpec
from hpo.trial import TrialTask, record_outcome, run_trial, sample_params, trial_seed
from search_core.errors import disk_full
from search_core.threads import child_environment

log = logging.getLogger(__name__)
EXIT_DISK_FULL = 75  # a worker's exit code when the disk was full (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # a worker stopped by Ctrl-C (its trial recorded and re-enqueued)
BATCH_WAIT_S = 600.0  # the longest a batch's trial waits for the others to be asked


class LocalBackend:
    """``hpo.backends.base.Backend`` on this machine."""

    def run(self, job: RunJob) -> list[str]:
        if job.options.jobs == 1:
            run_worker(job.options, job.spec, job.study.study_name, job.stop, job.progress,
                       sampler=job.sampler)
            return []
        return run_processes(job)


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


def run_worker(options: RunOptions, spec: StudySpec, name: str, stop: StopRule,
               progress: Any = None, batch: Batch | None = None, driver: int | None = None,
               sampler: optuna.samplers.BaseSampler | None = None) -> None:
    """Ask, run and tell trials until ``stop`` says stop (or the ``driver`` process that
    started this worker is gone). ``spec``: the study as the driver read it (a worker
    never reads the study file); ``sampler``: the study's, else built here once."""
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(options.storage),
        sampler=sampler or study_sampler(options.sampler, options.seed,
                                         spec.objective.directions),
        pruner=PRUNERS.get(options.pruner)(spec.epochs),
    )
    checked = time.monotonic()
    while True:
        with study_lock(options.storage, name):
            to_start, running = stop.plan(state_counts(study), time.time())
            if running and time.monotonic() - checked > heartbeat_s():  # a host may be gone
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
            _wait_until_asked(batch, stop.deadline)
        run_local_trial(study, *asked, spec, options, progress)
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
    """A new trial and its parameters, sampled now (under the lock) by the study's sampler;
    None if sampling failed (the trial is recorded FAIL with the reason)."""
    enqueue_next(study, spec.noise)  # a re-evaluation, when intensification wants one
    trial = study.ask()
    set_trial_attrs(trial, opening_attrs({
        WORKER_ATTR: worker_id(),
        SAMPLER_SEED_ATTR: sampler_seed(options.sampler, options.seed, trial.number)}))
    params = sample_params(study, trial, spec)
    if params is not None and spec.noise.intensify:
        tag_new(study, trial, params, spec.noise)
    return None if params is None else (trial, params)


def run_local_trial(study: optuna.Study, trial: optuna.Trial, params: dict[str, Any],
                    spec: StudySpec, options: RunOptions, progress: Any = None) -> None:
    """One trial in this process: per-epoch history, progress and pruning, a heartbeat
    while it runs, then its outcome recorded and told."""
    single = len(spec.objective.directions) == 1

    def on_epoch(metrics: Any, history: list[dict[str, float]]) -> None:
        log.info("trial %d epoch %d/%d: loss %.3f, val_acc %.3f, %.1f s", trial.number,
                 metrics.epoch + 1, metrics.epochs, metrics.train_loss, metrics.val_acc,
                 metrics.seconds)
        trial.set_user_attr(HISTORY_ATTR, history)
        if progress is not None:
            progress.update(study)
        if single:
            trial.report(metrics.val_acc, metrics.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {metrics.epoch}")

    task = TrialTask(
        number=trial.number, params=params, spec=spec,
        seed=trial_seed(spec, options.seed, trial.user_attrs, seed_number(study, trial)),
        reference=study.user_attrs[REFERENCE_ATTR],
        checkpoint=Path(options.artifacts) / study.study_name / f"trial-{trial.number}.pt",
        threads=trial_threads(options),
    )
    with Heartbeat(study, lambda: [trial_id(trial)]):
        outcome = run_trial(task, on_epoch)
    record_outcome(study, trial, outcome, params)
    if outcome.interrupted:
        raise KeyboardInterrupt


def seed_number(study: optuna.Study, trial: optuna.Trial) -> int:
    """The trial number that seeds this trial's search: a retry's (a worker died, Ctrl-C)
    is its original trial's, so with ``training_seed: per_trial`` it runs the same search
    and resumes that search's epochs (``hpo.evaluation.resume_path``)."""
    origin = trial.user_attrs.get(RETRY_OF_ATTR)
    if origin is None:
        return trial.number
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    number, seen = int(origin), {trial.number}
    while number not in seen and trials.get(number) is not None:
        seen.add(number)
        earlier = trials[number].user_attrs.get(RETRY_OF_ATTR)
        if earlier is None:
            break
        number = int(earlier)
    return number


def _worker_entry(options: RunOptions, spec: StudySpec, name: str, stop: StopRule,
                  batch: Batch, driver: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_worker(options, spec, name, stop, batch=batch, driver=driver)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the driver says it
        sys.exit(EXIT_INTERRUPTED)
    except OSError as err:
        if not disk_full(err):
            raise
        sys.exit(EXIT_DISK_FULL)  # the driver says it, in one line


@contextmanager
def worker_gpu_environment(index: int, options: RunOptions) -> Iterator[None]:
    """Worker ``index`` started inside the block sees only its GPU (``options.gpus``, from
    ``--trials-per-gpu``); nothing changes without GPU slots."""
    if not options.gpus:
        yield
        return
    saved = os.environ.get(VISIBLE_VAR)
    os.environ[VISIBLE_VAR] = worker_gpu(index, options.gpus)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(VISIBLE_VAR, None)
        else:
            os.environ[VISIBLE_VAR] = saved


def run_processes(job: RunJob) -> list[str]:
    """--jobs worker processes; one that dies (OOM killer, segfault, kill -9) is noticed
    within a second: its trial is failed and re-enqueued, and a new worker takes its place
    (at most --max-failures times). Returns what happened to the workers that died."""
    options, study = job.options, job.study
    ctx = multiprocessing.get_context("spawn")
    batch = Batch(options.jobs or 1, ctx)

    def start(index: int) -> Any:
        worker = ctx.Process(target=_worker_entry, name=f"hpo-worker-{index}",
                             args=(options, job.spec, study.study_name, job.stop, batch,
                                   os.getpid()))
        with child_environment(trial_threads(options)), worker_gpu_environment(index, options):
            worker.start()  # both read before it imports torch
        return worker

    workers = {index: start(index) for index in range(options.jobs or 1)}
    deaths: list[str] = []
    lingering = Lingering(job)
    try:
        while workers:
            if lingering.overdue():
                deaths += [_stop_lingering(worker, lingering.grace) for worker in workers.values()]
                workers.clear()
                break
            for index, worker in list(workers.items()):
                if worker.exitcode is None:
                    continue
                del workers[index]
                if worker.exitcode == EXIT_DISK_FULL:
                    raise OSError(errno.ENOSPC, "no space left on the device", options.artifacts)
                if worker.exitcode != 0:
                    deaths.append(_worker_died(study, options, worker))
                    if len(deaths) <= options.max_failures:
                        workers[index] = start(index)
            if job.progress is not None:
                job.progress.update(study)
            time.sleep(0.5)
    finally:
        for worker in workers.values():
            worker.join(timeout=5)
    return deaths


class Lingering:
    """Notices workers that outlive their study: once the stop rule says nothing is left to
    start and nothing runs, every worker exits within a second; one still there ``grace``
    seconds later is stopped (SIGSTOP) or hung, and would keep the run from ending."""

    def __init__(self, job: RunJob) -> None:
        self.job = job
        self.grace = 2 * heartbeat_s()
        self.looked = time.monotonic()
        self.done_since: float | None = None

    def overdue(self) -> bool:
        now = time.monotonic()
        if now - self.looked >= min(5.0, self.grace / 2):
            self.looked = now
            to_start, running = self.job.stop.plan(state_counts(self.job.study), time.time())
            done = to_start == 0 and running == 0
            self.done_since = (self.done_since or now) if done else None
        return self.done_since is not None and now - self.done_since > self.grace


def _stop_lingering(worker: Any, grace: float) -> str:
    """Kill a worker that outlived its study (its trial, if it had one, was declared stale
    and run again by another worker); say so."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=5)
    message = (f"worker process {worker.pid} did not exit {grace:.0f} s after the study "
               "finished (stopped or hung); killed it")
    log.warning(message)
    return message


def _worker_died(study: optuna.Study, options: RunOptions, worker: Any) -> str:
    """Fail and re-enqueue the trial of a worker that died; say what happened."""
    with study_lock(options.storage, study.study_name):
        trials = recover_stale_trials(study)
    code = worker.exitcode
    how = (f"was killed by {signal.Signals(-code).name}" if code < 0
           else f"exited with code {code}")
    retried = f"trial {trials[0]} re-enqueued" if len(trials) == 1 else (
        f"trials {trials} re-enqueued" if trials else "it held no trial")
    message = f"worker process {worker.pid} {how}; {retried}"
    log.warning(message)
    return message
