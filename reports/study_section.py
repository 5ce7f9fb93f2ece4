"""The report's section of one study: its trials, fronts (parameters, latency, the
extended front of compressed members), probes, trained vs proxy accuracy, compression
stages, re-evaluations, history, importances and parallel coordinates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

import hpo.facts as facts
from hpo.pipeline import PREFIX as PIPELINE_PREFIX
from hpo.records import REFERENCE_ATTR, SAMPLER_ATTR, TrialRecord, stored_objective
from reports import fidelity, figures, study_frames
from reports.page import Section, add_figure, add_table, slug, study_source

MIN_IMPORTANCE_TRIALS = 20  # fewer complete trials: importances are flagged as unreliable
PROBES_NOTE = ("A-D are the thesis's complexity vectors (A uniform; B penalises convolutions, "
               "C pooling, D identity); L0, L1, ... are the points of an even lattice on the "
               "simplex (probes.lattice_divisions)")


def _objective(attrs: dict[str, Any], complexity: str | None) -> str:
    study_file = attrs.get("study_file")
    objective = study_file.get("objective") if isinstance(study_file, dict) else None
    kind = objective.get("kind") if isinstance(objective, dict) else None
    if complexity == "latency":
        return (f"{kind or 'hypervolume'} over accuracy vs latency (ms, batch 1, measured on "
                "the target device)")
    if complexity:
        return f"{kind or 'hypervolume'} over accuracy vs {complexity}"
    return str(kind or "-")


def _front_sections(section: Section, study: optuna.Study, out_dir: Path, stem: str,
                    complexity: str) -> None:
    """The best trial's front, the union front, their figure and CSV, on one x axis."""
    latency = complexity == study_frames.LATENCY
    front = study_frames.best_family_front(study, complexity)
    union = study_frames.union_front(study, complexity)
    if latency and front is None:
        return  # the best trial's latency was not measured
    what = "latency" if latency else "parameters"
    stem = f"{stem}-latency-front" if latency else f"{stem}-front"
    add_figure(section, f"Family front of the best trial (probes A-D) and union front: "
            f"accuracy vs {what}",
            figures.family_front(front, union, out_dir, stem,
                                 f"{study.study_name}: accuracy vs {what}"))
    cols = ["probe", "accuracy", "params", "cell_params", study_frames.LATENCY, "trial"]
    if front is not None:
        add_table(section, out_dir, f"{stem}-best", f"Best trial's Pareto front ({what})",
               front.front[[c for c in cols if c in front.front]])
    if union is not None:
        add_table(section, out_dir, f"{stem}-union", f"Union Pareto front over trials ({what})",
               union.front[[c for c in ["trial", *cols[:-1]] if c in union.front]])


def _fidelity_sections(section: Section, study: optuna.Study, out_dir: Path,
                       stem: str) -> None:
    """Proxy vs trained accuracy for each trial ``hpo train`` trained."""
    for found in fidelity.proxy_fidelity(study):
        name = f"{stem}-trained-{found.trial}"
        recipe = found.recipe
        kind = f"{found.accuracy_kind} accuracy"  # proxy or finetune (probes.accuracy)
        what = (f"trial {found.trial}: {recipe.get('epochs')} epochs from "
                f"{recipe.get('init')}; test accuracy mean ± sd over seeds")
        add_table(section, out_dir, name, f"Trained vs {kind} ({what})", found.frame)
        add_figure(section, f"Proxy fidelity, trial {found.trial}",
                figures.proxy_fidelity(found, out_dir, name,
                                       f"{study.study_name}: {kind} vs trained ({what})"))


def _pipeline_section(section: Section, study: optuna.Study, out_dir: Path,
                      stem: str) -> None:
    """Each compression stage's effect: a table per trial, member and stage, and for each
    tuned pipeline setting accuracy and latency over it."""
    frame = study_frames.pipeline_frame(study)
    if frame.empty:
        return
    _extended_front_sections(section, study, out_dir, stem)
    add_table(section, out_dir, f"{stem}-pipeline", "Compression stages: validation accuracy, "
           "non-zero parameters and bytes before and after, per trial and member", frame)
    for param in [c for c in frame.columns if c.startswith(PIPELINE_PREFIX)]:
        stage = param.split(".")[1]
        rows = frame[frame["stage"] == stage]
        add_figure(section, f"Stage {stage}: accuracy and latency over {param}",
                figures.stage_effect(rows, param, out_dir, f"{stem}-{slug(param)}",
                                     f"{study.study_name}: {stage} over {param}"))


EXTENDED_AXIS_NAMES = {study_frames.LATENCY: "latency", "bytes": "stored bytes"}


