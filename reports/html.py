"""One self-contained HTML report (inline CSS, relative image links) for studies, groups and a
latency table."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from hpo import facts, groups
from hpo.announce import shown_path
from hpo.pipeline import PREFIX as PIPELINE_PREFIX
from hpo.records import REFERENCE_ATTR, SAMPLER_ATTR, TrialRecord, stored_objective
from hpo.storage import storage_label
from reports import fidelity, figures, group_frames, study_frames
from reports import latency as latency_data
from search_core.errors import ConfigError

CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em;
       color: #222; }
h1, h2, h3 { color: #134; } h2 { border-bottom: 2px solid #ccd; padding-bottom: .2em; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: .5em 0 1.2em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: right; }
td { max-width: 28em; overflow-wrap: break-word; }
th { background: #eef; white-space: nowrap; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
.meta { background: #f7f7fb; border: 1px solid #dde; padding: .6em 1em; }
.files { font-size: .85em; }
.caution { color: #8a4b00; font-size: .9em; }
.findings li { margin: .2em 0; }
"""
PREVIEW_ROWS = 10  # rows of a long table shown on the page; all of them are in its CSV
MIN_IMPORTANCE_TRIALS = 20  # fewer complete trials: importances are flagged as unreliable
MIN_REPEATS = 5  # fewer repeats per sampler: distributions are flagged as too thin
PROBES_NOTE = ("A-D are the seed's complexity vectors (A uniform; B penalises convolutions, "
               "C pooling, D identity); L0, L1, ... are the points of an even lattice on the "
               "simplex (probes.lattice_divisions)")


@dataclass
class Section:
    """What a report shows of one study, group or latency table. ``tables`` hold (title,
    frame, CSV path, rows shown: 0 links the CSV only)."""

    title: str
    kind: str  # "study" | "group" | "latency"
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[tuple[str, list[Path]]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, Path, int]] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)  # drawn after, one level deeper
    findings: list[str] = field(default_factory=list)  # sentences shown first, as a list
    cautions: list[str] = field(default_factory=list)  # what a sample is too small to show

    @property
    def files(self) -> list[Path]:
        own = [p for _, ps in self.figures for p in ps] + [t[2] for t in self.tables]
        return own + [p for child in self.children for p in child.files]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def _table(section: Section, out_dir: Path, stem: str, title: str, frame: pd.DataFrame,
           index: bool = False, shown: int = PREVIEW_ROWS) -> None:
    """Write ``frame`` as CSV; the page shows its first ``shown`` rows (0: a link only)."""
    if frame is None or frame.empty:
        return
    path = out_dir / f"{stem}.csv"
    frame.to_csv(path, index=index)
    section.tables.append((title, frame if index else frame.reset_index(drop=True), path,
                           shown))


def _storage_shown(url: str | None) -> str:
    label = storage_label(url)
    return label if "://" in label else shown_path(label)


def _figure(section: Section, title: str, paths: list[Path]) -> None:
    if paths:
        section.figures.append((title, paths))


