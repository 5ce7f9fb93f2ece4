"""One self-contained HTML report (inline CSS, relative image links) for studies, groups and a
latency table."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import optuna
import pandas as pd

import hpo.groups as groups
from reports import latency_frames as latency_data
from reports.group_section import group_section
from reports.latency_section import latency_section
from reports.page import Section, storage_shown
from reports.study_section import study_section
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


# ----------------------------------------------------------------------------- page

SUMMARY_KEYS = ("study file", "sampler", "samplers", "seeds", "budgets", "objective",
                "latency table", "device")


def _render_section(section: Section, level: int) -> list[str]:
    esc = html.escape
    sub = min(level + 1, 6)
    parts = [f"<h{level}>{esc(section.title)}</h{level}>"]
    if section.meta:
        parts.append("<div class='table-wrap'><table>")
        parts += [f"<tr><th>{esc(str(k))}</th><td style='text-align:left'>{esc(str(v))}</td>"
                  "</tr>" for k, v in section.meta.items()]
        parts.append("</table></div>")
    if section.findings:
        parts.append("<ul class='findings'>")
        parts += [f"<li>{esc(line)}</li>" for line in section.findings]
        parts.append("</ul>")
    parts += [f"<p class='caution'>{esc(line)}</p>" for line in section.cautions]
    for title, paths in section.figures:
        png = next((p for p in paths if p.suffix == ".png"), paths[0])
        links = " ".join(f"<a href='{esc(p.name)}'>{esc(p.suffix[1:])}</a>" for p in paths)
        parts += [f"<h{sub}>{esc(title)}</h{sub}>",
                  f"<img src='{esc(png.name)}' alt='{esc(title)}'>",
                  f"<div class='files'>{links}</div>"]
    for table in section.tables:
        parts += render_table(table.title, table.frame, table.path, table.rows, sub,
                              table.csv_only)
    for child in section.children:
        parts += _render_section(child, sub)
    return parts


def render_table(title: str, frame: pd.DataFrame, path: Path, rows: int,
                 level: int, csv_only: tuple[str, ...] = ()) -> list[str]:
    """A table's heading, its first ``rows`` rows without all-empty columns (inside a
    scrolling box), and the link to its CSV with every row and column (naming the columns
    ``csv_only`` that only the CSV has)."""
    esc = html.escape
    link = f"<a href='{esc(path.name)}'>csv</a>"
    if csv_only:
        link += f" (also {esc(', '.join(csv_only))})"
    if rows == 0:
        return [f"<h{level}>{esc(title)}</h{level}>",
                f"<div class='files'>{len(frame)} rows: {link}</div>"]
    shown = frame.head(rows).dropna(axis="columns", how="all")
    more = f" (first {rows} of {len(frame)} rows; all in the csv)" if len(frame) > rows else ""
    table = shown.to_html(index=shown.index.name is not None, float_format="%.4g", border=0,
                          na_rep="–")
    return [f"<h{level}>{esc(title)}{more}</h{level}>", f"<div class='table-wrap'>{table}</div>",
            f"<div class='files'>{link}</div>"]


def _render_page(sections: list[Section], storage_url: str | None) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>nas-hpo report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>nas-hpo report</h1>", "<div class='meta'><ul>"]
    if any(section.kind != "latency" for section in sections):
        parts.append(f"<li>storage: {esc(storage_shown(storage_url))}</li>")
    for section in sections:
        items = ", ".join(f"{k}: {v}" for k, v in section.meta.items() if k in SUMMARY_KEYS)
        parts.append(f"<li><b>{esc(section.title)}</b> — {esc(items)}</li>")
    parts.append("</ul></div>")
    for section in sections:
        parts += _render_section(section, 2)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(storage_url: str | None, names: list[str], out_dir: str | Path,
                 latency: str | Path | None = None) -> Path:
    """Figures, CSV tables and ``out_dir/index.html`` for each study or comparison group and,
    with ``latency``, the latency model of that table (``hpo profile --out FILE``)."""
    if not names and latency is None:
        raise ConfigError("give study/group names, --latency TABLE.json, or both")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {out_dir}: a file, not a folder; give a folder for the "
                          "report")
    latency_table = latency_data.load_latency(latency) if latency is not None else None
    started = time.time()
    sections = _storage_sections(storage_url, names, Path(out_dir)) if names else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if latency_table is not None:
        sections.append(latency_section(latency_table, out))
    index = out / "index.html"
    index.write_text(_render_page(sections, storage_url), encoding="utf-8")
    _forget_earlier_reports(out, started)
    return index


MANIFEST = ".hpo-report-files"  # in --out: the files the last report there wrote


def _forget_earlier_reports(out: Path, started: float) -> None:
    """Remove the files an earlier report into ``out`` wrote that this one did not (a
    second report into one folder showed the first one's figures and tables beside its
    own); files the tool did not write are never touched. Then list this report's files."""
    manifest = out / MANIFEST
    earlier = set(manifest.read_text().splitlines()) if manifest.is_file() else set()
    written = {path.name for path in out.iterdir()
               if path.is_file() and path.name != MANIFEST and path.stat().st_mtime >= started}
    for name in sorted(earlier - written):
        if "/" not in name and name not in ("", ".", ".."):
            (out / name).unlink(missing_ok=True)
    manifest.write_text("".join(f"{name}\n" for name in sorted(written)))


def _storage_sections(storage_url: str | None, names: list[str], out: Path) -> list[Section]:
    from hpo.storage import open_storage

    storage = open_storage(storage_url, must_exist=True)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    studies = [summary.study_name for summary in summaries]
    group_list = groups.group_names(storage)
    unknown = [n for n in names if n not in studies and n not in group_list]
    if unknown:
        raise ConfigError(f"unknown study or group {', '.join(unknown)}; available "
                          f"studies: {', '.join(studies) or '(none)'}; groups: "
                          f"{', '.join(group_list) or '(none)'}")
    out.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
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
