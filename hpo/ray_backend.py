"""The Ray Tune backend: the same study, samplers and records, trials spread over a cluster.

Ray is imported only here, and only when ``hpo run --backend ray`` runs. Tune schedules the
trials (``--concurrency``, ``--cpus-per-trial``, retries of trials whose worker died, ASHA
early stopping); Ray's ``OptunaSearch`` asks our sampler and tells our Optuna study, so local
and Ray trials land in one storage with the same user attributes, plus the Ray node.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo.objective import evaluate
from hpo.records import WORKER_ATTR, worker_id
from hpo.runner import Heartbeat, RunOptions, suggest, trial_threads, trials_to_start
from hpo.samplers import build_sampler
from hpo.storage import open_storage
from hpo.study import StudySpec
from search_core.data import DEFAULT_DATA_ROOT_ENV
from search_core.threads import openmp_environment

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

log = logging.getLogger(__name__)
TRIAL_KEY = "_optuna_trial"  # the Optuna trial number, passed to the trainable in its config
RECORDS_KEY = "hpo_records"  # JSON of the user attributes a trial reports


def objective_metrics(spec: StudySpec) -> list[str]:
    return ["objective"] if len(spec.objective.directions) == 1 else [
        f"objective_{i}" for i in range(len(spec.objective.directions))]


def trainable(config: dict[str, Any], spec: StudySpec, options: RunOptions,
              reference: float, study_name: str) -> None:
    """One trial inside a Ray worker: per-epoch reports, then the objective and records.

    A trial that raises (bad values, divergence) reports its reason instead of crashing the
    worker, so only infrastructure failures (a worker that died) are retried by Tune."""
    import ray
    from ray import tune

    params = dict(config)
    number = params.pop(TRIAL_KEY)
    node = {"ray_node_id": ray.get_runtime_context().get_node_id(),
            "ray_node_ip": ray.util.get_node_ip_address()}

    def on_epoch(metrics: Any) -> None:
        tune.report({"val_acc": metrics.val_acc, "epoch": metrics.epoch,
                     "train_loss": metrics.train_loss, "ray_node_id": node["ray_node_id"],
                     "worker_pid": os.getpid()})

    checkpoint = Path(options.artifacts).resolve() / study_name / f"trial-{number}.pt"
    try:
        outcome = evaluate(spec, params, options.seed, reference, on_epoch=on_epoch,
                           checkpoint=checkpoint, threads=trial_threads(options))
    except Exception as err:  # recorded as FAIL with its reason by the searcher
        reason = f"{type(err).__name__}: {err}"
        tune.report({"fail_reason": reason, RECORDS_KEY: json.dumps({**node,
                                                                      "fail_reason": reason})})
        return
    values = dict(zip(objective_metrics(spec), outcome.values))
    last_val_acc = outcome.history[-1]["val_acc"] if outcome.history else 0.0
    records = {
        **node, "seed": options.seed, "seconds": outcome.seconds, "threads": outcome.threads,
        "checkpoint": outcome.checkpoint, "history": outcome.history,
    }
    if outcome.family is not None:
        records |= {"family": outcome.family.rows(), "family_summary": outcome.family.summary()}
    # nested records travel as one JSON string: Tune flattens nested result dicts
    tune.report({**values, "val_acc": last_val_acc, RECORDS_KEY: json.dumps(records)})


def make_searcher(spec: StudySpec, options: RunOptions, study_name: str) -> Any:
    """Ray's OptunaSearch over our study and sampler, recording what the trials report."""
    from ray.tune.search.optuna import OptunaSearch

    class StudySearcher(OptunaSearch):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.reported: dict[str, set[int]] = {}  # Tune trial -> epochs reported so far
            self.restarts: dict[str, int] = {}  # Tune trial -> restarts after a worker died
            self.nodes: dict[str, list[str]] = {}  # Tune trial -> nodes its attempts ran on

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(WORKER_ATTR, worker_id())  # the driver owns Ray trials
            return None if params is None else {**params, TRIAL_KEY: ot_trial.number}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if "val_acc" not in result or "epoch" not in result:
                return
            ot_trial = self._ot_trials[trial_id]
            if "worker_pid" in result:  # the process running it now (ops can find it)
                ot_trial.set_user_attr("ray_worker_pid", int(result["worker_pid"]))
            nodes = self.nodes.setdefault(trial_id, [])
            if result.get("ray_node_id") and result["ray_node_id"] not in nodes:
                nodes.append(result["ray_node_id"])  # every node an attempt of it ran on
                ot_trial.set_user_attr("ray_nodes", nodes)
            epoch, seen = int(result["epoch"]), self.reported.setdefault(trial_id, set())
            if epoch == 0 and 0 in seen:  # Tune restarted it: its worker died
                self.restarts[trial_id] = self.restarts.get(trial_id, 0) + 1
                ot_trial.set_user_attr("ray_restarts", self.restarts[trial_id])
            if epoch not in seen:  # an intermediate value is reported once per epoch
                seen.add(epoch)
                if len(spec.objective.directions) == 1:
                    ot_trial.report(result["val_acc"], epoch)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the Optuna storage is the record, and a resumed study
            starts a new Tune run against it (``hpo run --name``), not Tune's restore."""

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            """COMPLETE with the objective; FAIL with a reason; else stopped early by the
            scheduler: PRUNED."""
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            record_result(ot_trial, result, error, options.retries)
            values = [result.get(m) for m in metrics] if result else []
            if values and all(v is not None for v in values):
                self._ot_study.tell(ot_trial, values)
            elif error or (result and "fail_reason" in result):
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            else:
                self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)

    directions = spec.objective.directions
    metrics = objective_metrics(spec)
    modes = ["max" if d == "maximize" else "min" for d in directions]
    return StudySearcher(
        space=lambda trial: {n: suggest(trial, n, p) for n, p in spec.params.items()},
        metric=metrics[0] if len(metrics) == 1 else metrics,
        mode=modes[0] if len(modes) == 1 else modes,
        sampler=build_sampler(options.sampler, options.seed, directions),
        study_name=study_name,
        storage=open_storage(options.storage),
    )


