"""The Ray Tune backend: the same study, samplers and records, trials spread over a cluster.

Ray is imported only inside these functions, when ``hpo run --backend ray`` runs. Tune
schedules the trials (``--concurrency``, ``--cpus-per-trial``, retries of trials whose worker
died, ASHA early stopping); Ray's ``OptunaSearch`` asks our sampler. Each trial runs
``hpo.trial.run_trial`` in a Ray worker and sends its ``TrialOutcome`` back as JSON; the
driver's searcher records it with ``hpo.trial.record_outcome``, so local and Ray trials land
in one storage with the same states and attributes, plus the Ray node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.backends.base import RunJob
from hpo.compat_optuna import trial_id
from hpo.compat_ray import (
    loopback_only,
    optuna_study,
    optuna_trials,
    picklable_state,
    told,
)
from hpo.database import StorageUnavailable, cause_of
from hpo.facts import state_counts
from hpo.intensify import enqueue_next, tag_new
from hpo.liveness import Heartbeat
from hpo.options import RAY_ADDRESS_VAR, RunOptions, cluster_address, trial_threads
from hpo.records import (
    RAY_NODE_ID_ATTR,
    RAY_NODE_IP_ATTR,
    RAY_NODES_ATTR,
    RAY_RESTARTS_ATTR,
    RAY_WORKER_PID_ATTR,
    REFERENCE_ATTR,
    WORKER_ATTR,
    TrialRecord,
    opening_attrs,
    set_trial_attrs,
    worker_id,
)
from hpo.storage import open_storage
from hpo.study_spec import StudySpec
from hpo.trial import (
    TrialOutcome,
    TrialTask,
    record_outcome,
    run_trial,
    suggest_all,
    training_seed,
    trial_seed,
)
from search_core.data import DEFAULT_DATA_ROOT_ENV
from search_core.errors import ConfigError, disk_full
from search_core.threads import openmp_environment, usable_cpus

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

log = logging.getLogger(__name__)
TRIAL_KEY = "_optuna_trial"  # the Optuna trial number, passed to the trainable in its config
SEED_KEY = "_training_seed"  # the seed it searches with (decided by the driver)
OUTCOME_KEY = "hpo_outcome"  # the TrialOutcome as JSON (Tune flattens nested result dicts)
HALT_KEY = "hpo_halt"  # why a trial stopped the run (the driver asks for no more trials)
DISK_FULL = "disk full; configuration re-enqueued (free some space and run again)"
SHARED_MARKER = ".hpo-shared-{token}"  # in --artifacts while a run lasts: seen by every host?


class RayBackend:
    """``hpo.backends.base.Backend`` on Ray Tune: rounds of Tune runs until the stop rule
    says stop (a round's budget is what the rule allows when it starts)."""

    def run(self, job: RunJob) -> list[str]:
        import ray

        # Per-epoch reports carry val_acc (for the schedulers), the last one the objective.
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        # the legacy reporter honours verbose=0: our progress bar is the only output
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        if not job.options.verbose:  # a lost worker is one line (Progress.on_trial_recover)
            os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        # a relative --artifacts is the user's folder, not a Ray worker's working directory
        job = dataclasses.replace(job, options=dataclasses.replace(
            job.options, artifacts=str(Path(job.options.artifacts).resolve())))
        if job.progress is not None:  # Ray takes ~20 s to start: say so on the bar
            job.progress.note("starting Ray")
        started = init_ray(job.options)
        if job.progress is not None:
            job.progress.note("Ray is up; the first trials are starting")
        try:
            with shared_marker(Path(job.options.artifacts)) as token:
                while (budget := job.stop.plan(state_counts(job.study), time.time())[0]) > 0:
                    halt = run_round(job, budget, token)
                    if halt == DISK_FULL:
                        raise OSError(errno.ENOSPC, "no space left on the device (a Ray "
                                      "trial)", job.options.artifacts)
                    if halt:
                        raise ConfigError(halt)
        finally:
            if started:
                ray.shutdown()
        return []  # Tune retries a trial whose worker died itself (--retries)


@contextlib.contextmanager
def shared_marker(artifacts: Path) -> Iterator[str]:
    """A file only this run writes into ``--artifacts``, for as long as it runs: a trial
    that cannot see it is on a host that does not share the folder (``not_shared``)."""
    token = secrets.token_hex(8)
    marker = artifacts / SHARED_MARKER.format(token=token)
    artifacts.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        yield token
    finally:
        marker.unlink(missing_ok=True)


def not_shared(artifacts: str, token: str, node_ip: str) -> str | None:
    """Why this Ray node cannot write the run's checkpoints, or None if it can."""
    if (Path(artifacts) / SHARED_MARKER.format(token=token)).exists():
        return None
    return (f"--artifacts {artifacts}: not visible on Ray node {node_ip}, where trials write "
            "their checkpoints; put it on a folder every host mounts at the same path (e.g. "
            "NFS) and pass that as --artifacts")


def objective_metrics(spec: StudySpec) -> list[str]:
    return ["objective"] if len(spec.objective.directions) == 1 else [
        f"objective_{i}" for i in range(len(spec.objective.directions))]


def trainable(config: dict[str, Any], spec: StudySpec, options: RunOptions,
              reference: float, study_name: str, shared_token: str) -> None:
    """One trial inside a Ray worker: per-epoch reports, then its outcome. A trial that
    raises is a FAIL outcome (``run_trial``), so only infrastructure failures (a worker
    that died) are retried by Tune. A full disk, or an ``--artifacts`` this host does not
    share, stops the run (``HALT_KEY``) with the configuration re-enqueued."""
    import ray
    from ray import tune

    params = dict(config)
    number = params.pop(TRIAL_KEY)
    seed = params.pop(SEED_KEY, None)
    node = {RAY_NODE_ID_ATTR: ray.get_runtime_context().get_node_id(),
            RAY_NODE_IP_ATTR: ray.util.get_node_ip_address()}

    def on_epoch(metrics: Any, history: list[dict[str, float]]) -> None:
        tune.report({"val_acc": metrics.val_acc, "epoch": metrics.epoch,
                     "train_loss": metrics.train_loss, **node, "worker_pid": os.getpid()})

    def halt(reason: str) -> None:
        outcome = dataclasses.replace(TrialOutcome.failed(reason), requeue=True)
        tune.report({"val_acc": 0.0, HALT_KEY: reason, OUTCOME_KEY: outcome.to_json()})

    unseen = not_shared(options.artifacts, shared_token, node[RAY_NODE_IP_ATTR])
    if unseen:
        halt(unseen)
        return

    task = TrialTask(
        number=number, params=params, spec=spec,
        seed=training_seed(spec, options.seed, number) if seed is None else int(seed),
        reference=reference,
        checkpoint=Path(options.artifacts) / study_name / f"trial-{number}.pt",  # absolute
        threads=trial_threads(options),
    )
    try:
        outcome = run_trial(task, on_epoch)
    except OSError as err:
        if not disk_full(err):
            raise
        # a full disk is not the trial's fault, and a retry would meet it again: the driver
        # re-enqueues the configuration, stops asking, and raises (the backend contract)
        halt(DISK_FULL)
        return
    outcome = dataclasses.replace(
        outcome, record=dataclasses.replace(outcome.record, ray=node))
    values = dict(zip(objective_metrics(spec), outcome.values or ()))
    history = outcome.record.history
    last_val_acc = history[-1]["val_acc"] if history else 0.0
    tune.report({**values, "val_acc": last_val_acc, OUTCOME_KEY: outcome.to_json()})


def make_searcher(spec: StudySpec, options: RunOptions, study_name: str,
                  sampler: Any) -> Any:
    """Ray's OptunaSearch over our study and its sampler, recording what the trials
    report; after a trial halted the run (``HALT_KEY``) it asks for no more."""
    from ray.tune.search.optuna import OptunaSearch

    run_seed = options.seed
    retries = options.ray.retries  # the class below is pickled by value with what it
    # names: never the options (their storage URL holds the password)

    class StudySearcher(OptunaSearch):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.reported: dict[str, set[int]] = {}  # Tune trial -> epochs reported so far
            self.restarts: dict[str, int] = {}  # Tune trial -> restarts after a worker died
            self.pids: dict[str, list[int]] = {}  # Tune trial -> processes that reported
            self.nodes: dict[str, list[str]] = {}  # Tune trial -> nodes its attempts ran on
            self.node_ips: dict[str, str] = {}  # Tune trial -> the node it last reported from
            self.halt: str | None = None  # why a trial stopped the run: ask no more
            self.storage_lost: StorageUnavailable | None = None  # raised after Tune stops

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if self.halt or self.storage_lost:
                return self.FINISHED
            enqueue_next(optuna_study(self), spec.noise)  # a re-evaluation, when due
            params = super().suggest(trial_id)
            ot_trial = optuna_trials(self)[trial_id]
            # the driver owns Ray trials
            set_trial_attrs(ot_trial, opening_attrs({WORKER_ATTR: worker_id()}))
            if params is None:
                return None
            if spec.noise.intensify:
                tag_new(optuna_study(self), ot_trial, params, spec.noise)
            seed = trial_seed(spec, run_seed, ot_trial.user_attrs, ot_trial.number)
            return {**params, TRIAL_KEY: ot_trial.number, SEED_KEY: seed}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if "val_acc" not in result or "epoch" not in result:
                return
            ot_trial = optuna_trials(self)[trial_id]
            if "worker_pid" in result:  # the process running it now (ops can find it)
                ot_trial.set_user_attr(RAY_WORKER_PID_ATTR, int(result["worker_pid"]))
            nodes = self.nodes.setdefault(trial_id, [])
            self.node_ips[trial_id] = result.get(RAY_NODE_IP_ATTR, "?")
            node = result.get(RAY_NODE_ID_ATTR)
            if node and node not in nodes:
                nodes.append(node)  # every node an attempt of it ran on
                ot_trial.set_user_attr(RAY_NODES_ATTR, nodes)
            epoch, seen = int(result["epoch"]), self.reported.setdefault(trial_id, set())
            pids = self.pids.setdefault(trial_id, [])
            pid = result.get("worker_pid")
            new_process = pid is not None and pid not in pids
            if new_process:
                pids.append(pid)
            # Tune restarted it (its worker died): another process reports, or an epoch
            # comes again; a resumed search does not start at epoch 0
            if (new_process and len(pids) > 1) or (not new_process and epoch in seen):
                self.restarts[trial_id] = self.restarts.get(trial_id, 0) + 1
                ot_trial.set_user_attr(RAY_RESTARTS_ATTR, self.restarts[trial_id])
            if epoch not in seen:  # an intermediate value is reported once per epoch
                seen.add(epoch)
                if len(spec.objective.directions) == 1:
                    ot_trial.report(result["val_acc"], epoch)

        def __getstate__(self) -> dict[str, Any]:
            return picklable_state(self)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the Optuna storage is the record, and a resumed study
            starts a new Tune run against it (``hpo run --name``), not Tune's restore."""

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            if trial_id in told(self) or trial_id not in optuna_trials(self):
                return
            outcome = ray_outcome(result, error, retries)
            ot_trial = optuna_trials(self)[trial_id]
            try:
                record_outcome(optuna_study(self), ot_trial, outcome,
                               params=dict(ot_trial.params) if outcome.requeue else None)
            except StorageUnavailable as lost:  # Tune would log it with a traceback: keep
                self.storage_lost = self.storage_lost or lost  # it for after the run
                return
            told(self).add(trial_id)
            self.halt = self.halt or (result or {}).get(HALT_KEY)

    directions = spec.objective.directions
    metrics = objective_metrics(spec)
    modes = ["max" if d == "maximize" else "min" for d in directions]
    return StudySearcher(
        space=lambda trial: suggest_all(trial, spec),
        metric=metrics[0] if len(metrics) == 1 else metrics,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=sampler,
        study_name=study_name,
        storage=open_storage(options.storage),
    )


def ray_outcome(result: dict[str, Any] | None, error: bool, retries: int) -> TrialOutcome:
    """A Tune trial's end as a ``TrialOutcome``: what its trainable sent; FAIL when its
    worker died more than ``retries`` times; else the scheduler stopped it early: PRUNED."""
    if error:
        return TrialOutcome.failed(f"Ray worker failed {retries + 1} times (the trial was "
                                   "retried up to --retries); see Tune's error.txt")
    if result and OUTCOME_KEY in result:
        return TrialOutcome.from_json(result[OUTCOME_KEY])
    from optuna.trial import TrialState

    return TrialOutcome(TrialState.PRUNED, record=TrialRecord())


def make_scheduler(options: RunOptions, spec: StudySpec) -> TrialScheduler:
    """--pruner for Ray: none -> FIFO, median -> MedianStoppingRule, hyperband -> ASHA."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if options.pruner == "none" or len(spec.objective.directions) > 1:
        return FIFOScheduler()
    if options.pruner == "median":
        return MedianStoppingRule(time_attr="training_iteration", metric="val_acc", mode="max",
                                  grace_period=max(1, spec.epochs // 3), min_samples_required=3)
    return ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max",
                         max_t=spec.epochs + 1, grace_period=1, reduction_factor=3)


def init_ray(options: RunOptions) -> bool:
    """Join ``--address`` (else ``RAY_ADDRESS``) or start a local Ray on loopback with this
    machine's usable CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING if options.verbose
                              else logging.ERROR}
    # workers do not inherit the driver's environment; OpenMP's is read when torch loads
    env_vars = openmp_environment(trial_threads(options))
    data_root = os.environ.get(DEFAULT_DATA_ROOT_ENV)
    if data_root:
        env_vars[DEFAULT_DATA_ROOT_ENV] = data_root
    kwargs["runtime_env"] = {"env_vars": env_vars}
    address = cluster_address(options)
    if address:
        ray.init(address=address, **kwargs)  # the cluster says how many CPUs it has
    else:
        loopback_only()  # servers on 127.0.0.1, not on every interface
        os.environ.pop(RAY_ADDRESS_VAR, None)  # an empty one would make Ray look for it
        ray.init(num_cpus=usable_cpus(), _node_ip_address="127.0.0.1", **kwargs)
    return True


