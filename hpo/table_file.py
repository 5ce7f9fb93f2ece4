"""The table file of ``hpo table build``: a CSV of evaluations and its JSON metadata.

Read by the table objective (hpo/surrogate.py) and written by hpo/table_build.py; knows nothing of
studies (the metadata carries the table's params and directions as plain data).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from search_core.errors import ConfigError
from search_core.files import write_bytes_atomically

TABLE_FORMAT = 1
FIXED_COLUMNS = ("config", "source", "seed")
RESULT_COLUMNS = ("value", "test_value", "seconds", "cpu_seconds", "error")


def meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"table {path}: cannot read {meta_path(path).name} ({err}); "
                          "rebuild it with hpo table build") from None
    missing = [k for k in ("format", "params", "directions") if k not in meta]
    if missing or meta["format"] != TABLE_FORMAT:
        raise ConfigError(f"table {path}: {meta_path(path).name} lacks {missing} or is not "
                          f"format {TABLE_FORMAT}; rebuild it with hpo table build")
    return meta


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_bytes_atomically(path, json.dumps(payload, indent=1, default=str).encode())


def read_rows(path: Path) -> list[dict[str, str]]:
    """The table's complete rows (a last line cut short by a crash is left out)."""
    if not path.exists():
        return []
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if None not in r and None not in r.values()]
