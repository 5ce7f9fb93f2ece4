"""The building blocks of the report's page: a ``Section`` (what the report shows of one
study, group or latency table: meta, findings, cautions, figures, tables, children), and
adding a figure or a table (written as CSV) to one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from hpo.announce import shown_path
from hpo.spreadsheet import defuse_formulas
from hpo.storage_urls import storage_label

PREVIEW_ROWS = 10  # rows of a long table shown on the page; all of them are in its CSV


class Table(NamedTuple):
    """A table of a section: its title, the frame the page shows, its CSV (every row and
    column), the rows shown (0: the CSV is linked only) and the columns only the CSV has."""

    title: str
    frame: pd.DataFrame
    path: Path
    rows: int
    csv_only: tuple[str, ...] = ()


@dataclass
class Section:
    """What a report shows of one study, group or latency table."""

    title: str
    kind: str  # "study" | "group" | "latency"
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[tuple[str, list[Path]]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)  # drawn after, one level deeper
    findings: list[str] = field(default_factory=list)  # sentences shown first, as a list
    cautions: list[str] = field(default_factory=list)  # what a sample is too small to show

    @property
    def files(self) -> list[Path]:
        own = [p for _, ps in self.figures for p in ps] + [t.path for t in self.tables]
        return own + [p for child in self.children for p in child.files]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def add_table(section: Section, out_dir: Path, stem: str, title: str, frame: pd.DataFrame,
              index: bool = False, shown: int = PREVIEW_ROWS,
              csv_only: tuple[str, ...] = ()) -> None:
    """Write ``frame`` as CSV; the page shows its first ``shown`` rows (0: a link only)
    without the columns ``csv_only`` (they make a wide table scroll; the CSV keeps them)."""
    if frame is None or frame.empty:
        return
    path = out_dir / f"{stem}.csv"
    defuse_formulas(frame).to_csv(path, index=index)
    hidden = tuple(c for c in csv_only if c in frame.columns)
    page = frame.drop(columns=list(hidden))
    section.tables.append(Table(title, page if index else page.reset_index(drop=True), path,
                                shown, hidden))


def storage_shown(url: str | None) -> str:
    label = storage_label(url)
    return label if "://" in label else shown_path(label)


def add_figure(section: Section, title: str, paths: list[Path]) -> None:
    if paths:
        section.figures.append((title, paths))


def study_source(attrs: dict[str, Any]) -> str:
    study_file = attrs.get("study_file") or {}
    name = study_file.get("name") if isinstance(study_file, dict) else None
    source = shown_path(attrs.get("study_source"))
    return " from ".join(str(x) for x in (name, source) if x) or "(unknown)"