def _study_source(attrs: dict[str, Any]) -> str:
    study_file = attrs.get("study_file") or {}
    name = study_file.get("name") if isinstance(study_file, dict) else None
    source = shown_path(attrs.get("study_source"))
    return " from ".join(str(x) for x in (name, source) if x) or "(unknown)"


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
    _figure(section, f"Family front of the best trial (probes A-D) and union front: "
            f"accuracy vs {what}",
            figures.family_front(front, union, out_dir, stem,
                                 f"{study.study_name}: accuracy vs {what}"))
    cols = ["probe", "accuracy", "params", "cell_params", study_frames.LATENCY, "trial"]
    if front is not None:
        _table(section, out_dir, f"{stem}-best", f"Best trial's Pareto front ({what})",
               front.front[[c for c in cols if c in front.front]])
    if union is not None:
        _table(section, out_dir, f"{stem}-union", f"Union Pareto front over trials ({what})",
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
        _table(section, out_dir, name, f"Trained vs {kind} ({what})", found.frame)
        _figure(section, f"Proxy fidelity, trial {found.trial}",
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
    _table(section, out_dir, f"{stem}-pipeline", "Compression stages: validation accuracy, "
           "non-zero parameters and bytes before and after, per trial and member", frame)
    for param in [c for c in frame.columns if c.startswith(PIPELINE_PREFIX)]:
        stage = param.split(".")[1]
        rows = frame[frame["stage"] == stage]
        _figure(section, f"Stage {stage}: accuracy and latency over {param}",
                figures.stage_effect(rows, param, out_dir, f"{stem}-{_slug(param)}",
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
        _figure(section, f"Extended front: accuracy vs {what}, searched and compressed "
                "members", figures.extended_front(extended, out_dir, name,
                                                  f"{study.study_name}: accuracy vs {what}"))
        cols = ["trial", "probe", "kind", "kernels", "accuracy", axis, "params", "speedup_pct",
                "bytes_saved_pct",
                *[c for c in front.columns if c.startswith(PIPELINE_PREFIX)]]
        _table(section, out_dir, name, f"Extended front ({what})",
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
    _table(section, out_dir, f"{stem}-reevaluated", "Top configurations re-evaluated with "
           "fresh seeds (validation value; test: the same objective on the test split)", frame)


def study_section(study: optuna.Study, out_dir: Path) -> Section:
    name = study.study_name
    stem = _slug(name)
    attrs = study.user_attrs
    frame = study_frames.study_frame(study)
    seeds = sorted({int(s) for s in frame.get("seed", pd.Series(dtype=float)).dropna()})
    section = Section(f"Study {name}", "study", {
        "study file": _study_source(attrs),
        "sampler": attrs.get(SAMPLER_ATTR, "(unknown)"),
        "trials": f"{int((frame['state'] == 'COMPLETE').sum())} complete of {len(frame)}",
        "seeds": ", ".join(map(str, seeds)) or "(none recorded)",
        "objective directions": ", ".join(d.name.lower() for d in study.directions),
        "objective": _objective(attrs, study_frames.objective_complexity(study)),
        "reference complexity": attrs.get(REFERENCE_ATTR, "-"),
    })
    _table(section, out_dir, f"{stem}-trials", "Trials", frame)
    best = facts.best_trial(study)
    if best is not None:
        section.meta["best trial"] = best_trial_text(study, best)
    _front_sections(section, study, out_dir, stem, "params")
    _front_sections(section, study, out_dir, stem, study_frames.LATENCY)
    if best is not None and TrialRecord.from_frozen(best).family:
        section.meta["probes"] = PROBES_NOTE
        _table(section, out_dir, f"{stem}-probes", f"Probes A-D of trial {best.number}",
               study_frames.probe_table(best))
        counts = study_frames.op_counts_by_probe(best)
        _figure(section, "Operation counts per probe",
                figures.op_counts(counts, out_dir, f"{stem}-ops",
                                  f"{name}: ops per probe (trial {best.number})"))
    _fidelity_sections(section, study, out_dir, stem)
    _pipeline_section(section, study, out_dir, stem)
    _reevaluation_section(section, study, out_dir, stem)
    _figure(section, "Optimisation history",
            figures.history(frame, out_dir, f"{stem}-history", f"{name}: optimisation history"))
    importances = study_frames.importance(study)
    complete = int((frame["state"] == "COMPLETE").sum())
    if importances and complete < MIN_IMPORTANCE_TRIALS:
        section.cautions.append(f"Importances come from {complete} complete trials: too few "
                                f"to rank parameters (a rough floor is "
                                f"{MIN_IMPORTANCE_TRIALS}); read them as a sketch.")
    _figure(section, "Hyperparameter importance (fANOVA)",
            figures.importance_bars(importances, out_dir, f"{stem}-importance",
                                    f"{name}: hyperparameter importance"))
    if importances:
        _table(section, out_dir, f"{stem}-importance", "Importances",
               pd.DataFrame({"param": list(importances), "importance": importances.values()}))
    _figure(section, "Parallel coordinates",
            figures.parallel_coordinates(study_frames.parallel_frame(study), out_dir,
                                         f"{stem}-parallel", f"{name}: parallel coordinates"))
    return section


def group_section(group: groups.Group, out_dir: Path) -> Section:
    name = group.name
    stem = "group-" + _slug(name)
    meta = group.meta
    sources = sorted({_study_source(a) for a in group.attrs})
    seeds = sorted({int(s) for s in meta["seed"].dropna()})
    budgets = sorted({int(b) for b in meta["budget"].dropna()})
    section = Section(f"Comparison group {name}", "group", {
        "study file": "; ".join(sources),
        "samplers": ", ".join(group.samplers),
        "studies": f"{len(group.studies)} (repeats: " + ", ".join(
            f"{k} {v}" for k, v in meta.groupby("sampler", sort=False).size().items()) + ")",
        "budgets": ", ".join(map(str, budgets)) or "-",
        "seeds": ", ".join(map(str, seeds)) or "-",
    })
    curves = group_frames.best_so_far(group)
    summary = group_frames.best_so_far_summary(curves)
    finals = group_frames.final_best(group)
    target = group_frames.default_target(group)
    section.meta["target"] = f"{target:.6g}"
    ttt = group_frames.trials_to_target(group, target)
    verdict = group_frames.paired_verdict(group, finals=finals)
    section.findings += verdict.sentences()
    worth = group_frames.incumbent_worth(group)
    if worth is not None:
        section.findings.append("Judged by what each study's incumbent is worth on fresh "
                                "seeds (the objective's mean at its best trial):")
        section.findings += group_frames.paired_verdict(group, finals=worth).sentences()
    repeats = int(meta.groupby("sampler").size().min()) if len(meta) else 0
    if repeats < MIN_REPEATS:
        section.cautions.append(f"{repeats} repeat(s) per sampler: the boxes, bands and "
                                f"tests below rest on too few runs to conclude (use at "
                                f"least {MIN_REPEATS}; see the verdict for how many would "
                                "separate the samplers).")
    distinct = group_frames.distinct_values(group)
    axes = group_frames.layout_axes(group)
    _figure(section, "Mean ranks of the final bests (critical-difference diagram)",
            figures.critical_difference(verdict, out_dir, f"{stem}-cd",
                                        f"{name}: mean ranks"))
    _figure(section, "Best so far vs trials (mean, 95 % bootstrap band over repeats)",
            figures.best_so_far_trials(summary, out_dir, f"{stem}-best-trials",
                                       f"{name}: best so far vs trials"))
    simulated = any(study_frames.simulated_clock(study) for study in group.studies)
    clock = "simulated time" if simulated else "wall time"
    _figure(section, f"Best so far vs {clock}",
            figures.best_so_far_time(curves, out_dir, f"{stem}-best-time",
                                     f"{name}: best so far vs {clock}", simulated))
    surfaces = group_frames.attainment(group)
    if not surfaces.empty:
        section.meta["score"] = ("hypervolume of each study's trial-level front (accuracy vs "
                                 "complexity) over its trials")
        _figure(section, "Empirical attainment surfaces of the trial-level fronts",
                figures.attainment(surfaces, out_dir, f"{stem}-attainment",
                                   f"{name}: attained accuracy vs complexity",
                                   study_frames.objective_complexity(group.studies[0])))
    _figure(section, "Final best per sampler",
            figures.final_best_distribution(finals, out_dir, f"{stem}-final",
                                            f"{name}: final best per sampler"))
    if axes is not None:
        section.meta["layout axes"] = f"{axes[0]} (most important), {axes[1]} (least)"
        _figure(section, "Layout of the trials on the most vs least important parameter",
                figures.layout(group_frames.layout_frame(group, axes), axes, distinct, out_dir,
                               f"{stem}-layout", f"{name}: {axes[0]} vs {axes[1]}"))
    if worth is not None:
        _figure(section, "Incumbent's worth on fresh seeds per sampler",
                figures.final_best_distribution(worth, out_dir, f"{stem}-worth",
                                                f"{name}: incumbent's worth",
                                                "incumbent's mean over seeds"))
    _table(section, out_dir, f"{stem}-final", "Final best per repeat", finals)
    if worth is not None:
        _table(section, out_dir, f"{stem}-worth", "Incumbent per repeat: its mean over seeds "
               "(best), its noisy value, and the best mean among the trials (visited)", worth)
    _table(section, out_dir, f"{stem}-trials-to-target", f"Trials to target {target:.6g}", ttt)
    _table(section, out_dir, f"{stem}-pairs", "Pairwise Wilcoxon signed-rank tests (paired by "
           "repeat, Holm-adjusted) and effect sizes", verdict.pairs_frame())
    _table(section, out_dir, f"{stem}-ranks", "Mean ranks of the final bests",
           verdict.ranks_frame())
    _table(section, out_dir, f"{stem}-distinct", "Distinct values tried per parameter "
           "(mean over repeats)", distinct, index=True)
    _table(section, out_dir, f"{stem}-best-so-far-summary", "Best so far per trial (summary)",
           summary, shown=0)
    _table(section, out_dir, f"{stem}-best-so-far", "Best so far (all repeats)", curves,
           shown=0)
    return section


# ----------------------------------------------------------------------------- latency

STAT_LABELS = {"n": "networks (count)", "spearman": "rank correlation (Spearman)",
               "within_10pct": "share within +-10 % (fraction)",
               "median_abs_error_pct": "median |error| (%)", "mean_error_pct": "mean error (%)"}


def _space_short(signature: str) -> str:
    """'input 1x28x28, 16 channels' from a layout signature (the whole of it if unknown)."""
    fields = dict(part.split("=", 1) for part in signature.split() if "=" in part)
    if "input" in fields and "channels" in fields:
        return f"input {fields['input']}, {fields['channels']} channels"
    return signature


def _validation_section(v: latency_data.LatencyValidation, i: int, out_dir: Path) -> Section:
    stem = f"latency-validation-{i}-batch{v.batch}"
    section = Section(f"Validation {i}: batch {v.batch}", "latency", {
        "search space": v.signature,
        "held-out networks": f"{len(v.points)} (correction fitted on {v.fit} others)",
    })
    _figure(section, "Predicted vs measured latency of the held-out networks",
            figures.latency_scatter(v, out_dir, stem,
                                    f"{_space_short(v.signature)}, batch {v.batch}: "
                                    "predicted vs measured"))
    _table(section, out_dir, f"{stem}-stats", "Prediction accuracy: naive sum vs corrected",
           v.stats.rename(index=STAT_LABELS), index=True)
    _table(section, out_dir, f"{stem}-correction",
           "Fitted correction: measured ~ intercept + fixed parts + sum of scale x op parts",
           v.correction)
    _table(section, out_dir, f"{stem}-points", "Held-out networks (ms)", v.points)
    return section


def latency_section(report: latency_data.LatencyReport, out_dir: Path) -> Section:
    """The latency model: per validation the scatter, stats and correction; the machine
    fingerprint; every measured part."""
    fp = dict(zip(report.fingerprint["field"], report.fingerprint["value"]))
    settings = ", ".join(f"{k} {v}" for k, v in report.settings.items()) or "-"
    batches = sorted({int(b) for b in report.entries["batch"]})
    section = Section("Latency model", "latency", {
        "latency table": shown_path(str(report.path)),
        "device": f"{fp.get('device', '?')} ({fp.get('device_name', '?')})",
        "timing settings": settings,
        "parts": f"{len(report.entries)} entries at batch sizes {batches}",
        "validations": len(report.validations),
    })
    _table(section, out_dir, "latency-fingerprint", "Machine the table was measured on",
           report.fingerprint)
    section.children = [_validation_section(v, i, out_dir)
                        for i, v in enumerate(report.validations, start=1)]
    parts = Section("Measured parts", "latency")
    _table(parts, out_dir, "latency-parts", "Part latencies (ms, median and quartiles)",
           report.entries)
    section.children.append(parts)
    return section


# ----------------------------------------------------------------------------- page

SUMMARY_KEYS = ("study file", "sampler", "samplers", "seeds", "budgets", "objective",
                "latency table", "device")


def _render_section(s: Section, level: int) -> list[str]:
    esc = html.escape
    sub = min(level + 1, 6)
    parts = [f"<h{level}>{esc(s.title)}</h{level}>"]
    if s.meta:
        parts.append("<div class='table-wrap'><table>")
        parts += [f"<tr><th>{esc(str(k))}</th><td style='text-align:left'>{esc(str(v))}</td>"
                  "</tr>" for k, v in s.meta.items()]
        parts.append("</table></div>")
    if s.findings:
        parts.append("<ul class='findings'>")
        parts += [f"<li>{esc(line)}</li>" for line in s.findings]
        parts.append("</ul>")
    parts += [f"<p class='caution'>{esc(line)}</p>" for line in s.cautions]
    for title, paths in s.figures:
        png = next((p for p in paths if p.suffix == ".png"), paths[0])
        links = " ".join(f"<a href='{esc(p.name)}'>{esc(p.suffix[1:])}</a>" for p in paths)
        parts += [f"<h{sub}>{esc(title)}</h{sub}>",
                  f"<img src='{esc(png.name)}' alt='{esc(title)}'>",
                  f"<div class='files'>{links}</div>"]
    for title, frame, path, rows in s.tables:
        parts += render_table(title, frame, path, rows, sub)
    for child in s.children:
        parts += _render_section(child, sub)
    return parts


def render_table(title: str, frame: pd.DataFrame, path: Path, rows: int,
                  level: int) -> list[str]:
    """A table's heading, its first ``rows`` rows without all-empty columns (inside a
    scrolling box), and the link to its CSV with every row and column."""
    esc = html.escape
    link = f"<a href='{esc(path.name)}'>csv</a>"
    if rows == 0:
        return [f"<h{level}>{esc(title)}</h{level}>",
                f"<div class='files'>{len(frame)} rows: {link}</div>"]
    shown = frame.head(rows).dropna(axis="columns", how="all")
    more = f" (first {rows} of {len(frame)} rows; all in the csv)" if len(frame) > rows else ""
    table = shown.to_html(index=shown.index.name is not None, float_format="%.4g", border=0,
                          na_rep="–")
    return [f"<h{level}>{esc(title)}{more}</h{level}>", f"<div class='table-wrap'>{table}</div>",
            f"<div class='files'>{link}</div>"]


def best_trial_text(study: optuna.Study, best: optuna.trial.FrozenTrial) -> str:
    """"12: hypervolume 0.7954; kappa=1.23, t_end=0.21" (no raw dict)."""
    from hpo.announce import number, params_text
    from hpo.records import metric_names

    values = "; ".join(f"{name} {number(v)}" for name, v in zip(metric_names(study),
                                                                  best.values))
    return f"{best.number}: {values}; {params_text(best.params)}"


def _render(sections: list[Section], storage_url: str | None, out_dir: Path) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>nas-hpo report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>nas-hpo report</h1>", "<div class='meta'><ul>"]
    if any(s.kind != "latency" for s in sections):
        parts.append(f"<li>storage: {esc(_storage_shown(storage_url))}</li>")
    for s in sections:
        items = ", ".join(f"{k}: {v}" for k, v in s.meta.items() if k in SUMMARY_KEYS)
        parts.append(f"<li><b>{esc(s.title)}</b> — {esc(items)}</li>")
    parts.append("</ul></div>")
    for s in sections:
        parts += _render_section(s, 2)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(storage_url: str | None, names: list[str], out_dir: str | Path,
                 latency: str | Path | None = None) -> Path:
    """Figures, CSV tables and ``out_dir/index.html`` for each study or comparison group and,
    with ``latency``, the latency model of that table (``hpo profile --out FILE``)."""
    if not names and latency is None:
        raise ConfigError("report: give study/group names, --latency TABLE.json, or both")
    table = latency_data.load_latency(latency) if latency is not None else None
    sections = _storage_sections(storage_url, names, Path(out_dir)) if names else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if table is not None:
        sections.append(latency_section(table, out))
    index = out / "index.html"
    index.write_text(_render(sections, storage_url, out), encoding="utf-8")
    return index


def _storage_sections(storage_url: str | None, names: list[str], out: Path) -> list[Section]:
    from hpo.storage import open_storage

    storage = open_storage(storage_url, must_exist=True)
    studies = [s.study_name for s in optuna.get_all_study_summaries(storage,
                                                                     include_best_trial=False)]
    group_list = groups.group_names(storage)
    unknown = [n for n in names if n not in studies and n not in group_list]
    if unknown:
        raise ConfigError(f"report: unknown study or group {', '.join(unknown)}; available "
                          f"studies: {', '.join(studies) or '(none)'}; groups: "
                          f"{', '.join(group_list) or '(none)'}")
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in names:
        if name in studies:
            sections.append(study_section(optuna.load_study(study_name=name, storage=storage),
                                          out))
        else:
            group = groups.group_studies(storage, name)
            assert group is not None
            sections.append(group_section(group, out))
    return sections


def report_files(index: Path) -> list[Path]:
    """The local files an index.html references (src= and href=)."""
    text = index.read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", text)
    return [index.parent / html.unescape(r) for r in refs]
