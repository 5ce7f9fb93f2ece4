"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages rendered from the code on every build, so
the built site is always current.

- ``reference/cli.md``: the command-line reference, from ``hpo``'s argparse parsers
  (``docs/gen_cli.py``; the committed file is the same text, ``python docs/gen_cli.py``
  rewrites it and ``tests/test_docs.py`` checks it is current).
- ``<!-- api: search_core -->`` and ``<!-- api: hpo -->`` in the API pages: one mkdocstrings
  block per public name (``search_core``'s export table, ``hpo.API``), so a name added to or
  moved within a package appears on its page without editing it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
CLI_PAGE = "reference/cli.md"
API_MARKER = re.compile(r"^<!-- api: (?P<package>[\w.]+) -->$", re.MULTILINE)


def _gen_cli() -> Any:
    spec = importlib.util.spec_from_file_location("nas_hpo_docs_gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def search_core_blocks() -> str:
    """One section per defining module, one mkdocstrings block per exported name, in the
    order of ``search_core``'s export table (importing it loads no torch)."""
    import search_core

    by_module: dict[str, list[str]] = {}
    for name, module in search_core._EXPORTS.items():  # the package's own export table
        by_module.setdefault(module, []).append(name)
    parts = []
    for module, names in by_module.items():
        parts.append(f"## `{module}`\n")
        parts.extend(f"::: {module}.{name}\n" for name in names)
    return "\n".join(parts)


def hpo_blocks() -> str:
    import hpo

    members = "\n".join(f"        - {name}" for name in hpo.API)
    return f"::: hpo.api\n    options:\n      members:\n{members}\n"


API_BLOCKS = {"search_core": search_core_blocks, "hpo": hpo_blocks}


def render_api(markdown: str) -> str:
    return API_MARKER.sub(lambda m: API_BLOCKS[m.group("package")](), markdown)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri == CLI_PAGE:
        return _gen_cli().render()
    return render_api(markdown)