def trial_resources(options: RunOptions) -> dict[str, float]:
    """What each Ray trial asks the cluster for: ``--cpus-per-trial`` CPUs and, with
    ``--gpus-per-trial``, that share of a GPU (Ray then sets the trial's
    ``CUDA_VISIBLE_DEVICES``; ``device: auto`` uses it)."""
    resources: dict[str, float] = {"cpu": options.ray.cpus_per_trial}
    if options.ray.gpus_per_trial:
        resources["gpu"] = options.ray.gpus_per_trial
    return resources


def run_round(job: RunJob, budget: int, shared_token: str) -> str | None:
    """One Tune run of at most ``budget`` trials; why a trial halted the run, if one did."""
    from ray import tune

    study, spec, options, progress = job.study, job.spec, job.options, job.progress

    reference = study.user_attrs[REFERENCE_ATTR]
    searcher = make_searcher(spec, options, study.study_name, job.sampler)
    deadline = job.stop.deadline
    tuner = tune.Tuner(
        tune.with_resources(
            # the trainable never opens the storage: its URL (and password) stays here
            tune.with_parameters(trainable, spec=spec,
                                 options=dataclasses.replace(options, storage=None),
                                 reference=reference, study_name=study.study_name,
                                 shared_token=shared_token),
            trial_resources(options),
        ),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(options, spec),
            num_samples=budget,
            max_concurrent_trials=options.ray.concurrency,
            time_budget_s=max(deadline - time.time(), 1) if deadline else None,
            reuse_actors=True,  # a worker process (torch imported, data loaded) per slot
        ),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{int(time.time())}",
            storage_path=str(Path(options.artifacts).resolve() / "ray_results"),
            failure_config=tune.FailureConfig(max_failures=options.ray.retries),
            callbacks=[progress_callback(progress, study, searcher, options.ray.retries)],
            verbose=0,
        ),
    )
    with Heartbeat(study, lambda: running_trial_ids(searcher)):  # the driver owns the trials
        fit(tuner)
    if searcher.storage_lost is not None:  # the rerun fails the trials it could not record
        raise searcher.storage_lost
    return searcher.halt


