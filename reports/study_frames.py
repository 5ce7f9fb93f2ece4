"""Frames and dataclasses computed from one study, before anything is drawn
(``reports.figures``) or written (``reports.html``): its trials, its best trial's family
front and the union front, the extended front of compressed members, probes, importances,
and re-evaluations. numpy, pandas, scipy and optuna only: never torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from hpo.facts import FINISHED, best_trial, complete_trials, is_multi_objective, maximises
from hpo.objectives import OBJECTIVES
from hpo.pipeline import PREFIX as PIPELINE_PREFIX
from hpo.records import (
    PARAM_PREFIX,
    TrialRecord,
    metric_names,
    readable_columns,
    stored_objective,
)
from search_core.metrics import hypervolume_2d, pareto_front

SEED_PROBES = ("A", "B", "C", "D")


def study_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial (every state): number, state, value(s), params, family summary,
    seconds, elapsed_s (the wall seconds spent running trials when it ended: time between
    sessions does not count), and the running best
    of the (first) objective over complete trials."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows = []
    for t, elapsed in zip(trials, wall_elapsed(study, trials)):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        if t.values is not None:
            if len(t.values) == 1:
                row["value"] = t.values[0]
            else:
                row |= {f"value_{i}": v for i, v in enumerate(t.values)}
        row |= {f"{PARAM_PREFIX}{k}": v for k, v in t.params.items()}
        record = TrialRecord.from_frozen(t)
        row["hypervolume"] = record.hypervolume
        row["controllability"] = record.controllability
        row["seconds"] = record.seconds
        row["seed"] = record.seed
        row["elapsed_s"] = None if np.isnan(elapsed) else elapsed
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["number", "state", "value", "best_so_far"])
    objective = "value" if "value" in frame else "value_0" if "value_0" in frame else None
    if objective is not None:
        done = frame["state"] == "COMPLETE"
        values = frame[objective].where(done).astype(float)
        running = values.cummax() if maximises(study) else values.cummin()
        frame["best_so_far"] = running.where(done | running.notna())
    return frame


TRIALS_CSV_ONLY = ("elapsed_s", "best_so_far")  # the history figure draws them; in the CSV


def trials_table(study: optuna.Study, frame: pd.DataFrame) -> pd.DataFrame:
    """The report's Trials table from ``study_frame``: values under the objective's names,
    parameters without their ``param_`` prefix, no column repeating a value (the family's
    hypervolume when it is the objective). The page leaves out ``TRIALS_CSV_ONLY``."""
    return readable_columns(frame, metric_names(study))


def objective_column(frame: pd.DataFrame) -> str | None:
    return "value" if "value" in frame else "value_0" if "value_0" in frame else None


def family_frame(trial: optuna.trial.FrozenTrial) -> pd.DataFrame:
    """The trial's family table (probes A-D and the lattice): one row per member."""
    return pd.DataFrame(list(TrialRecord.from_frozen(trial).family))




