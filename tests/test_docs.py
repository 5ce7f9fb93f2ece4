"""The documentation (README.md and docs/**/*.md) against the code.

No link leaves the repository; the thesis is called the thesis; every ``python`` block runs
(unless a ``<!-- not-run: reason -->`` comment precedes it); the command-line reference is
what the parsers say; every study-file key is documented; every test named as a guarantee
exists; numbers quoted from cheap commands are what they print (docs/check_numbers.py); and,
where MkDocs is installed (the ``docs`` extra), the site builds with ``--strict``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the committed example reports are generated HTML, not documentation pages
PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md")
                                     if not p.relative_to(DOCS).parts[0].startswith("example-"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)$", re.MULTILINE)
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>[^>]*?)\s*-->\s*$")
THE_SEED = re.compile(r"(?i)\bthe\s+seed(?![-\w])")  # "the seed" for the thesis; not "the seed-"
README_LINES = 200


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_docs_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"nas_hpo_docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr] - dataclasses look it up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# --------------------------------------------------------------------------- parsing pages


def code_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """(line, info, code, text before the block) for each fenced block."""
    blocks = []
    pos = 0
    while True:
        start = FENCE.search(text, pos)
        if not start:
            return blocks
        fence, indent = start.group("fence"), start.group("indent")
        end = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        close = end.search(text, start.end())
        stop = close.start() if close else len(text)
        body = text[start.end() + 1:stop]
        if indent:
            body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                             for line in body.splitlines())
        line = text.count("\n", 0, start.start()) + 1
        blocks.append((line, start.group("info").strip(), body, text[:start.start()]))
        pos = close.end() if close else len(text)


def prose(text: str, inline_code: bool = False) -> str:
    """The page without fenced blocks, HTML comments and (unless asked) inline code."""
    kept, pos = [], 0
    while (start := FENCE.search(text, pos)) is not None:
        kept.append(text[pos:start.start()])
        fence = start.group("fence")
        end = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        close = end.search(text, start.end())
        pos = close.end() if close else len(text)
    kept.append(text[pos:])
    out = re.sub(r"<!--.*?-->", "", "".join(kept), flags=re.DOTALL)
    if inline_code:
        return out
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", out, flags=re.DOTALL)


LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)"
                  r"|(?:href|src)=\"(?P<html>[^\"]+)\"")


def links(text: str) -> list[str]:
    return [m.group("target") or m.group("html") for m in LINK.finditer(prose(text))]


def slug(heading: str) -> str:
    """Python-Markdown's default heading id."""
    text = re.sub(r"`", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = prose(page.read_text(encoding="utf-8"), inline_code=True)
    ids = set()
    for match in re.finditer(r"^#{1,6}\s+(?P<title>.+?)\s*$", text, re.MULTILINE):
        title = match.group("title")
        explicit = re.search(r"\{#(?P<id>[\w-]+)\}\s*$", title)
        ids.add(explicit.group("id") if explicit else slug(title))
    return ids


# --------------------------------------------------------------------------- links and words


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_no_link_leaves_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    outside = re.findall(r"https?://\S+", prose(text))
    assert not outside, f"{rel(page)}: links outside the repository: {outside[:3]}"
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            problems.append(f"{target} (a URL; cite in text instead)")
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            problems.append(f"{target} (outside the repository)")
        elif not dest.exists():
            problems.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and dest.name != "cli.md" \
                and anchor not in anchors(dest):
            problems.append(f"{target} (no heading #{anchor} in {rel(dest)})")
    assert not problems, f"{rel(page)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_the_thesis_is_called_the_thesis(page: Path) -> None:
    """'The seed' was this project's name for the thesis; a random seed is 'a seed', 'the
    random seed', 'the search seed'."""
    text = page.read_text(encoding="utf-8")
    found = [text[max(0, m.start() - 30):m.end() + 20].replace("\n", " ")
             for m in THE_SEED.finditer(text)]
    assert not found, f"{rel(page)}: say 'the thesis' (or 'the random seed'): {found}"


def test_the_repository_does_not_point_at_files_outside_it() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert "METHOD.md" not in text and "../shared" not in text, rel(page)


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_LINES
    for command in ("hpo run --sampler tpe", "pytest -q"):  # the quick start, as CI runs it
        line = ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && '
                f"{command}")
        assert line in text.splitlines()
    assert "docs/example-report/" in text and ".png)" in text  # a picture of a report


# --------------------------------------------------------------------------- python blocks


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line, code) of the page's python blocks that are meant to run."""
    runnable = []
    for line, info, body, before in code_blocks(page.read_text(encoding="utf-8")):
        if info.split()[:1] != ["python"]:
            continue
        last = before.rstrip().splitlines()[-1] if before.strip() else ""
        marker = NOT_RUN.search(last)
        if marker:
            assert marker.group("reason"), f"{rel(page)}:{line}: not-run needs a reason"
            continue
        runnable.append((line, body))
    return runnable


RUNNABLE = [page for page in PAGES if python_blocks(page)]
DRIVER = """
import json, sys
blocks = json.load(open(sys.argv[1]))
scope = {"__name__": "__main__"}
for name, code in blocks:
    exec(compile(code, name, "exec"), scope)
"""


def test_every_python_block_compiles() -> None:
    assert RUNNABLE, "no python block found"
    for page in PAGES:
        for line, code in python_blocks(page):
            compile(code, f"{rel(page)}:{line}", "exec")


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=rel)
def test_python_blocks_run(page: Path, tmp_path: Path) -> None:
    """A page's blocks run in order in one fresh interpreter, in a temporary folder, as a
    reader would paste them; a traceback names the page and the block's line."""
    blocks = [[f"{rel(page)}:{line}", "\n" * line + code]
              for line, code in python_blocks(page)]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "driver.py", "blocks.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