def fit(tuner: Any) -> None:
    """``tuner.fit()``; a database that stayed away (our storage raised it inside Tune) is
    raised as itself, not as Tune's wrapper of it."""
    try:
        tuner.fit()
    except Exception as err:
        cause = cause_of(err, lambda seen: isinstance(seen, StorageUnavailable))
        if cause is None:
            raise
        raise cause from None


def progress_callback(progress: Any, study: Any, searcher: Any, retries: int) -> Any:
    """A Tune callback that updates the progress bar after each trial and says, in one line,
    when a trial lost its worker and runs again. Tune pickles its callbacks into
    ``tuner.pkl``: the pickle carries neither the bar nor the study (whose storage URL holds
    the password); the live callback in the driver keeps both."""
    from ray import tune

    class Progress(tune.Callback):  # names nothing of this function: pickled by value
        def __init__(self, live: tuple[Any, Any, Any]) -> None:
            self.live = live

        def __getstate__(self) -> dict[str, Any]:
            return {"live": (None, None, None)}

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            bar, watched, _ = self.live
            if bar is not None:
                bar.update(watched)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any,
                             **info: Any) -> None:
            watching = self.live[2]
            if watching is not None:
                log.warning(lost_worker_line(trial, watching, retries))

    return Progress((progress, study, searcher))


def lost_worker_line(trial: Any, searcher: Any, retries: int) -> str:
    """``trial N: its worker on NODE was lost (why); running it again (attempt k of n)``."""
    number = trial.config.get(TRIAL_KEY, "?")
    node = searcher.node_ips.get(trial.trial_id, "an unknown node")
    why = "no reason recorded"
    if trial.error_file and Path(trial.error_file).exists():
        blocks = Path(trial.error_file).read_text(errors="replace").split("Failure # ")
        lines = blocks[-1].splitlines()[1:2] if blocks else []
        why = lines[0].strip().split(". ")[0][:160] if lines else why
    return (f"trial {number}: its Ray worker on {node} was lost ({why}); running it again "
            f"(attempt {trial.num_failures + 1} of {retries + 1})")


def running_trial_ids(searcher: Any) -> list[int]:
    """Storage ids of the Optuna trials the searcher has asked and not yet told."""
    done = told(searcher)
    return [trial_id(trial) for key, trial in list(optuna_trials(searcher).items())
            if key not in done]