def pipeline_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per complete trial, compressed member and stage of a study with a
    ``pipeline:``: the stage's validation accuracy, non-zero parameters and bytes before and
    after, the member's final latency (ms, measured) and bytes, and the trial's
    ``pipeline.*`` parameters (what the stage was tuned with)."""
    rows = []
    for trial in complete_trials(study):
        tuned = {k: v for k, v in trial.params.items() if k.startswith(PIPELINE_PREFIX)}
        for member in TrialRecord.from_frozen(trial).pipeline:
            for stage in member.get("stages", []):
                before, after = stage.get("before", {}), stage.get("after", {})
                rows.append({
                    "trial": trial.number, "probe": member.get("probe"),
                    "stage": stage.get("stage"),
                    "accuracy_before": before.get("accuracy"),
                    "accuracy_after": after.get("accuracy"),
                    "nonzero_before": before.get("nonzero_params"),
                    "nonzero_after": after.get("nonzero_params"),
                    "bytes_after": after.get("bytes"),
                    "member_latency_ms": member.get("latency_ms"),
                    "member_bytes": member.get("bytes"), **tuned})
    return pd.DataFrame(rows)


def op_names(family: pd.DataFrame) -> list[str]:
    return [c.removeprefix("s_") for c in family.columns if c.startswith("s_")]


LATENCY = "latency_ms"  # the family rows' measured latency column (ms, batch 1)


@dataclass
class Front:
    """Family members (accuracy vs complexity) with the Pareto-optimal ones flagged."""

    members: pd.DataFrame  # accuracy, <complexity>, probe, is_seed_probe, on_pareto (+ trial)
    complexity: str  # "params", "cell_params" or "latency_ms"
    trial: int | None = None  # the trial of a single family; None for a union
    title: str = ""

    @property
    def front(self) -> pd.DataFrame:
        return self.members[self.members["on_pareto"]].sort_values(self.complexity)


def _flag_front(members: pd.DataFrame, complexity: str) -> pd.DataFrame:
    members = members.reset_index(drop=True).copy()
    members["on_pareto"] = False
    if not members.empty:
        idx = pareto_front(members["accuracy"].to_numpy(float),
                           members[complexity].to_numpy(float))
        members.loc[idx, "on_pareto"] = True
    members["is_seed_probe"] = members["probe"].isin(SEED_PROBES)
    return members


def _measured(family: pd.DataFrame, complexity: str) -> pd.DataFrame:
    """The members that have a value on the complexity axis (latency may be unmeasured)."""
    if complexity not in family:
        return family.iloc[0:0]
    values = pd.to_numeric(family[complexity], errors="coerce")
    return family.assign(**{complexity: values})[values.notna()]


def best_family_front(study: optuna.Study, complexity: str = "params") -> Front | None:
    """The best trial's family: accuracy vs ``complexity`` (default the thesis's x axis, total
    parameters; ``LATENCY`` for the measured latency), Pareto front and probes A-D flagged.
    None when the study has no family data (synthetic studies) or no member has a value on
    the axis (latency not measured)."""
    trial = best_trial(study)
    if trial is None or not TrialRecord.from_frozen(trial).family:
        return None
    members = _measured(family_frame(trial), complexity)
    if members.empty:
        return None
    members = _flag_front(members, complexity)
    members["trial"] = trial.number
    return Front(members, complexity, trial=trial.number,
                 title=f"best trial {trial.number}")


def union_front(study: optuna.Study, complexity: str = "params") -> Front | None:
    """All complete trials' family members pooled, with the pooled Pareto front flagged."""
    frames = []
    for t in complete_trials(study):
        family = _measured(family_frame(t), complexity)
        if not family.empty:
            frames.append(family.assign(trial=t.number))
    if not frames:
        return None
    members = _flag_front(pd.concat(frames, ignore_index=True), complexity)
    return Front(members, complexity, title="union over trials")


EXTENDED_AXES = (LATENCY, "bytes")  # the axes a compressed member is measured on


def extended_members(study: optuna.Study) -> pd.DataFrame:
    """A pipeline study's members before and after compression, one row each per complete
    trial and compressed probe: ``kind`` searched (the search's member: its accuracy,
    parameters, float32 bytes and latency measured beside the compressed one) or compressed
    (the deployed model: int8 kernels where they ran; with its speed-up over the searched
    member in %, the share of bytes saved in % and its accuracy minus the searched
    member's), with the trial's ``pipeline.*`` parameters. Empty for other studies and for
    trials recorded without the searched member."""
    rows = []
    for trial in complete_trials(study):
        tuned = {k: v for k, v in trial.params.items() if k.startswith(PIPELINE_PREFIX)}
        for member in TrialRecord.from_frozen(trial).pipeline:
            searched = member.get("searched")
            if not isinstance(searched, dict):
                continue
            stages = member.get("stages") or [{}]
            compressed = {"accuracy": member.get("accuracy",
                                                 stages[-1].get("after", {}).get("accuracy")),
                          "params": stages[-1].get("after", {}).get("nonzero_params"),
                          "bytes": member.get("bytes"), LATENCY: member.get("latency_ms")}
            searched = {"accuracy": searched.get("accuracy"), "params": searched.get("params"),
                        "bytes": searched.get("bytes"), LATENCY: searched.get("latency_ms")}
            gains = {"speedup_pct": _ratio_pct(searched[LATENCY], compressed[LATENCY]),
                     "bytes_saved_pct": -_ratio_pct(compressed["bytes"], searched["bytes"]),
                     "accuracy_change": _difference(compressed["accuracy"],
                                                    searched["accuracy"])}
            rows.append({"trial": trial.number, "probe": member.get("probe"),
                         "kind": "searched", **searched, "kernels": "float", **tuned})
            rows.append({"trial": trial.number, "probe": member.get("probe"),
                         "kind": "compressed", **compressed, **gains,
                         "kernels": member.get("kernels"), **tuned})
    return pd.DataFrame(rows)


def _difference(a: Any, b: Any) -> float:
    """a - b, NaN where either is missing."""
    try:
        return float(a) - float(b)
    except (TypeError, ValueError):
        return float("nan")


def _ratio_pct(numerator: Any, denominator: Any) -> float:
    """100 x (numerator / denominator - 1): a speed-up in % from (before, after) latency;
    NaN where either is missing or the denominator is not positive."""
    try:
        return 100.0 * (float(numerator) / float(denominator) - 1.0)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


