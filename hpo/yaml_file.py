"""A bounded, total YAML reader: any text, however malformed or hostile, either becomes
plain data or raises ``ConfigError`` with one line saying where and why. Nesting deeper than
``MAX_DEPTH``, more than ``MAX_NODES`` keys and values, anchors and aliases (a "billion
laughs" bomb expands before anything could check it), explicit tags, merge keys, duplicate
and non-string keys and integer literals over ``MAX_INT_CHARS`` characters are refused
while the text is composed, before anything is built from them. It knows nothing of what
the data means (``hpo.study`` reads study files with it)."""


from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

from search_core.configtools import (
    shown,
)
from search_core.errors import ConfigError

MAX_DEPTH = 32  # nesting levels of YAML collections; the shipped studies use 4
MAX_NODES = 50_000  # keys and values (YAML nodes); the shipped studies have about 100
MAX_INT_CHARS = 100  # an integer literal longer than this is no setting's value


class _Refused(yaml.MarkedYAMLError):
    """Something a settings file never needs, refused while the YAML is composed."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _Refusals(Composer, SafeConstructor):
    """Composes and constructs like ``yaml.SafeLoader`` but refuses, before building anything
    from them: anchors and aliases, explicit tags (``!!int ""``, ``!!python/...``: every value
    is what its plain text says), merge keys (``<<``), nesting deeper than ``MAX_DEPTH``, more
    than ``MAX_NODES`` keys and values, duplicate and non-string keys, and integer literals over
    ``MAX_INT_CHARS`` characters."""

    depth = 0
    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise _Refused("YAML anchors and aliases (&name, *name) are not allowed; write "
                           "each value out", event.start_mark)
        if getattr(event, "tag", None) not in (None, "!"):
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(f"explicit YAML tags ({shown(tag)}) are not allowed; write "
                           "the plain value", event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} keys and values", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
            raise _Refused(f"an integer of {len(node.value)} characters; no setting takes "
                           f"more than {MAX_INT_CHARS}", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # e.g. a 30 February
            raise _Refused(f"cannot read this value ({shown(str(err))}); fix it",
                           node.start_mark) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused("merge keys (<<) are not allowed; write each key out",
                               key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(f"key {shown(key)} is not a string ({type(key).__name__}); "
                               "quote it", key_node.start_mark)
            if key in seen:
                raise _Refused(f"duplicate key {shown(key)}; keep one of them",
                               key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


if yaml.__with_libyaml__:  # libyaml's events, about 4 times faster than PyYAML's own

    class _BoundedLoader(_Refusals, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:

    class _BoundedLoader(_Refusals, yaml.SafeLoader):  # type: ignore[no-redef]
        pass


def parse_yaml(text: str) -> Any:
    """The data of ``text``, or one ``ConfigError`` line."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # checks that every character may appear in YAML
        return loader.get_single_data()
    except _Refused as err:
        raise ConfigError(f"line {err.problem_mark.line + 1}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        context = getattr(err, "context", None)
        problem = f"{context}: {problem}" if context else problem
        if isinstance(err, yaml.reader.ReaderError):  # a control character, say
            char = err.character
            code = f"U+{char:04X}" if isinstance(char, int) else shown(char)
            problem = f"character {code} at offset {err.position} cannot appear in YAML"
        raise ConfigError(f"not valid YAML{where} ({problem[:120]}); fix the syntax") from None
    finally:
        if loader is not None:
            loader.dispose()

