"""``hpo reevaluate``: the study's top configurations, run again with fresh seeds.

A trial's value is one draw of a noisy objective (its search seed's luck), and the best of
many draws is biased upwards: the incumbent is partly the luckiest seed. This runs each of
the ``--top`` best configurations again with ``--seeds`` seeds that no trial of the study
used, records the validation value (the study's objective) and the test value (the same
objective with every member's accuracy on the test split; reporting only) per seed, and names
the configuration with the best mean over fresh seeds as the study's seed-robust best.

Every finished evaluation is stored at once in the study (user attribute
``reevaluated_trial_N``: {seed: {value, test_value, seconds}}), so a rerun continues where a
killed one stopped, and a rerun with more ``--seeds`` or a larger ``--top`` adds only what
is missing. ``hpo report`` shows the result beside the search values.

``--device`` and ``--precision`` say where and how the evaluations run (default: auto, and
the study's precision); a device this machine lacks is one line on stderr before any runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

import optuna

from hpo.facts import complete_trials, is_multi_objective, maximises
from hpo.intensify import params_key
from hpo.liveness import study_lock
from hpo.pool import run_in_processes
from hpo.records import REEVALUATED_ATTR, REFERENCE_ATTR, STUDY_FILE_ATTR, TrialRecord
from search_core.errors import ConfigError

FRESH_SEED_BASE = 1000  # fresh seeds are the first integers from here that no trial used


@dataclass(frozen=True)
class Job:
    """One evaluation: a trial's configuration with one fresh seed (everything a worker
    process needs, picklable)."""

    trial: int
    params: dict[str, Any]
    seed: int
    study: dict[str, Any]  # StudySpec.to_dict
    reference: float
    threads: int
    device: str | None = None  # --device (None: the study's)
    precision: str | None = None  # --precision (None: the study's)


def reevaluate(study: optuna.Study, top: int, seeds: int, workers: int, threads: int,
               quiet: bool = False, device: str | None = None,
               precision: str | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """Evaluate what is missing of ``top`` x ``seeds``, storing each result as it finishes
    under the study's lock (``storage``: the study's storage URL; another ``hpo reevaluate``
    of the same study may be storing too); the summary rows, best fresh-seed mean first.
    ``device``, ``precision``: in place of the study's (None: keep it)."""
    jobs = [replace(job, device=device, precision=precision)
            for job in plan(study, top, seeds, threads)]
    for job, record in run_in_processes(evaluate_job, jobs, workers, "reevaluate", quiet):
        with study_lock(storage, study.study_name):
            store(study, job, record)
    return summarise(study)