@dataclass
class ExtendedFront:
    """Searched and compressed members on one axis: the front over both, the front of the
    searched members alone, and each one's hypervolume in the same box."""

    front: Front  # over searched and compressed members (column kind)
    searched_front: pd.DataFrame
    reference: tuple[float, float]
    hypervolume: float
    searched_hypervolume: float


def extended_front(members: pd.DataFrame, axis: str,
                   reference: tuple[float, float] | None = None) -> ExtendedFront | None:
    """The front a pipeline study reaches on ``axis`` (``latency_ms`` or ``bytes``) with
    its compressed members against the searched members' own (``members``: its
    ``extended_members``); ``reference``: the box (default: accuracy 0 and the largest
    value on the axis of any member)."""
    members = _measured(members, axis)
    if members.empty:
        return None
    members = members.assign(accuracy=pd.to_numeric(members["accuracy"], errors="coerce"))
    members = members[members["accuracy"].notna()]
    searched = _flag_front(members[members["kind"] == "searched"], axis)
    both = _flag_front(members, axis)
    if reference is None:
        reference = (0.0, float(members[axis].max()))

    def volume(frame: pd.DataFrame) -> float:
        return hypervolume_2d(frame["accuracy"].to_list(), frame[axis].to_list(), reference)

    return ExtendedFront(Front(both, axis, title="searched and compressed"),
                         searched[searched["on_pareto"]].sort_values(axis), reference,
                         volume(both), volume(searched))


def objective_kind(study: optuna.Study) -> str | None:
    """The objective kind of the saved study file (None if unknown)."""
    kind = stored_objective(study).get("kind")
    return str(kind) if kind else None


def simulated_clock(study: optuna.Study) -> bool:
    """Whether the study's trial seconds are a simulated run time (an objective with a
    clock, e.g. a table): its time axis is then their running sum, not the wall clock."""
    kind = objective_kind(study)
    return kind in OBJECTIVES and OBJECTIVES.get(kind).clock is not None


def objective_complexity(study: optuna.Study) -> str | None:
    """The complexity axis of the study's objective (``params``, ``cell_params`` or
    ``latency``): from the saved study file, else the best trial's family summary."""
    kind = objective_kind(study)
    if kind in OBJECTIVES and OBJECTIVES.get(kind).complexity_axis:
        return str(stored_objective(study).get("complexity", "params"))
    trial = best_trial(study)
    summary = TrialRecord.from_frozen(trial).family_summary if trial is not None else {}
    complexity = summary.get("complexity") if isinstance(summary, dict) else None
    return str(complexity) if complexity else None


def probe_table(trial: optuna.trial.FrozenTrial) -> pd.DataFrame:
    """Rows A-D: s, accuracy, params, cell_params and op counts (the thesis's Tables 1-3)."""
    family = family_frame(trial)
    if family.empty:
        return family
    rows = family[family["probe"].isin(SEED_PROBES)]
    ops = op_names(family)
    columns = (["probe"] + [f"s_{op}" for op in ops]
               + ["accuracy", "params", "cell_params", LATENCY]
               + [f"{kind}_{op}" for kind in ("n", "normal", "reduce") for op in ops])
    table = rows[[c for c in columns if c in rows]].reset_index(drop=True)
    if LATENCY in table and table[LATENCY].isna().all():
        table = table.drop(columns=LATENCY)  # not measured
    return table


def op_counts_by_probe(trial: optuna.trial.FrozenTrial) -> pd.DataFrame:
    """Index: probes A-D; columns: ops; values: the op's total count in the architecture."""
    family = family_frame(trial)
    if family.empty:
        return pd.DataFrame()
    rows = family[family["probe"].isin(SEED_PROBES)].set_index("probe")
    ops = op_names(family)
    counts = rows[[f"n_{op}" for op in ops]]
    counts.columns = ops
    return counts


def importance(study: optuna.Study) -> dict[str, float]:
    """fANOVA parameter importances of the (first) objective; {} with < 3 complete trials,
    fewer than 2 parameters, or on any error."""
    trials = complete_trials(study)
    if len(trials) < 3:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        target = (lambda t: t.values[0]) if is_multi_objective(study) else None
        result = optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                         target=target)
    except Exception:
        return {}
    return {k: float(v) for k, v in result.items()}