# --------------------------------------------------------------------------- generated pages


@pytest.mark.slow
def test_the_cli_reference_is_what_the_parsers_say() -> None:
    gen_cli = load_docs_module("gen_cli")
    assert gen_cli.PAGE.read_text(encoding="utf-8") == gen_cli.render(), \
        "docs/reference/cli.md is out of date: run python docs/gen_cli.py"


@pytest.mark.slow
def test_the_cli_reference_lists_every_subcommand_and_flag() -> None:
    from hpo.cli import build_parser

    gen_cli = load_docs_module("gen_cli")
    page = gen_cli.render()
    for command, _, parser in gen_cli.subcommands(build_parser(), "hpo"):
        assert f"## {command} " in page
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in page, (command, flag)


def test_the_api_pages_name_every_public_name() -> None:
    import hpo
    import search_core

    hooks = load_docs_module("hooks")
    blocks = hooks.search_core_blocks()
    for name, module in search_core._EXPORTS.items():
        assert f"::: {module}.{name}\n" in blocks
    assert sorted(search_core.__all__) == sorted(search_core._EXPORTS)
    rendered = hooks.render_api((DOCS / "reference" / "api-hpo.md").read_text())
    assert all(f"- {name}\n" in rendered for name in hpo.API)
    for page in ("api-search-core.md", "api-hpo.md"):
        assert "<!-- api:" not in hooks.render_api((DOCS / "reference" / page).read_text())


# --------------------------------------------------------------------------- study files


def documented_keys() -> str:
    return (DOCS / "reference" / "study-files.md").read_text(encoding="utf-8")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_every_study_file_key_is_documented() -> None:
    from hpo.objectives import OBJECTIVES, ObjectiveSpec
    from hpo.pipeline import PipelineSpec
    from hpo.study import STUDY_KEYS
    from hpo.study_config import ALIASES
    from hpo.study_spec import Fidelity, ParamSpec, ProbeSpec
    from search_core.config import HyperNetConfig, SearchSpace, TemperatureConfig, TrainConfig
    from search_core.data import DataConfig

    page = documented_keys()
    keys = {*STUDY_KEYS, *ALIASES, *OBJECTIVES.names()}
    for cls in (DataConfig, SearchSpace, HyperNetConfig, TemperatureConfig, TrainConfig,
                Fidelity, ProbeSpec, ObjectiveSpec, ParamSpec, PipelineSpec):
        keys.update(field_names(cls))
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"docs/reference/study-files.md does not mention {missing}"


@pytest.mark.slow
def test_every_pipeline_stage_setting_is_documented() -> None:
    from compress import STAGES

    page = documented_keys()
    missing = []
    for name in STAGES.names():
        stage = STAGES.get(name, "pipeline")
        if f"`{name}`" not in page:
            missing.append(name)
        for key in field_names(stage.settings):
            if f"`{key}`" not in page:
                missing.append(f"{name}.{key}")
            default = getattr(stage.settings(), key)
            if dataclasses.is_dataclass(default):
                missing += [f"{name}.{key}.{k}" for k in field_names(type(default))
                            if f"`{k}`" not in page]
    assert not missing, f"docs/reference/study-files.md does not mention {missing}"


# --------------------------------------------------------------------------- guarantees


def test_every_test_named_as_a_guarantee_exists() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("*.py"))
    defined = set(re.findall(r"^\s*(?:async\s+)?def (test_\w+)", sources, re.MULTILINE))
    named = set()
    for page in (DOCS / "guarantees.md", DOCS / "guides" / "ray.md"):
        named.update(re.findall(r"`(test_[a-z0-9_]+\*?)`", page.read_text(encoding="utf-8")))
    assert len(named) > 30
    missing = sorted(name for name in named
                     if not (any(d.startswith(name[:-1]) for d in defined)
                             if name.endswith("*") else name in defined))
    assert not missing, f"tests named in the docs but not defined: {missing}"


# --------------------------------------------------------------------------- quoted numbers


def test_every_number_marker_names_a_check() -> None:
    check_numbers = load_docs_module("check_numbers")
    names = {name for name, _, _ in check_numbers.passages()}
    assert names == set(check_numbers.CHECKS)


def test_quoted_numbers_are_compared_to_the_quoted_precision() -> None:
    agrees = load_docs_module("check_numbers").agrees
    assert agrees("0.952", "0.9524") and not agrees("0.952", "0.9051")
    assert agrees("−0.93", "-0.9323293522924961") and agrees("22 162", "22162")
    assert agrees("5.6e-09", "5.6e-09") and not agrees("3.4e-11", "3.4e-10")
    assert agrees("+0.765", "+0.7651") and not agrees("30", "29")


@pytest.mark.slow
def test_the_cheap_documented_commands_print_the_quoted_numbers() -> None:
    done = subprocess.run([sys.executable, str(DOCS / "check_numbers.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- the site


@pytest.mark.slow
def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli.html").read_text(encoding="utf-8")
    assert "hpo-bench-supernet" in cli
    # the API pages come from docstrings: they too call the thesis the thesis
    for page in (tmp_path / "site" / "reference").glob("api-*.html"):
        text = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
        assert not THE_SEED.search(text), f"{page.name}: {THE_SEED.search(text)}"
