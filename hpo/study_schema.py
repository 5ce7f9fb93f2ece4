"""A JSON Schema of the study file, for editors (completion of keys, a typo underlined as
it is typed), generated from the dataclasses the study loader fills: every key, its type,
its default and the registered names. ``hpo studies schema`` prints it; the loader
(``hpo.study``) stays the judge: it checks what a schema cannot (ranges that depend on
other keys, files that must exist)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PRIMITIVES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a type hint of a study dataclass field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in PRIMITIVES:
        return {"type": "number"} if hint is float else {"type": PRIMITIVES[hint]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [type_schema(arg) for arg in args]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if hint is type(None):
        return {"type": "null"}
    if origin is tuple:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        values = type_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values}
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    return {}  # Any


def dataclass_schema(cls: Any, skip: tuple[str, ...] = (),
                     names: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """An object of ``cls``'s fields (minus ``skip``), each with its type and default; a
    field in ``names`` takes one of those registered names."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name in skip or item.name.startswith("_"):
            continue
        schema = type_schema(hints[item.name])
        if names and item.name in names:
            schema = {"enum": names[item.name]}
        if item.default is not dataclasses.MISSING and _plain(item.default):
            schema["default"] = _json(item.default)
        properties[item.name] = schema
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, tuple))


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def study_schema() -> dict[str, Any]:
    """The study file's JSON Schema (draft 2020-12)."""
    from hpo.objectives import OBJECTIVES, ObjectiveSpec
    from hpo.study_config import SECTIONS
    from hpo.study_spec import (
        MAX_PARAMS,
        STUDY_NAME,
        Fidelity,
        NoiseSpec,
        ParamSpec,
        ProbeSpec,
        StudySpec,
    )
    from search_core.config import SearchConfig
    from search_core.data import DataConfig

    search_hints = typing.get_type_hints(SearchConfig)
    search = {name: dataclass_schema(search_hints[name]) for name in SECTIONS}
    study_hints = typing.get_type_hints(StudySpec)
    properties = {
        "name": {"type": "string", "pattern": f"^{STUDY_NAME.pattern}$"},
        "data": dataclass_schema(DataConfig),
        "search": {"type": "object", "additionalProperties": False, "properties": search},
        "fidelity": dataclass_schema(Fidelity),
        "probes": dataclass_schema(ProbeSpec),
        "objective": dataclass_schema(ObjectiveSpec, names={"kind": list(OBJECTIVES)}),
        "params": {"type": "object", "maxProperties": MAX_PARAMS,
                   "additionalProperties": dataclass_schema(ParamSpec)},
        "grid": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
        "training_seed": type_schema(study_hints["training_seed"]),
        "pipeline": {"type": "object"},  # stages and their settings: hpo.pipeline checks them
        "device": {"type": "string"},
        "precision": type_schema(study_hints["precision"]),
        "noise": dataclass_schema(NoiseSpec),
    }
    return {"$schema": SCHEMA_DIALECT, "title": "nas-hpo study file", "type": "object",
            "additionalProperties": False, "properties": properties}