def parallel_frame(study: optuna.Study) -> pd.DataFrame:
    """Complete trials' params normalised to [0, 1] (log scale for log params, choice index
    for categoricals) plus the objective column ``value``; ``attrs["ticks"]`` labels each
    axis (a categorical's choices, a range's ends)."""
    trials = complete_trials(study)
    if not trials:
        return pd.DataFrame()
    names = list(dict.fromkeys(k for t in trials for k in t.params))
    columns: dict[str, list[float]] = {}
    ticks: dict[str, list[tuple[float, str]]] = {}  # (normalised position, label) per axis
    for name in names:
        dist = next(t.distributions[name] for t in trials if name in t.distributions)
        raw = [t.params.get(name) for t in trials]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            n = max(len(dist.choices) - 1, 1)
            vals = [dist.choices.index(v) / n if v in dist.choices else np.nan for v in raw]
            ticks[name] = [(i / n, str(c)) for i, c in enumerate(dist.choices)]
        else:
            ticks[name] = [(0.0, f"{dist.low:.3g}"), (1.0, f"{dist.high:.3g}")]
            lo, hi = float(dist.low), float(dist.high)
            if getattr(dist, "log", False):
                lo, hi = math.log(lo), math.log(hi)
                raw = [math.log(v) if v is not None else None for v in raw]
            span = hi - lo or 1.0
            vals = [(v - lo) / span if v is not None else np.nan for v in raw]
        columns[name] = vals
    frame = pd.DataFrame(columns, index=[t.number for t in trials])
    frame["value"] = [t.values[0] for t in trials]
    frame.attrs["ticks"] = ticks  # what each axis's 0..1 means: its choices or its range
    return frame


# ----------------------------------------------------------------------------- re-evaluation


def configuration_frame(study: optuna.Study) -> pd.DataFrame:
    """An intensified study's configurations (``hpo.intensify.summary_rows``): config,
    incumbent, mean, sd, seeds, trials and each parameter; empty for other studies."""
    from hpo.intensify import study_noise, summary_rows

    if study_noise(study) is None:
        return pd.DataFrame()
    rows = [{"config": r["config"], "incumbent": "*" if r["incumbent"] else "",
             "mean": r["mean"], "sd": r["sd"], "seeds": r["seeds"],
             "trials": " ".join(map(str, r["trials"])), **r["params"]}
            for r in summary_rows(study)]
    return pd.DataFrame(rows)


def reevaluation_frame(study: optuna.Study) -> pd.DataFrame:
    """hpo reevaluate's rows (best fresh-seed mean first) without the params column."""
    from hpo.reevaluate import summarise

    rows = summarise(study)
    return pd.DataFrame([{k: v for k, v in r.items() if k != "params"} for r in rows])


def reevaluation_findings(study: optuna.Study, frame: pd.DataFrame) -> list[str]:
    """The seed-robust best against the search's best, and the seed share of the spread."""
    from hpo.reevaluate import seed_share

    top = frame.iloc[0]
    lines = [f"Seed-robust best: trial {int(top['trial'])}, {top['fresh_mean']:.4g} ± "
             f"{top['fresh_sd']:.2g} over {int(top['seeds'])} fresh seeds (its search value: "
             f"{top['search_value']:.4g})."]
    searched = study.best_trial.number if not is_multi_objective(study) else None
    row = frame[frame["trial"] == searched]
    if searched is not None and len(row) and searched != int(top["trial"]):
        r = row.iloc[0]
        lines.append(f"The search's best, trial {searched} ({r['search_value']:.4g}), gives "
                     f"{r['fresh_mean']:.4g} ± {r['fresh_sd']:.2g} on fresh seeds.")
    share = seed_share(study)
    if share is not None:
        lines.append(f"Seeds: {share['seed_share']:.0%} of the variance among the "
                     f"{share['configurations']} re-evaluated configurations (sd within a "
                     f"configuration {share['within_sd']:.2g}, sd of their means "
                     f"{share['between_sd']:.2g}).")
    return lines


def wall_elapsed(study: optuna.Study,
                  trials: list[optuna.trial.FrozenTrial]) -> list[float]:
    """Per trial: the wall seconds the study had spent running trials when it ended (the
    union of its complete and pruned trials' intervals up to then), so that the hours
    between a run and its resumption do not count; NaN for a trial without an end."""
    spans = sorted((t.datetime_start, t.datetime_complete)
                   for t in study.get_trials(deepcopy=False)
                   if t.state in FINISHED
                   and t.datetime_start is not None and t.datetime_complete is not None)
    return [busy_seconds(spans, t.datetime_complete) if t.datetime_complete else np.nan
            for t in trials]


def busy_seconds(spans: list[tuple[Any, Any]], until: Any) -> float:
    """The length of the union of the sorted ``spans`` (start, end) clipped at ``until``."""
    total, covered_to = 0.0, None
    for start, end in spans:
        if start >= until:
            break
        end = min(end, until)
        if covered_to is not None and start < covered_to:
            start = covered_to
        if end > start:
            total += (end - start).total_seconds()
            covered_to = end if covered_to is None else max(covered_to, end)
    return total