def _extended_front_sections(section: Section, study: optuna.Study, out_dir: Path,
                             stem: str) -> None:
    """A pipeline study's extended front on latency and on bytes: what compression adds to
    the searched members' front, with both hypervolumes in one box."""
    members = study_frames.extended_members(study)
    for axis in study_frames.EXTENDED_AXES:
        extended = study_frames.extended_front(members, axis, _extended_reference(study, axis))
        if extended is None:
            continue
        what = EXTENDED_AXIS_NAMES[axis]
        front = extended.front.front
        section.findings.append(
            f"Compression extends the front on {what}: hypervolume "
            f"{extended.searched_hypervolume:.3f} over the searched members, "
            f"{extended.hypervolume:.3f} with the compressed ones (box: accuracy "
            f"{extended.reference[0]:g}, {what} {extended.reference[1]:g}); "
            f"{int((front['kind'] == 'compressed').sum())} of the {len(front)} points on the "
            "extended front are compressed (searched members: their accuracy on the "
            "supernet's weights; compressed: after every stage, fine-tuning included).")
        name = f"{stem}-extended-front-{'latency' if axis == study_frames.LATENCY else 'bytes'}"
        add_figure(section, f"Extended front: accuracy vs {what}, searched and compressed "
                "members", figures.extended_front(extended, out_dir, name,
                                                  f"{study.study_name}: accuracy vs {what}"))
        cols = ["trial", "probe", "kind", "kernels", "accuracy", axis, "params", "speedup_pct",
                "bytes_saved_pct",
                *[c for c in front.columns if c.startswith(PIPELINE_PREFIX)]]
        add_table(section, out_dir, name, f"Extended front ({what})",
               front[[c for c in cols if c in front]])
    if not members.empty:
        section.findings.append(_gains_sentence(members))


def _gains_sentence(members: pd.DataFrame) -> str:
    """Median speed-up, bytes saved and accuracy change of the compressed members."""
    compressed = members[members["kind"] == "compressed"]
    return (f"Over {len(compressed)} compressed members: median speed-up "
            f"{compressed['speedup_pct'].median():+.0f} % (batch 1, measured), median bytes "
            f"saved {compressed['bytes_saved_pct'].median():.0f} %, accuracy change "
            f"{compressed['accuracy_change'].median():+.3f} (median; compressed minus "
            "searched).")


def _extended_reference(study: optuna.Study, axis: str) -> tuple[float, float] | None:
    """The study's own hypervolume box where ``axis`` is its objective's complexity axis."""
    if {"latency": study_frames.LATENCY, "bytes": "bytes"}.get(
            study_frames.objective_complexity(study) or "") != axis:
        return None
    reference = study.user_attrs.get(REFERENCE_ATTR)
    accuracy = stored_objective(study).get("reference_accuracy", 0.0) or 0.0
    return (float(accuracy), float(reference)) if reference else None


def _reevaluation_section(section: Section, study: optuna.Study, out_dir: Path,
                          stem: str) -> None:
    """hpo reevaluate's results: the seed-robust best and how much of the spread is seeds."""
    frame = study_frames.reevaluation_frame(study)
    if frame.empty:
        return
    section.findings += study_frames.reevaluation_findings(study, frame)
    add_table(section, out_dir, f"{stem}-reevaluated", "Top configurations re-evaluated with "
           "fresh seeds (validation value; test: the same objective on the test split)", frame)


def _configuration_section(section: Section, study: optuna.Study, out_dir: Path,
                           stem: str) -> None:
    """An intensified study's configurations: mean ± sd over their seeds, the incumbent."""
    frame = study_frames.configuration_frame(study)
    if frame.empty:
        return
    top = frame.iloc[0]
    section.findings.append(
        f"Incumbent (intensification): configuration {int(top['config'])}, "
        f"{top['mean']:.4g} ± {top['sd']:.2g} over {int(top['seeds'])} seeds; "
        f"{int((frame['seeds'] > 1).sum())} of {len(frame)} configurations got more than "
        "one seed.")
    add_table(section, out_dir, f"{stem}-configurations", "Configurations by mean over "
              "seeds (intensification; the incumbent first)", frame)


@dataclass(frozen=True)
class ClosingData:
    """What the study's closing figures are drawn from, computed once."""

    study: optuna.Study
    frame: pd.DataFrame  # study_frames.study_frame
    importances: dict[str, float]  # study_frames.importance

    @property
    def complete(self) -> int:
        return int((self.frame["state"] == "COMPLETE").sum())


@dataclass(frozen=True)
class ClosingFigure:
    """A figure closing the study's section: its heading, the file stem's suffix, the plot's
    title after "{study name}: ", and how it is drawn (data, folder, stem, plot title)."""

    title: str
    suffix: str
    plot_title: str
    draw: Callable[[ClosingData, Path, str, str], list[Path]]


