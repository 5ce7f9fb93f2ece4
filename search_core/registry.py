"""One small registry class, used once per kind of plug-in (ops, placements, schedules, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from search_core.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to plug-ins; an unknown name raises an error listing the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    @contextmanager
    def temporarily(self, name: str, entry: T) -> Iterator[T]:
        """``entry`` registered as ``name`` inside the block only (tests, a plug-in tried
        out); whatever ``name`` was before comes back after."""
        before = self._entries.get(name)
        self._entries[name] = entry
        try:
            yield entry
        finally:
            if before is None:
                del self._entries[name]
            else:
                self._entries[name] = before

    def get(self, name: str, key: str = "") -> T:
        """The entry called ``name`` (in any case); ``key`` (e.g. "space.ops") prefixes the
        error."""
        return self._entries[self.canonical(name, key)]

    def canonical(self, name: str, key: str = "") -> str:
        """The registered spelling of ``name``, matched exactly or else in any case
        (``TPE`` is ``tpe``); an unknown name raises an error with the nearest valid one."""
        if name in self._entries:
            return name
        if isinstance(name, str):
            by_case = [entry for entry in self._entries if entry.lower() == name.lower()]
            if len(by_case) == 1:
                return by_case[0]
        valid = ", ".join(sorted(self._entries))
        prefix = f"{key}: " if key else ""
        raise ConfigError(f"{prefix}unknown {self.kind} {name!r}"
                          f"{did_you_mean(name, self._entries)}; valid names: {valid}")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)
