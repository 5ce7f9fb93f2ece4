"""CSV cells a spreadsheet would run: text that begins with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return is a formula to Excel and LibreOffice (``=cmd|' /C calc'!A0``). Every CSV
the tool writes from study contents (``hpo show --format csv``, the report's tables) goes
through ``defuse_formulas``, which prefixes such text with ``'`` (shown, not run); numbers,
negative ones included, are left as they are."""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def defuse_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell (and column name) that a spreadsheet would run as a
    formula prefixed with ``'``."""
    text = [column for column in frame.columns
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column])]
    safe = frame.copy()
    for column in text:
        safe[column] = safe[column].map(defuse_cell)
    return safe.rename(columns=defuse_cell)