def record_result(trial: optuna.Trial, result: dict[str, Any] | None, error: bool,
                  retries: int) -> None:
    """Copy what the trainable reported into the Optuna trial's user attributes."""
    records = json.loads(result[RECORDS_KEY]) if result and RECORDS_KEY in result else {}
    for key, value in records.items():
        trial.set_user_attr(key, value)
    if error:
        trial.set_user_attr("fail_reason", f"Ray worker failed {retries + 1} times (the trial "
                                           "was retried up to --retries); see Tune's error.txt")


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
    """Join ``--address`` or start a local Ray on loopback; True if we started it."""
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
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", **kwargs)
    return True


def execute(options: RunOptions, study: optuna.Study, spec: StudySpec, progress: Any,
            base_failures: int, deadline: float | None) -> None:
    """Run Tune rounds until the study has ``--trials`` finished trials (or a stop)."""
    import ray

    # Per-epoch reports carry val_acc (for the schedulers), the last one the objective.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # the legacy reporter honours verbose=0: our progress bar is the only output
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = init_ray(options)
    try:
        while (budget := trials_to_start(study, options, base_failures, deadline)[0]) > 0:
            run_round(options, study, spec, budget, progress, deadline)
    finally:
        if started:
            ray.shutdown()


def run_round(options: RunOptions, study: optuna.Study, spec: StudySpec, budget: int,
              progress: Any, deadline: float | None) -> None:
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if progress is not None:
                progress.update(study)

    reference = study.user_attrs["reference_complexity"]
    resources = {"cpu": options.cpus_per_trial}
    searcher = make_searcher(spec, options, study.study_name)
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trainable, spec=spec, options=options, reference=reference,
                                 study_name=study.study_name),
            resources,
        ),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=make_scheduler(options, spec),
            num_samples=budget,
            max_concurrent_trials=options.concurrency,
            time_budget_s=max(deadline - time.time(), 1) if deadline else None,
            reuse_actors=True,  # a worker process (torch imported, data loaded) per slot
        ),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{int(time.time())}",
            storage_path=str(Path(options.artifacts).resolve() / "ray_results"),
            failure_config=tune.FailureConfig(max_failures=options.retries),
            callbacks=[Progress()],
            verbose=0,
        ),
    )
    with Heartbeat(study, lambda: running_trial_ids(searcher)):  # the driver owns the trials
        tuner.fit()


def running_trial_ids(searcher: Any) -> list[int]:
    """Storage ids of the Optuna trials the searcher has asked and not yet told."""
    return [trial._trial_id for key, trial in list(searcher._ot_trials.items())
            if key not in searcher._completed_trials]
