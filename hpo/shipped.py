"""The study files and tables shipped with nas-hpo: package data (``hpo.studies`` and
``hpo.tables``, the repository's ``studies/`` and ``tables/``) found with
``importlib.resources``, so an installed wheel has them as a checkout does.

``--study NAME`` runs a shipped study by name from any folder; ``hpo studies copy NAME``
copies one out (with the table it reads) to edit it.
"""

from __future__ import annotations

import difflib
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from search_core.errors import ConfigError

STUDY_SUFFIX = ".yaml"
DEFAULT_STUDY_NAME = "digits"
SUMMARY_CHARS = 76  # hpo studies list: name + summary in 100 columns
TABLE_FILES = (".csv", ".json")  # a table is its rows and its metadata (hpo.table_file)


def shipped_folder(kind: str) -> Path:
    """The folder of shipped ``kind`` ("studies" or "tables"): the installed package's, or
    the checkout's when nas-hpo runs uninstalled (``PYTHONPATH`` on a checkout)."""
    try:
        return Path(str(resources.files(f"hpo.{kind}")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / kind


def shipped_studies() -> dict[str, Path]:
    """The shipped study files by name (the file name without ``.yaml``), sorted."""
    folder = shipped_folder("studies")
    return {path.stem: path for path in sorted(folder.glob(f"*{STUDY_SUFFIX}"))}


def default_study() -> Path:
    return shipped_studies()[DEFAULT_STUDY_NAME]


def study_path(study: str | Path | None) -> Path:
    """The file ``--study`` names: the default study when None, an existing file as given,
    else the shipped study of that name (``digits`` or ``digits.yaml``); a name that is
    neither stays a path (reading it then says it is not found)."""
    if study is None:
        return default_study()
    path = Path(study)
    if path.exists() or len(path.parts) != 1:
        return path
    return shipped_studies().get(path.name.removesuffix(STUDY_SUFFIX), path)


def is_shipped(path: Path) -> bool:
    try:
        return path.resolve().parent == shipped_folder("studies").resolve()
    except OSError:
        return False


def unknown_study_hint(study: str | Path) -> str:
    """What to say when ``--study`` names no file: the closest shipped name, or the list."""
    return (_closest_shipped(study)
            or "pass a YAML file, or a shipped study's name (hpo studies list)")


def _closest_shipped(study: str | Path) -> str:
    """"did you mean the shipped study 'NAME'? (hpo studies list)", or "" if none is close."""
    close = difflib.get_close_matches(Path(study).stem, list(shipped_studies()), n=1)
    return f"did you mean the shipped study {close[0]!r}? (hpo studies list)" if close else ""


def _relative_table(raw: Any) -> tuple[dict[str, Any], str] | None:
    """A study's ``objective`` section and its relative table path, if it reads one."""
    objective = raw.get("objective") if isinstance(raw, dict) else None
    table = objective.get("path") if isinstance(objective, dict) else None
    if not isinstance(table, str) or Path(table).is_absolute():
        return None
    return objective, table


def with_shipped_paths(raw: Any, path: Path) -> Any:
    """A shipped study's relative ``objective.path`` made absolute in the shipped files (its
    table travels with it), unless the current folder has a file of that name; any other
    study's paths are left relative to the current folder."""
    found = _relative_table(raw) if is_shipped(path) else None
    if found is None or Path(found[1]).exists():
        return raw
    objective, table = found
    shipped = shipped_folder("tables").parent / table
    if not shipped.exists():
        return raw
    return {**raw, "objective": {**objective, "path": str(shipped)}}


def study_summary(path: Path, width: int = SUMMARY_CHARS) -> str:
    """The first sentence of a study file's leading comment, cut at a word to ``width``."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.extend(line.lstrip("# ").split())
    text = " ".join(words)
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".:")
    if len(sentence) <= width:
        return sentence
    return sentence[: width - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def copy_study(name: str, to: Path) -> list[Path]:
    """Copy the shipped study ``name`` into folder ``to`` as ``NAME.yaml`` (with the table it
    reads, under ``to/tables/``, when it is a table study); refuses to overwrite a file."""
    studies = shipped_studies()
    if name.removesuffix(STUDY_SUFFIX) not in studies:
        raise ConfigError(f"no shipped study {name!r}; "
                          f"{_closest_shipped(name) or 'see hpo studies list'}")
    source = studies[name.removesuffix(STUDY_SUFFIX)]
    pairs = [(source, to / source.name), *_table_files(source, to)]
    existing = [str(target) for _, target in pairs if target.exists()]
    if existing:
        raise ConfigError(f"{existing[0]} exists; remove it or copy to another folder (--to)")
    for origin, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, target)
    return [target for _, target in pairs]


def _table_files(study: Path, to: Path) -> list[tuple[Path, Path]]:
    """The shipped table a study file reads (``objective.path``), as (origin, target) pairs."""
    from hpo.yaml_file import parse_yaml

    found = _relative_table(parse_yaml(study.read_text(encoding="utf-8")))
    if found is None:
        return []
    table = found[1]
    origin = shipped_folder("tables").parent / table
    return [(origin.with_suffix(suffix), (to / table).with_suffix(suffix))
            for suffix in TABLE_FILES if origin.with_suffix(suffix).exists()]
