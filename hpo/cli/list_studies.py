"""``hpo list``: the studies in a storage, one line each."""

from __future__ import annotations

import argparse

import optuna
from optuna.trial import TrialState

from hpo.cli.common import Subparsers, add_storage
from hpo.facts import best_trial, is_multi_objective, state_counts
from hpo.records import SAMPLER_ATTR, metric_names
from hpo.storage import open_storage


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    lst = subparsers.add_parser("list", help="list the studies in a storage")
    add_storage(lst)
    lst.set_defaults(handler=cmd_list)
    return lst


def cmd_list(args: argparse.Namespace) -> int:
    """One line per study, tab-separated: name, trial counts by state, best, sampler."""
    storage = open_storage(args.storage, must_exist=True)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        print("\t".join([summary.study_name, state_counts_text(study),
                         best_text(study), f"sampler {summary.user_attrs.get(SAMPLER_ATTR)}"]))
    return 0


def state_counts_text(study: optuna.Study) -> str:
    """"12 complete, 1 failed, 2 waiting": the states a study's trials are in."""
    counts = state_counts(study)
    order = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
             TrialState.WAITING)
    words = {TrialState.FAIL: "failed"}
    parts = [f"{counts[state]} {words.get(state, state.name.lower())}" for state in order
             if counts[state]]
    return ", ".join(parts) or "no trials"


def best_text(study: optuna.Study) -> str:
    """"best hypervolume 0.7954 (trial 12)", or the size of a Pareto front."""
    from hpo.announce import number

    best = best_trial(study)
    if best is None:
        return "no complete trial"
    names = metric_names(study)
    if is_multi_objective(study):
        return f"Pareto front ({' vs '.join(names)}): {len(study.best_trials)} trials"
    return f"best {names[0]} {number(best.value)} (trial {best.number})"
