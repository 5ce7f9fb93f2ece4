"""The report's section of a comparison group: the verdict's sentences first, then its
figures and tables, each declared once below as a row (``GROUP_FIGURES``, ``GROUP_TABLES``)
over the group's computed frames (``GroupFrames``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.groups import Group
from reports import figures, group_frames, study_frames
from reports.page import PREVIEW_ROWS, Section, add_figure, add_table, slug, study_source
from reports.stats import Verdict

MIN_REPEATS = 5  # fewer repeats per sampler: distributions are flagged as too thin


@dataclass(frozen=True)
class GroupFrames:
    """Everything the group's section shows, computed once."""

    group: Group
    curves: pd.DataFrame  # best so far per sampler, repeat and trial
    summary: pd.DataFrame  # its mean and bootstrap band per sampler and trial
    finals: pd.DataFrame  # each study's final best
    worth: pd.DataFrame | None  # what each incumbent is worth on fresh seeds, if known
    target: float
    to_target: pd.DataFrame
    verdict: Verdict
    distinct: pd.DataFrame
    axes: tuple[str, str] | None  # the layout's most and least important parameters
    surfaces: pd.DataFrame  # attainment surfaces (an accuracy/complexity group)
    simulated: bool  # a table objective's simulated clock, not wall time

    @classmethod
    def of(cls, group: Group) -> GroupFrames:
        curves = group_frames.best_so_far(group)
        finals = group_frames.final_best(group)
        target = group_frames.default_target(group)
        return cls(
            group=group, curves=curves, summary=group_frames.best_so_far_summary(curves),
            finals=finals, worth=group_frames.incumbent_worth(group), target=target,
            to_target=group_frames.trials_to_target(group, target),
            verdict=group_frames.paired_verdict(group, finals=finals),
            distinct=group_frames.distinct_values(group), axes=group_frames.layout_axes(group),
            surfaces=group_frames.attainment(group),
            simulated=any(study_frames.simulated_clock(s) for s in group.studies))

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def clock(self) -> str:
        return "simulated time" if self.simulated else "wall time"


def _always(frames: GroupFrames) -> bool:
    return True


@dataclass(frozen=True)
class FigureRow:
    """A figure of the section: its heading (``{clock}`` and ``{target}`` filled in), the
    file stem's suffix, how it is drawn (frames, folder, stem, plot title), and when."""

    title: str
    suffix: str
    draw: Callable[[GroupFrames, Path, str, str], list[Path]]
    plot_title: str  # "{name}: ..." (filled in like the heading)
    when: Callable[[GroupFrames], bool] = _always


@dataclass(frozen=True)
class TableRow:
    """A table of the section: its heading, the CSV's suffix, its frame, and how it shows."""

    title: str
    suffix: str
    frame: Callable[[GroupFrames], Any]
    index: bool = False
    shown: int = PREVIEW_ROWS
    when: Callable[[GroupFrames], bool] = _always


def _has_worth(frames: GroupFrames) -> bool:
    return frames.worth is not None


GROUP_FIGURES = (
    FigureRow("Mean ranks of the final bests (critical-difference diagram)", "cd",
              lambda f, out, stem, title: figures.critical_difference(f.verdict, out, stem,
                                                                      title),
              "{name}: mean ranks"),
    FigureRow("Best so far vs trials (mean, 95 % bootstrap band over repeats)", "best-trials",
              lambda f, out, stem, title: figures.best_so_far_trials(f.summary, out, stem,
                                                                     title),
              "{name}: best so far vs trials"),
    FigureRow("Best so far vs {clock}", "best-time",
              lambda f, out, stem, title: figures.best_so_far_time(f.curves, out, stem, title,
                                                                   f.simulated),
              "{name}: best so far vs {clock}"),
    FigureRow("Empirical attainment surfaces of the trial-level fronts", "attainment",
              lambda f, out, stem, title: figures.attainment(
                  f.surfaces, out, stem, title,
                  study_frames.objective_complexity(f.group.studies[0])),
              "{name}: attained accuracy vs complexity", lambda f: not f.surfaces.empty),
    FigureRow("Final best per sampler", "final",
              lambda f, out, stem, title: figures.final_best_distribution(f.finals, out, stem,
                                                                          title),
              "{name}: final best per sampler"),
    FigureRow("Layout of the trials on the most vs least important parameter", "layout",
              lambda f, out, stem, title: figures.layout(
                  group_frames.layout_frame(f.group, f.axes), f.axes, f.distinct, out, stem,
                  title),
              "{name}: {axes}", lambda f: f.axes is not None),
    FigureRow("Incumbent's worth on fresh seeds per sampler", "worth",
              lambda f, out, stem, title: figures.final_best_distribution(
                  f.worth, out, stem, title, "incumbent's mean over seeds"),
              "{name}: incumbent's worth", _has_worth),
)

