"""The Ray Tune backend: the same study, samplers and records, trials spread over a cluster.

Ray is imported only here, and only when ``hpo run --backend ray`` runs. Tune schedules the
trials (``--concurrency``, ``--cpus-per-trial``, retries of trials whose worker died, ASHA
early stopping); Ray's ``OptunaSearch`` asks our sampler and tells our Optuna study, so local
and Ray trials land in one storage with the same user attributes, plus the Ray node.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo.objective import evaluate
from hpo.records import WORKER_ATTR, worker_id
from hpo.runner import RunOptions, state_counts, suggest
from hpo.samplers import SAMPLERS, build_sampler
from hpo.storage import open_storage
from hpo.study import StudySpec

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

log = logging.getLogger(__name__)
TRIAL_KEY = "_optuna_trial"  # the Optuna trial number, passed to the trainable in its config
RESULT_ATTRS = ("family", "family_summary", "history", "seconds", "checkpoint", "seed",
                "ray_node_id", "ray_node_ip", "fail_reason")


def objective_metrics(spec: StudySpec) -> list[str]:
    return ["objective"] if len(spec.objective.directions) == 1 else [
        f"objective_{i}" for i in range(len(spec.objective.directions))]


def trainable(config: dict[str, Any], spec: StudySpec, options: RunOptions,
              reference: float) -> None:
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
                     "train_loss": metrics.train_loss})

    checkpoint = Path(options.artifacts).resolve() / spec.name / f"trial-{number}.pt"
    try:
        outcome = evaluate(spec, params, options.seed, reference, on_epoch=on_epoch,
                           checkpoint=checkpoint, threads=options.cpus_per_trial)
    except Exception as err:  # recorded as FAIL with its reason by the searcher
        tune.report({"fail_reason": f"{type(err).__name__}: {err}", **node})
        return
    values = dict(zip(objective_metrics(spec), outcome.values))
    tune.report({
        **values, **node, "seed": options.seed, "seconds": outcome.seconds,
        "checkpoint": outcome.checkpoint, "history": outcome.history,
        "family": outcome.family.rows(), "family_summary": outcome.family.summary(),
    })


def make_searcher(spec: StudySpec, options: RunOptions, study_name: str) -> Any:
    """Ray's OptunaSearch over our study and sampler, recording what the trials report."""
    from ray.tune.search.optuna import OptunaSearch

    class StudySearcher(OptunaSearch):
        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(WORKER_ATTR, worker_id())  # the driver owns Ray trials
            return None if params is None else {**params, TRIAL_KEY: ot_trial.number}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if "val_acc" in result and "epoch" in result and len(spec.objective.directions) == 1:
                self._ot_trials[trial_id].report(result["val_acc"], int(result["epoch"]))

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None:
                record_result(ot_trial, result, error, options.retries)
            super().on_trial_complete(trial_id, result, error)

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
    for key in RESULT_ATTRS:
        if result and key in result:
            trial.set_user_attr(key, result[key])
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
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False,
                              "log_to_driver": False}
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

    started = init_ray(options)
    try:
        while (budget := remaining(study, options, base_failures, deadline)) > 0:
            run_round(options, study, spec, budget, progress, deadline)
    finally:
        if started:
            ray.shutdown()


def remaining(study: optuna.Study, options: RunOptions, base_failures: int,
              deadline: float | None) -> int:
    counts = state_counts(study)
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    if counts[TrialState.FAIL] - base_failures >= options.max_failures:
        return 0
    if deadline is not None and time.time() > deadline:
        return 0
    budget = options.trials - done
    if SAMPLERS.get(options.sampler).enumerates_grid:
        budget = min(budget, counts[TrialState.WAITING])
    return max(budget, 0)


def run_round(options: RunOptions, study: optuna.Study, spec: StudySpec, budget: int,
              progress: Any, deadline: float | None) -> None:
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if progress is not None:
                progress.update(study)

    reference = study.user_attrs["reference_complexity"]
    resources = {"cpu": options.cpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trainable, spec=spec, options=options, reference=reference),
            resources,
        ),
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(spec, options, study.study_name),
            scheduler=make_scheduler(options, spec),
            num_samples=budget,
            max_concurrent_trials=options.concurrency,
            time_budget_s=max(deadline - time.time(), 1) if deadline else None,
        ),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{int(time.time())}",
            storage_path=str(Path(options.artifacts).resolve() / "ray_results"),
            failure_config=tune.FailureConfig(max_failures=options.retries),
            callbacks=[Progress()],
            verbose=0,
        ),
    )
    tuner.fit()
