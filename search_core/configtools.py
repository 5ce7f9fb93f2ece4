"""Build frozen config dataclasses from plain mappings (YAML, JSON), with one-line errors.

Unknown keys and wrong types are ``ConfigError`` naming the key path, the value and what was
expected. Lists become tuples so configs stay hashable and comparable.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from search_core.errors import ConfigError

T = TypeVar("T")


def from_mapping(cls: type[T], data: Any, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, converting nested dataclasses and tuples."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        names = ", ".join(_join(where, str(key)) for key in unknown)
        raise ConfigError(f"unknown key(s) {names}; valid keys: {', '.join(sorted(fields))}")
    kwargs = {
        key: coerce(hints[key], value, _join(where, key)) for key, value in data.items()
    }
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and mappings to JSON-able dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a type hint and convert it (int -> float, list -> tuple)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(hint), value, where)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        return _coerce_tuple(typing.get_args(hint), value, where)
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return _coerce_mapping(typing.get_args(hint), value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(repr, typing.get_args(hint)))
            raise ConfigError(f"{where}: got {value!r}; expected one of {choices}")
        return value
    return _coerce_scalar(hint, value, where)


def _coerce_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(option, value, where)
        except ConfigError as err:
            errors.append(str(err))
    names = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{where}: got {value!r}; expected {names}")


def _coerce_tuple(args: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: got {value!r}; expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{where}: got {value!r}; expected a list of {len(args)} values")
    return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _coerce_mapping(args: tuple[Any, ...], value: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: got {value!r}; expected a mapping")
    key_type, value_type = args if args else (Any, Any)
    return {
        coerce(key_type, k, where): coerce(value_type, v, _join(where, str(k)))
        for k, v in value.items()
    }


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: got {value!r}; expected {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
