"""Build frozen config dataclasses from plain mappings (YAML, JSON), with one-line errors.

Unknown keys and wrong types are ``ConfigError`` naming the key path, the value and what was
expected. Lists become tuples so configs stay hashable and comparable. Values are quoted with
``shown`` (at most ``SHOWN_CHARS`` characters), so a huge value never makes a huge message.
"""

from __future__ import annotations

import dataclasses
import functools
import reprlib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from search_core.errors import ConfigError, did_you_mean

T = TypeVar("T")
SHOWN_CHARS = 60  # the most characters of a value an error message quotes
MESSAGE_CHARS = 300  # the longest error message ``one_line`` lets through


class _ShortRepr(reprlib.Repr):
    """``reprlib`` limits, and no ``repr`` of a huge int (Python refuses > 4300 digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 3, SHOWN_CHARS, SHOWN_CHARS
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, for error messages."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # a value whose repr fails still gets a message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_key(key: Any, limit: int = 40) -> str:
    """A mapping key as it appears in a key path (``train.epochs``), cut to ``limit``."""
    text = key if isinstance(key, str) and key.isprintable() else shown(key, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MESSAGE_CHARS) -> str:
    """``message`` on one line of at most ``limit`` characters: a longer one keeps its start
    (file and key) and its end (the fix) and drops the middle, cut between words."""
    text = " ".join(message.split())
    if len(text) <= limit:
        return text
    head = text[: limit * 2 // 3].rsplit(" ", 1)[0]
    tail = text[len(text) - (limit - len(head) - 5):]
    tail = tail.split(" ", 1)[1] if " " in tail else tail
    return f"{head} ... {tail}"


def from_mapping(cls: type[T], data: Any, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, converting nested dataclasses and tuples."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {shown(data)}")
    hints = _type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    names = sorted(f.name for f in fields)
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        listed = ", ".join(_join(where, short_key(key)) for key in unknown[:3])
        more = f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else ""
        hint = did_you_mean(unknown[0], names)
        raise ConfigError(f"unknown key(s) {listed}{more}{hint}; valid keys: "
                          f"{', '.join(names)}")
    missing = [f.name for f in fields if f.name not in data and _required(f)]
    if missing:
        wanted = ", ".join(f"{key} ({_expected(hints[key])})" for key in missing)
        them = "it" if len(missing) == 1 else "them"
        raise ConfigError(f"{where or cls.__name__}: missing required key(s) {wanted}; add {them}")
    kwargs = {
        key: coerce(hints[key], value, _join(where, key)) for key, value in data.items()
    }
    return cls(**kwargs)


@functools.lru_cache(maxsize=256)
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints``, evaluated once per class (it compiles every annotation)."""
    return typing.get_type_hints(cls)


def _required(field: dataclasses.Field[Any]) -> bool:
    return (field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING)


def _expected(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return _type_name(hint)


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
            raise ConfigError(f"{where}: got {shown(value)}; expected {_expected(hint)}")
        return value
    return _coerce_scalar(hint, value, where)


def _coerce_union(options: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(option, value, where)
        except ConfigError:
            continue
    names = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{where}: got {shown(value)}; expected {names}")


def _coerce_tuple(args: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: got {shown(value)}; expected a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{where}: got {shown(value)}; expected a list of {len(args)} values")
    return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _coerce_mapping(args: tuple[Any, ...], value: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: got {shown(value)}; expected a mapping")
    key_type, value_type = args if args else (Any, Any)
    return {
        coerce(key_type, k, where): coerce(value_type, v, _join(where, short_key(k)))
        for k, v in value.items()
    }


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond 1.8e308
            raise ConfigError(f"{where}: got {shown(value)}; too large for a float") from None
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: got {shown(value)}; expected {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
