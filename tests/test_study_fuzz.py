"""Property-based fuzz of the study-file parser (issue 12).

Whatever the file holds (mutations of the shipped studies with random keys and values of
random types, duplicated lines, YAML anchors and alias bombs, deep nesting, huge numbers,
random bytes), ``load_study`` returns a ``StudySpec`` or raises ``StudyError`` whose message is
one line of at most 300 characters naming the file: never another exception, never a hang
(every example runs under an alarm). Seeded (``derandomize``), so a run is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (the dev extra)")
from hpo_helpers import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.study import load_study
from hpo.study_spec import StudyError, StudySpec

ROOT = Path(__file__).resolve().parent.parent
BASES = [yaml.safe_load((ROOT / p).read_text())
         for p in ("studies/digits.yaml", "tests/studies/tiny.yaml")]
EXAMPLE_SECONDS = 20  # one load_study; a hang fails the example instead of the suite
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

NUMBERS = [0, 1, -1, 2, 3, 0.5, -0.5, 1e-300, 10**5, 10**9, 10**20, 10**23, 2**32, 2**32 - 1,
           2**63, -(2**63), 10**99, 1e308, float("inf"), float("-inf"), float("nan")]
WORDS = ["linear", "cosine", "constant", "digits", "cifar10", "latency", "params", "none",
         "sep_conv_3x3", "skip_connect", "max_pool_3x3", "lattice", "vertices", "categorical",
         "int", "float", "synthetic", "multi", "probe_accuracy", "A", "L3", ".", "", "../x",
         "/", "x" * 300, "type", "choices", "low", "high", "step", "log", "<<", "~", "*a"]
KEYS = sorted({
    "name", "data", "search", "fidelity", "probes", "objective", "params", "grid", "space",
    "train", "hypernet", "temperature", "epochs", "cells", "nodes", "channels", "ops", "seed",
    "num_refs", "placement", "lattice_divisions", "kind", "probe", "type", "low", "high",
    "step", "log", "choices", "latency_table", "op_costs", "batch_size", "w_lr", "kappa",
    "reference_accuracy", "reference_complexity", "train.kappa", "t_end", "t_start"})

scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(NUMBERS)
           | st.floats() | st.text(max_size=12) | st.sampled_from(WORDS))
keys = st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(-3, 3) | st.booleans()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=12)

# text edits of a dumped study: each maps (text, drawn argument) to a new text
SNIPPETS = [
    "lol: &a [lol, lol, lol, lol]\nlol2: [*a, *a, *a, *a]\n",  # aliases
    "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    .replace("*l0", "x"),  # a billion laughs (l1 holds x, no anchor l0)
    "data: {<<: {name: digits}}\n",
    "search: {train: {<<: {epochs: 2}}}\n",
    "fidelity: {epochs: " + "9" * 5000 + "}\n",
    "deep: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep: " + "{a: " * 31 + "1" + "}" * 31 + "\n",
    "deep: " + "{a: " * 40 + "1" + "}" * 40 + "\n",
    "x: !!python/object/apply:os.system ['echo pwned']\n",
    "x: !!float abc\n",
    "x: !!int ''\n",
    "x: !!bool maybe\n",
    "x: !!timestamp soon\n",
    "x: !!map abc\n",
    "x: 2001-02-30\n",
    "x: !!binary '%%%'\n",
    "? [a, b]\n: 1\n",
    "--- \nname: second\n",
    "x: \"\\ud800\"\n",
    "\t bad: indent\n",
]


def check_study(path: Path) -> None:
    """The property: a StudySpec, or a StudyError of one short line naming the file."""
    try:
        with time_limit(EXAMPLE_SECONDS):
            spec = load_study(path)
    except StudyError as err:
        message = str(err)
        assert "\n" not in message and len(message) <= 300, message[:400]
        assert path.name in message, message
    else:
        assert isinstance(spec, StudySpec)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into the mappings of ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths_of(value, (*prefix, key))


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def mutate(raw: dict[str, Any], data: st.DataObject) -> None:
    """Set, delete or add one key somewhere in ``raw``."""
    paths = list(paths_of(raw))
    if not paths:
        raw[data.draw(keys)] = data.draw(values)
        return
    path = data.draw(st.sampled_from(paths))
    parent, key = at(raw, path[:-1]), path[-1]
    action = data.draw(st.sampled_from(["set", "set", "delete", "add"]))
    if action == "set":
        parent[key] = data.draw(values)
    elif action == "delete":
        del parent[key]
    elif isinstance(parent[key], dict):
        parent[key][data.draw(keys)] = data.draw(values)


def edit_text(text: str, data: st.DataObject) -> bytes:
    """Maybe duplicate a line, append a hostile snippet, cut the text or insert bytes."""
    lines = text.splitlines(keepends=True)
    if lines and data.draw(st.integers(0, 3)) == 0:
        i = data.draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])  # a duplicate key, most often
    if data.draw(st.integers(0, 3)) == 0:
        lines.append(data.draw(st.sampled_from(SNIPPETS)))
    raw = "".join(lines).encode()
    if data.draw(st.integers(0, 9)) == 0:
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    if data.draw(st.integers(0, 4)) == 0:
        i = data.draw(st.integers(0, len(raw)))
        raw = raw[:i] + data.draw(st.binary(min_size=1, max_size=6)) + raw[i:]
    return raw


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.yaml"


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_mutated_shipped_studies_load_or_fail_cleanly(study_file: Path,
                                                      data: st.DataObject) -> None:
    raw = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(raw, data)
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    study_file.write_bytes(edit_text(text, data))
    check_study(study_file)


YAML_ALPHABET = st.sampled_from([*"{}[]:,-?&*!|>'\"#%@`~ \n\t.0123456789eEaxyz<=_+",
    "name", "search", "train", "epochs", "params", "type", "choices", ": ", "\n  ", "&a ",
    "*a", "!!int ", "!!float ", ".inf", ".nan", "1e999", "0x", "0b"])


@settings(FUZZ, max_examples=150)
@given(pieces=st.lists(YAML_ALPHABET, max_size=60))
def test_yaml_like_noise_loads_or_fails_cleanly(study_file: Path, pieces: list[str]) -> None:
    study_file.write_text("".join(pieces))
    check_study(study_file)


@settings(FUZZ, max_examples=100)
@given(blob=st.binary(max_size=400))
def test_random_bytes_fail_cleanly(study_file: Path, blob: bytes) -> None:
    study_file.write_bytes(blob)
    check_study(study_file)


def test_unmutated_bases_load(study_file: Path) -> None:
    """The property is not vacuous: the bases themselves are valid studies."""
    for base in BASES:
        study_file.write_text(yaml.safe_dump(base, sort_keys=False))
        assert isinstance(load_study(study_file), StudySpec)
