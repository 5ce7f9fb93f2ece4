"""Grids: every value of a parameter that can be enumerated, the grid cells of a study (its
``grid:`` block, or an even grid sized to a budget) and their idempotent enqueueing."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import optuna

from hpo.records import GRID_ATTR, GRID_CELL_ATTR, opening_attrs
from hpo.study_spec import ParamSpec, StudySpec
from search_core.errors import ConfigError


def whole_range(param: ParamSpec) -> list[Any] | None:
    """Every value ``param`` can take: a categorical's choices, an int range's integers
    (at its step); None for a float range."""
    if param.type == "categorical":
        return list(param.choices or ())
    if param.type == "int":
        step = int(param.step or 1)
        return list(range(int(param.low), int(param.high) + 1, step))  # type: ignore[arg-type]
    return None


def grid_values(name: str, param: ParamSpec, grid: dict[str, tuple[Any, ...]]) -> list[Any]:
    """The grid's values of one parameter: the ``grid:`` block's, else its whole range
    (categoricals and linear int ranges; a log range is too wide to enumerate)."""
    if name in grid:
        return list(grid[name])
    values = None if param.type == "int" and param.log else whole_range(param)
    if values is None:
        raise ConfigError(f"grid.{name}: the grid sampler needs explicit values for the "
                          f"{param.type} parameter {name!r}; add them under grid:")
    return values


def grid_cells(spec: StudySpec, budget: int | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid values, in a fixed order: the study's ``grid:`` block,
    or, with ``budget``, an even grid over the ranges sized to the budget."""
    names = sorted(spec.params)
    if budget is None:
        values = [grid_values(n, spec.params[n], dict(spec.grid)) for n in names]
    else:
        values = budget_grid(spec, names, budget)
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def budget_grid(spec: StudySpec, names: list[str], budget: int) -> list[list[Any]]:
    """k evenly spaced values per numeric range (log-spaced on log scales), every choice of a
    categorical, with the largest k >= 2 whose grid fits the budget (if even k = 2 does not,
    the shuffled grid is cut at the budget: that is what a grid of that budget can do)."""
    fixed = math.prod(len(spec.params[n].choices or ()) for n in names
                      if spec.params[n].type == "categorical")
    free = sum(spec.params[n].type != "categorical" for n in names)
    k = 2
    while free and fixed * (k + 1) ** free <= budget:
        k += 1
    return [_even_values(spec.params[n], k) for n in names]


def _even_values(param: ParamSpec, k: int) -> list[Any]:
    if param.type == "categorical":
        return list(param.choices or ())
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        points = [low * (high / low) ** (i / (k - 1)) for i in range(k)]
    else:
        points = [low + (high - low) * i / (k - 1) for i in range(k)]
    if param.type == "int":
        return sorted({round(p) for p in points})
    if param.step:
        points = [low + round((p - low) / param.step) * param.step for p in points]
    return sorted(set(points))


def grid_key(params: dict[str, Any]) -> str:
    """A grid cell as a string: what makes enqueueing it twice detectable."""
    return json.dumps(params, sort_keys=True, default=str)


def enqueue_grid(study: optuna.Study, spec: StudySpec, seed: int,
                 budget: int | None = None) -> None:
    """Enqueue every grid cell once, in an order shuffled by ``seed`` (a grid sized to a
    budget it exceeds is cut there). Cells already in the study (from an enqueueing that
    was cut short) are not enqueued again; the ``grid`` mark comes last."""
    cells = grid_cells(spec, budget)
    random.Random(seed).shuffle(cells)
    cells = cells[:budget] if budget is not None else cells
    present = {t.user_attrs.get(GRID_CELL_ATTR) for t in study.get_trials(deepcopy=False)}
    for cell in cells:
        key = grid_key(cell)
        if key not in present:
            study.enqueue_trial(cell, user_attrs=opening_attrs({GRID_CELL_ATTR: key}))
    study.set_user_attr(GRID_ATTR, len(cells))