CLOSING_FIGURES = (
    ClosingFigure("Optimisation history", "history", "optimisation history",
                  lambda d, out, stem, title: figures.history(d.frame, out, stem, title)),
    ClosingFigure("Hyperparameter importance (fANOVA)", "importance",
                  "hyperparameter importance",
                  lambda d, out, stem, title: figures.importance_bars(d.importances, out, stem,
                                                                      title)),
    ClosingFigure("Parallel coordinates", "parallel", "parallel coordinates",
                  lambda d, out, stem, title: figures.parallel_coordinates(
                      study_frames.parallel_frame(d.study), out, stem, title)),
)


def study_section(study: optuna.Study, out_dir: Path) -> Section:
    stem = slug(study.study_name)
    frame = study_frames.study_frame(study)
    section = Section(f"Study {study.study_name}", "study", _study_meta(study, frame))
    add_table(section, out_dir, f"{stem}-trials", "Trials",
              study_frames.trials_table(study, frame), csv_only=study_frames.TRIALS_CSV_ONLY)
    best = facts.best_trial(study)
    if best is not None:
        section.meta["best trial"] = best_trial_text(study, best)
    _front_sections(section, study, out_dir, stem, "params")
    _front_sections(section, study, out_dir, stem, study_frames.LATENCY)
    if best is not None and TrialRecord.from_frozen(best).family:
        _probe_sections(section, study, best, out_dir, stem)
    _fidelity_sections(section, study, out_dir, stem)
    _pipeline_section(section, study, out_dir, stem)
    _reevaluation_section(section, study, out_dir, stem)
    _configuration_section(section, study, out_dir, stem)
    _closing_sections(section, ClosingData(study, frame, study_frames.importance(study)),
                      out_dir, stem)
    return section


def _study_meta(study: optuna.Study, frame: pd.DataFrame) -> dict[str, Any]:
    attrs = study.user_attrs
    seeds = sorted({int(s) for s in frame.get("seed", pd.Series(dtype=float)).dropna()})
    return {
        "study file": study_source(attrs),
        "sampler": attrs.get(SAMPLER_ATTR, "(unknown)"),
        "trials": f"{int((frame['state'] == 'COMPLETE').sum())} complete of {len(frame)}",
        "seeds": ", ".join(map(str, seeds)) or "(none recorded)",
        "objective directions": ", ".join(d.name.lower() for d in study.directions),
        "objective": _objective(attrs, study_frames.objective_complexity(study)),
        "reference complexity": _number(attrs.get(REFERENCE_ATTR)),
    }


def _number(value: Any) -> str:
    """61010.0 -> "61,010"; 2.734512 -> "2.735"; absent -> "-"."""
    if not isinstance(value, int | float):
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _probe_sections(section: Section, study: optuna.Study, best: optuna.trial.FrozenTrial,
                    out_dir: Path, stem: str) -> None:
    """The best trial's probes A-D: their table and operation counts."""
    section.meta["probes"] = PROBES_NOTE
    add_table(section, out_dir, f"{stem}-probes", f"Probes A-D of trial {best.number}",
              study_frames.probe_table(best))
    counts = study_frames.op_counts_by_probe(best)
    add_figure(section, "Operation counts per probe",
               figures.op_counts(counts, out_dir, f"{stem}-ops",
                                 f"{study.study_name}: ops per probe (trial {best.number})"))


def _closing_sections(section: Section, data: ClosingData, out_dir: Path, stem: str) -> None:
    """History, importances (flagged when too few trials rank them) and parallel
    coordinates."""
    if data.importances and data.complete < MIN_IMPORTANCE_TRIALS:
        section.cautions.append(f"Importances come from {data.complete} complete trials: too "
                                f"few to rank parameters (a rough floor is "
                                f"{MIN_IMPORTANCE_TRIALS}); read them as a sketch.")
    for row in CLOSING_FIGURES:
        add_figure(section, row.title,
                   row.draw(data, out_dir, f"{stem}-{row.suffix}",
                            f"{data.study.study_name}: {row.plot_title}"))
    if data.importances:
        add_table(section, out_dir, f"{stem}-importance", "Importances",
                  pd.DataFrame({"param": list(data.importances),
                                "importance": data.importances.values()}))


def best_trial_text(study: optuna.Study, best: optuna.trial.FrozenTrial) -> str:
    """"12: hypervolume 0.7954; kappa=1.23, t_end=0.21" (no raw dict)."""
    from hpo.announce import number, params_text
    from hpo.records import metric_names

    values = "; ".join(f"{name} {number(v)}" for name, v in zip(metric_names(study),
                                                                  best.values))
    return f"{best.number}: {values}; {params_text(best.params)}"


