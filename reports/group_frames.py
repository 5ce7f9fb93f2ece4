"""Frames computed from a comparison group (``hpo.groups.Group``): best so far by trials and
by time, final bests, what incumbents are worth on fresh seeds, trials to target,
attainment surfaces, the paired verdict, distinct values and layouts. numpy, pandas, scipy
and optuna only: never torch."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pandas as pd

from hpo.facts import (
    best_trial,
    complete_trials,
    is_multi_objective,
    maximises,
    reported_value,
)
from hpo.groups import Group, group_maximises
from hpo.objectives import OBJECTIVES
from hpo.records import (
    REFERENCE_ATTR,
    TrialRecord,
    stored_objective,
)
from reports import stats
from reports.study_frames import importance, objective_kind, simulated_clock, wall_elapsed
from search_core.metrics import hypervolume_2d


def _group_rows(group: Group):
    for study, (_, meta) in zip(group.studies, group.meta.iterrows()):
        yield study, meta


def best_so_far(group: Group) -> pd.DataFrame:
    """Long frame: sampler, repeat, study, trial (1-based index among complete trials),
    value, best (running best), elapsed_s (wall seconds spent running trials so far; for
    an objective with a simulated clock, the running sum of the trials' simulated
    seconds: one trial after another)."""
    rows = []
    for study, meta in _group_rows(group):
        trials = complete_trials(study)
        elapsed = (itertools.accumulate(TrialRecord.from_frozen(t).seconds or 0.0
                                        for t in trials)
                   if simulated_clock(study) else wall_elapsed(study, trials))
        values, running = trial_scores(study, trials)
        for i, (t, value, best, seconds) in enumerate(zip(trials, values, running, elapsed),
                                                      start=1):
            rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"],
                         "study": meta["study"], "trial": i, "number": t.number,
                         "value": value, "best": best, "elapsed_s": seconds})
    return pd.DataFrame(rows, columns=["sampler", "repeat", "study", "trial", "number",
                                       "value", "best", "elapsed_s"])


def trial_scores(study: optuna.Study,
                 trials: list[optuna.trial.FrozenTrial]) -> tuple[list[float], list[float]]:
    """(each trial's score, the best score so far) in trial order. One objective: its value
    and the running best. An (accuracy, complexity) study: the hypervolume of the trial's
    point and of the front of all trials so far (the study's reference box)."""
    if not is_multi_objective(study):
        better = max if maximises(study) else min
        values = [t.values[0] for t in trials]
        return values, list(itertools.accumulate(values, better))
    reference = hypervolume_reference(study, trials)
    acc = [t.values[0] for t in trials]
    cx = [t.values[1] for t in trials]
    points = [hypervolume_2d([a], [c], reference) for a, c in zip(acc, cx)]
    running = [hypervolume_2d(acc[: i + 1], cx[: i + 1], reference) for i in range(len(acc))]
    return points, running


def hypervolume_reference(study: optuna.Study,
                          trials: list[optuna.trial.FrozenTrial]) -> tuple[float, float]:
    """(worst accuracy, largest complexity) of an (accuracy, complexity) study's box: the
    study's reference complexity and objective.reference_accuracy; without a recorded
    reference, the largest complexity of its trials."""
    acc_ref = float(stored_objective(study).get("reference_accuracy", 0.0) or 0.0)
    cx_ref = study.user_attrs.get(REFERENCE_ATTR)
    if not cx_ref:
        cx_ref = max((t.values[1] for t in trials), default=1.0) or 1.0
    return acc_ref, float(cx_ref)


SUMMARY_COLUMNS = ["sampler", "trial", "mean", "mean_lo", "mean_hi", "median", "q25", "q75",
                   "n"]



def best_so_far_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per sampler and trial index over repeats: the mean best-so-far with a 95 % percentile
    bootstrap band (mean_lo, mean_hi; resampling repeats, seed 0), median, q25, q75; n counts
    the repeats that reached that trial."""
    if curves.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = []
    for (sampler, trial), best in curves.groupby(["sampler", "trial"], sort=False)["best"]:
        values = best.to_numpy(float)
        lo, hi = stats.bootstrap_mean_band(values)
        rows.append({"sampler": sampler, "trial": trial, "mean": float(values.mean()),
                     "mean_lo": lo, "mean_hi": hi, "median": float(np.median(values)),
                     "q25": float(np.quantile(values, 0.25)),
                     "q75": float(np.quantile(values, 0.75)), "n": len(values)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values(
        ["sampler", "trial"], kind="stable").reset_index(drop=True)


def final_best(group: Group) -> pd.DataFrame:
    """sampler, repeat, study, best (final best value; NaN without complete trials), trials."""
    rows = []
    for study, meta in _group_rows(group):
        trials = complete_trials(study)
        running = trial_scores(study, trials)[1]
        rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"],
                     "study": meta["study"], "best": running[-1] if running else np.nan,
                     "trials": len(trials)})
    return pd.DataFrame(rows, columns=["sampler", "repeat", "study", "best", "trials"])


def incumbent_worth(group: Group) -> pd.DataFrame | None:
    """Like ``final_best``, but ``best`` is what each study's incumbent (``best_trial``: the
    best value, the best mean over seeds when intensified, the best fresh-seed mean when
    re-evaluated) is worth on fresh seeds: the objective's ``expected`` value there (a
    table's surrogate mean), with ``noisy`` what the study reports for it
    (``reported_value``) and ``visited`` the best expected value among all its trials (what
    the sampler found, whether or not one seed's values could tell). None when the group's
    objective does not know its mean or its table cannot be read (e.g. a relative table path
    from another folder)."""
    from hpo.objectives import ObjectiveSpec
    from search_core.errors import ConfigError

    rows = []
    for study, meta in _group_rows(group):
        kind = objective_kind(study)
        expected = OBJECTIVES.get(kind).expected if kind in OBJECTIVES else None
        if expected is None or is_multi_objective(study):
            return None
        trials = complete_trials(study)
        try:
            means = expected(ObjectiveSpec(**stored_objective(study)),
                             [t.params for t in trials]) if trials else []
        except (ConfigError, TypeError):
            return None
        incumbent = best_trial(study)
        at = {t.number: m for t, m in zip(trials, means)}
        rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"],
                     "study": meta["study"],
                     "best": at[incumbent.number] if incumbent else np.nan,
                     "noisy": reported_value(study) if incumbent else np.nan,
                     "visited": (max if maximises(study) else min)(means) if means else np.nan,
                     "trials": len(trials)})
    return pd.DataFrame(rows, columns=["sampler", "repeat", "study", "best", "noisy",
                                       "visited", "trials"])


def default_target(group: Group) -> float:
    """The known optimum when a study of the group records one, else the 90th percentile of
    all final bests."""
    known = [v for v in group.meta["known_optimum"] if v is not None and not pd.isna(v)]
    if known:
        return float(known[0])
    finals = final_best(group)["best"].dropna()
    top = 90 if group_maximises(group) else 10
    return float(np.percentile(finals, top)) if len(finals) else np.nan


def trials_to_target(group: Group, target: float | None = None) -> pd.DataFrame:
    """sampler, repeat, target, trials (1-based index of the first complete trial reaching
    ``target``; NaN if never), elapsed_s likewise."""
    if target is None:
        target = default_target(group)
    curves = best_so_far(group)
    rows = []
    for (_, meta) in group.meta.iterrows():
        curve = curves[curves["study"] == meta["study"]]
        reached = curve["best"] >= target if group_maximises(group) else curve["best"] <= target
        hit = curve[reached]
        rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"],
                     "study": meta["study"], "target": target,
                     "trials": float(hit["trial"].iloc[0]) if len(hit) else np.nan,
                     "elapsed_s": float(hit["elapsed_s"].iloc[0]) if len(hit) else np.nan})
    return pd.DataFrame(rows, columns=["sampler", "repeat", "study", "target", "trials",
                                       "elapsed_s"])


def attainment(group: Group) -> pd.DataFrame:
    """Empirical attainment surfaces of an (accuracy, complexity) group: per sampler and
    complexity c (every complexity any of its trials reached), the accuracy attained at
    complexity <= c by at least one repeat (best), half of them (median) and all (worst).
    Empty for single-objective groups."""
    if not group.studies or not is_multi_objective(group.studies[0]):
        return pd.DataFrame(columns=["sampler", "complexity", "best", "median", "worst"])
    rows = []
    for sampler in group.samplers:
        runs = [[(t.values[1], t.values[0]) for t in complete_trials(study)]
                for study, meta in _group_rows(group) if meta["sampler"] == sampler]
        runs = [r for r in runs if r]
        grid = sorted({cx for run in runs for cx, _ in run})
        for c in grid:
            attained = sorted((max((a for cx, a in run if cx <= c), default=np.nan)
                               for run in runs), key=lambda v: np.inf if np.isnan(v) else -v)
            rows.append({"sampler": sampler, "complexity": c, "best": attained[0],
                         "median": attained[(len(attained) - 1) // 2],
                         "worst": attained[-1]})
    return pd.DataFrame(rows, columns=["sampler", "complexity", "best", "median", "worst"])


def paired_verdict(group: Group, alpha: float = stats.ALPHA,
                   finals: pd.DataFrame | None = None) -> stats.Verdict:
    """Friedman, pairwise Wilcoxon-Holm, A12 and mean ranks of the final bests (``finals``:
    ``final_best(group)`` when already computed), paired by repeat (reports.stats)."""
    finals = final_best(group) if finals is None else finals
    blocks, dropped = stats.paired_blocks(finals.dropna(subset=["best"]))
    return stats.compare_paired(blocks, group_maximises(group), alpha, dropped)


def group_params(group: Group) -> list[str]:
    names: list[str] = []
    for study in group.studies:
        for t in study.get_trials(deepcopy=False):
            names += [k for k in t.params if k not in names]
    return names


def distinct_values(group: Group) -> pd.DataFrame:
    """Index: sampler; columns: params; values: distinct values tried per parameter (over
    all trials with that parameter), averaged over the sampler's repeats."""
    params = group_params(group)
    rows = []
    for study, meta in _group_rows(group):
        trials = study.get_trials(deepcopy=False)
        row = {"sampler": meta["sampler"], "repeat": meta["repeat"]}
        for p in params:
            row[p] = len({repr(t.params[p]) for t in trials if p in t.params})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["sampler", "repeat", *params])
    if frame.empty:
        return pd.DataFrame(columns=params)
    return frame.groupby("sampler", sort=False)[params].mean()


POOLED_TRIALS = 500


def pooled_importance(group: Group) -> dict[str, float]:
    """fANOVA importances over the complete trials of the group pooled into one in-memory
    study (at most POOLED_TRIALS of them, drawn with seed 0: fANOVA's forest over the
    9,480 trials of a 7 x 30 x 50 comparison took minutes); {} on error or with < 3
    trials."""
    trials = [t for s in group.studies for t in complete_trials(s)]
    if len(trials) < 3:
        return {}
    if len(trials) > POOLED_TRIALS:
        keep = np.random.default_rng(0).choice(len(trials), POOLED_TRIALS, replace=False)
        trials = [trials[i] for i in sorted(keep)]
    try:
        pooled = optuna.create_study(direction="maximize")
        pooled.add_trials(trials)
        return importance(pooled)
    except Exception:
        return {}


def layout_axes(group: Group) -> tuple[str, str] | None:
    """(most, least) important parameter from the pooled trials' importances; falls back to
    the first and last parameter. None without parameters."""
    params = group_params(group)
    if not params:
        return None
    ranked = pooled_importance(group)
    ranked = {k: v for k, v in ranked.items() if k in params}
    if len(ranked) >= 2:
        order = sorted(ranked, key=ranked.__getitem__, reverse=True)
        return order[0], order[-1]
    return params[0], params[-1]


def layout_frame(group: Group, axes: tuple[str, str]) -> pd.DataFrame:
    """Complete trials' values of the two layout axes: sampler, repeat, x, y, value (numeric
    params as-is, categoricals as their choice index)."""
    rows = []
    for study, meta in _group_rows(group):
        for t in complete_trials(study):
            if not all(a in t.params for a in axes):
                continue
            xy = []
            for a in axes:
                v, dist = t.params[a], t.distributions[a]
                if isinstance(dist, optuna.distributions.CategoricalDistribution):
                    v = dist.choices.index(v)
                xy.append(float(v))
            rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"], "x": xy[0],
                         "y": xy[1], "value": t.values[0]})
    return pd.DataFrame(rows, columns=["sampler", "repeat", "x", "y", "value"])