def top_trials(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The ``top`` complete trials of distinct configurations, best value first (a sampler
    that proposed the same parameters again, with the same seed, gave the same value: one
    configuration re-evaluated three times would waste the fresh seeds)."""
    if is_multi_objective(study):
        raise ConfigError(f"study {study.study_name!r} has {len(study.directions)} objectives; "
                          "hpo reevaluate ranks configurations by one value")
    done = complete_trials(study)
    if not done:
        raise ConfigError(f"study {study.study_name!r} has no complete trial to re-evaluate")
    maximise = maximises(study)
    done = sorted(done, key=lambda t: (-t.values[0] if maximise else t.values[0], t.number))
    distinct: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in done:
        distinct.setdefault(params_key(trial.params), trial)
    return list(distinct.values())[:top]


def fresh_seeds(study: optuna.Study, count: int) -> list[int]:
    """The first ``count`` integers from FRESH_SEED_BASE that no trial searched with."""
    used = {TrialRecord.from_frozen(t).seed for t in study.get_trials(deepcopy=False)}
    seeds: list[int] = []
    candidate = FRESH_SEED_BASE
    while len(seeds) < count:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def plan(study: optuna.Study, top: int, seeds: int, threads: int) -> list[Job]:
    """The evaluations still missing, best configuration first."""
    attrs = study.user_attrs
    if STUDY_FILE_ATTR not in attrs:
        raise ConfigError(f"study {study.study_name!r} was not made by hpo run (no stored "
                          "study file); nothing to re-evaluate")
    fresh = fresh_seeds(study, seeds)
    jobs = []
    for trial in top_trials(study, top):
        done = stored(study, trial.number)
        jobs += [Job(trial.number, dict(trial.params), seed, attrs[STUDY_FILE_ATTR],
                     float(attrs.get(REFERENCE_ATTR, 0.0)), threads)
                 for seed in fresh if str(seed) not in done]
    return jobs


def evaluate_job(job: Job) -> dict[str, Any]:
    """One evaluation in this process: the objective's value and its test value."""
    from hpo.evaluation import evaluate
    from hpo.study import spec_from_dict
    from hpo.study_spec import with_run_settings

    spec = with_run_settings(spec_from_dict(job.study), job.device, job.precision)
    result = evaluate(spec, job.params, job.seed, job.reference, threads=job.threads,
                      test=True)
    return {"value": result.values[0],
            "test_value": result.test_values[0] if result.test_values else None,
            "seconds": result.seconds}


def stored(study: optuna.Study, number: int) -> dict[str, dict[str, Any]]:
    return dict(study.user_attrs.get(REEVALUATED_ATTR.format(number=number), {}))


def all_stored(study: optuna.Study) -> dict[int, dict[str, dict[str, Any]]]:
    """Every re-evaluated trial's runs by seed, from one read of the study's attributes."""
    attrs = study.user_attrs
    found = {}
    for trial in study.get_trials(deepcopy=False):
        runs = attrs.get(REEVALUATED_ATTR.format(number=trial.number))
        if runs:
            found[trial.number] = dict(runs)
    return found


def store(study: optuna.Study, job: Job, record: dict[str, Any]) -> None:
    """Add one evaluation to the trial's record in the study (read again first: another
    process may have added others; hold the study's lock around it)."""
    seeds = stored(study, job.trial) | {str(job.seed): record}
    study.set_user_attr(REEVALUATED_ATTR.format(number=job.trial), seeds)


def summarise(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per re-evaluated trial, best fresh-seed mean first: search value, fresh-seed
    validation mean ± sd and test mean ± sd, seeds."""
    maximise = not is_multi_objective(study) and maximises(study)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = []
    for number, runs in all_stored(study).items():
        trial = trials[number]
        values = [r["value"] for r in runs.values()]
        tests = [r["test_value"] for r in runs.values() if r.get("test_value") is not None]
        rows.append({"trial": number, "search_value": trial.values[0] if trial.values else None,
                     "fresh_mean": statistics.fmean(values), "fresh_sd": _sd(values),
                     "test_mean": statistics.fmean(tests) if tests else None,
                     "test_sd": _sd(tests) if tests else None, "seeds": len(values),
                     "params": dict(trial.params)})
    rows.sort(key=lambda r: -r["fresh_mean"] if maximise else r["fresh_mean"])
    return rows


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def seed_share(study: optuna.Study) -> dict[str, float] | None:
    """How much of the spread between re-evaluated configurations is seed noise: the pooled
    within-configuration sd, the sd of the configuration means, and the share of the total
    variance (all values) that lies within configurations. None with fewer than 2
    configurations of 2 or more seeds."""
    groups = [[r["value"] for r in runs.values()] for runs in all_stored(study).values()]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 2:
        return None
    within = statistics.fmean(statistics.variance(g) for g in groups)
    total = statistics.variance([v for g in groups for v in g])
    return {"within_sd": within ** 0.5,
            "between_sd": statistics.stdev(statistics.fmean(g) for g in groups),
            "seed_share": min(1.0, within / total) if total > 0 else 0.0,
            "configurations": len(groups)}


def format_summary(name: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"study {name}: nothing re-evaluated"
    lines = [f"study {name}: {len(rows)} configuration(s) re-evaluated with fresh seeds "
             "(validation value mean ± sd; test: the same objective on the test split, "
             "chose nothing)"]
    for i, row in enumerate(rows):
        test = ("-" if row["test_mean"] is None
                else f"{row['test_mean']:.4f} ± {row['test_sd']:.4f}")
        mark = "best" if i == 0 else "    "
        lines.append(f"  {mark} trial {row['trial']:>4}: search {row['search_value']:.4f}, "
                     f"fresh {row['fresh_mean']:.4f} ± {row['fresh_sd']:.4f} "
                     f"(n={row['seeds']}), test {test}")
    return "\n".join(lines)