GROUP_TABLES = (
    TableRow("Final best per repeat", "final", lambda f: f.finals),
    TableRow("Incumbent per repeat: its mean over seeds (best), its noisy value, and the best "
             "mean among the trials (visited)", "worth", lambda f: f.worth, when=_has_worth),
    TableRow("Trials to target {target}", "trials-to-target", lambda f: f.to_target),
    TableRow("Pairwise Wilcoxon signed-rank tests (paired by repeat, Holm-adjusted) and "
             "effect sizes", "pairs", lambda f: f.verdict.pairs_frame()),
    TableRow("Mean ranks of the final bests", "ranks", lambda f: f.verdict.ranks_frame()),
    TableRow("Distinct values tried per parameter (mean over repeats)", "distinct",
             lambda f: f.distinct, index=True),
    TableRow("Best so far per trial (summary)", "best-so-far-summary", lambda f: f.summary,
             shown=0),
    TableRow("Best so far (all repeats)", "best-so-far", lambda f: f.curves, shown=0),
)


def _words(frames: GroupFrames) -> dict[str, str]:
    axes = frames.axes
    return {"name": frames.name, "clock": frames.clock, "target": f"{frames.target:.6g}",
            "axes": f"{axes[0]} vs {axes[1]}" if axes else ""}


def group_section(group: Group, out_dir: Path) -> Section:
    frames = GroupFrames.of(group)
    stem, words = "group-" + slug(group.name), _words(frames)
    section = Section(f"Comparison group {group.name}", "group", _group_meta(frames))
    section.findings += _findings(frames)
    section.cautions += _cautions(group)
    for row in GROUP_FIGURES:
        if row.when(frames):
            add_figure(section, row.title.format(**words),
                       row.draw(frames, out_dir, f"{stem}-{row.suffix}",
                                row.plot_title.format(**words)))
    for table in GROUP_TABLES:
        if table.when(frames):
            add_table(section, out_dir, f"{stem}-{table.suffix}", table.title.format(**words),
                      table.frame(frames), index=table.index, shown=table.shown)
    return section


def _group_meta(frames: GroupFrames) -> dict[str, Any]:
    group, meta = frames.group, frames.group.meta
    seeds = sorted({int(s) for s in meta["seed"].dropna()})
    budgets = sorted({int(b) for b in meta["budget"].dropna()})
    found: dict[str, Any] = {
        "study file": "; ".join(sorted({study_source(a) for a in group.attrs})),
        "samplers": ", ".join(group.samplers),
        "studies": f"{len(group.studies)} (repeats: " + ", ".join(
            f"{k} {v}" for k, v in meta.groupby("sampler", sort=False).size().items()) + ")",
        "budgets": ", ".join(map(str, budgets)) or "-",
        "seeds": ", ".join(map(str, seeds)) or "-",
        "target": f"{frames.target:.6g}",
    }
    if not frames.surfaces.empty:
        found["score"] = ("hypervolume of each study's trial-level front (accuracy vs "
                          "complexity) over its trials")
    if frames.axes is not None:
        found["layout axes"] = f"{frames.axes[0]} (most important), {frames.axes[1]} (least)"
    return found


def _findings(frames: GroupFrames) -> list[str]:
    """The paired verdict's sentences, and the verdict on the incumbents' worth."""
    lines = frames.verdict.sentences()
    lines.append(_target_sentence(frames))
    if frames.worth is not None:
        lines.append("Judged by what each study's incumbent is worth on fresh seeds (the "
                     "objective's mean at its best trial):")
        lines += group_frames.paired_verdict(frames.group, finals=frames.worth).sentences()
    return lines


def _target_sentence(frames: GroupFrames) -> str:
    """Who reached the target, in how many trials: "Target 0.93: tpe reached it in 3 of 5
    repeats (median 12 trials); random in 0 of 5." (The table alone was empty cells when no
    repeat reached it.)"""
    parts = []
    for sampler, rows in frames.to_target.groupby("sampler", sort=False):
        reached = rows["trials"].dropna()
        median = f" (median {reached.median():.0f} trials)" if len(reached) else ""
        verb = " reached it" if not parts else ""
        unit = " repeats" if not parts else ""
        parts.append(f"{sampler}{verb} in {len(reached)} of {len(rows)}{unit}{median}")
    return f"Target {frames.target:.6g}: " + ", ".join(parts) + "."


def _cautions(group: Group) -> list[str]:
    meta = group.meta
    repeats = int(meta.groupby("sampler").size().min()) if len(meta) else 0
    if repeats >= MIN_REPEATS:
        return []
    return [f"{repeats} repeat(s) per sampler: the boxes, bands and tests below rest on too "
            f"few runs to conclude (use at least {MIN_REPEATS}; see the verdict for how many "
            "would separate the samplers)."]
