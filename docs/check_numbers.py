"""Numbers quoted in the documentation are what the documented commands print.

    python docs/check_numbers.py             # rerun the cheap commands (seconds), compare
    python docs/check_numbers.py --all       # ... and the expensive ones (minutes)
    python docs/check_numbers.py --show      # print what the commands printed, to requote

A page marks a quoted passage with ``<!-- check_numbers: NAME -->``; the passage runs to the
next heading or marker. Each check below runs its command in a temporary folder, reads the
numbers it prints, and compares every number its patterns find in the passages marked with
its name: a quoted number matches when it agrees with the printed one to the quoted
precision (0.952 quotes anything printed from 0.9515 to 0.9525). A check whose patterns find
nothing in its passages fails too (the page was reworded: update the pattern). Exit 1 on any
difference, with one line per number: the page, the quote and what was printed.

Cheap checks (no training) run in ``tests/test_docs.py``; the expensive ones train networks
and are run by hand after a change that moves them (their passages say which command and
machine produced them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"<!--\s*check_numbers:\s*(?P<name>[\w-]+)\s*-->")
NUMBER = r"[−-]?\d[\d ]*(?:\.\d+)?(?:e[−+-]?\d+)?"

Values = dict[str, str]


@dataclass(frozen=True)
class Check:
    """A command, how to read its numbers, and the quotes to compare with them: each pattern's
    named groups name printed values (``__`` in a group name stands for ``.``)."""

    command: list[str]
    read: Callable[[str, Path], Values]
    patterns: list[str]
    cheap: bool
    env: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading output


def compare_values(out: str, folder: Path) -> Values:
    """``hpo compare``'s summary table (SAMPLER.median|min|max) and verdict sentences
    (friedman.chi2, friedman.p, A>B.p|a12|diff|wins)."""
    values: Values = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:3] == ["sampler", "repeats", "median_best"]:
            for row in lines[i + 1:]:
                cells = row.split()
                if len(cells) < 5 or not cells[1].isdigit():
                    break
                name = cells[0]
                values.update({f"{name}.median": cells[2], f"{name}.min": cells[3],
                               f"{name}.max": cells[4]})
    friedman = re.search(r"chi2 = (\S+), p = ([^:,\s]+)", out)
    if friedman:
        values["friedman.chi2"], values["friedman.p"] = friedman.group(1), friedman.group(2)
    for pair in re.finditer(r"(\w+) beats (\w+): p_holm = (\S+), A12 = (\S+) \(\w+\), median "
                            r"paired difference (\S+), better in (\d+) of \d+ repeats", out):
        key = f"{pair.group(1)}>{pair.group(2)}"
        values.update({f"{key}.p": pair.group(3).rstrip(","), f"{key}.a12": pair.group(4),
                       f"{key}.diff": pair.group(5).rstrip(","), f"{key}.wins": pair.group(6)})
    return values


def run_values(out: str, folder: Path) -> Values:
    """``hpo run``'s closing lines: the best value and its parameters."""
    values: Values = {}
    best = re.search(r"best hypervolume (\S+) \(trial (\d+)\)", out)
    if best:
        values["value"], values["trial"] = best.group(1), best.group(2)
        params = out[best.end():].splitlines()[1]
        for item in params.split(","):
            key, _, value = item.strip().partition("=")
            values[f"param.{key}"] = value
    return values


def search_values(out: str, folder: Path) -> Values:
    """``python -m search_core --out DIR``: per probe accuracy, parameters and op counts
    (family.csv), controllability overall and per op (summary.json)."""
    import csv

    values: Values = {}
    with (folder / "demo" / "family.csv").open() as f:
        for row in csv.DictReader(f):
            probe = row["probe"]
            values[f"{probe}.accuracy"] = row["accuracy"]
            values[f"{probe}.params"] = row["params"]
            for key, value in row.items():
                if key.startswith("n_"):
                    values[f"{probe}.{key}"] = value
    summary = json.loads((folder / "demo" / "summary.json").read_text())
    values["controllability"] = repr(summary["controllability"])
    for op, value in summary["controllability_per_op"].items():
        values[f"controllability.{op}"] = repr(value)
    return values


def _probe_row(probe: str) -> str:
    """A row of the probe table: | A... | (s) | acc | params | pool / skip / conv |."""
    return (rf"\| {probe}[^|]*\|[^|]*\| (?P<{probe}__accuracy>{NUMBER}) \| "
            rf"(?P<{probe}__params>{NUMBER}) \| (?P<{probe}__n_max_pool_3x3>\d+) / "
            rf"(?P<{probe}__n_skip_connect>\d+) / (?P<{probe}__n_sep_conv_3x3>\d+) \|")


def _compare_row(sampler: str) -> str:
    return (rf"\| {sampler}[^|]*\| (?P<{sampler}__median>{NUMBER}) \| "
            rf"(?P<{sampler}__min>{NUMBER}) \| (?P<{sampler}__max>{NUMBER}) \|")


SYNTHETIC = ["hpo", "compare", "--study", "low-dim-synthetic", "--samplers", "grid,random,tpe",
             "--trials", "30", "-q", "--storage", "c.journal"]

CHECKS: dict[str, Check] = {
    # the synthetic comparison of guides/compare.md and benchmarks.md: a few seconds
    "synthetic-5": Check(
        [*SYNTHETIC, "--repeats", "5"], compare_values, cheap=True, patterns=[
            rf"median best of (?P<tpe__median>{NUMBER}) for TPE, (?P<random__median>{NUMBER}) "
            rf"for random search and (?P<grid__median>{NUMBER}) for the grid",
            *(_compare_row(s) for s in ("random", "tpe", "grid")),
        ]),
    # the same at 30 repeats (benchmarks.md): about a minute
    "synthetic-30": Check(
        [*SYNTHETIC, "--repeats", "30"], compare_values, cheap=False, patterns=[
            *(_compare_row(s) for s in ("random", "tpe", "grid")),
            rf"χ² = (?P<friedman__chi2>{NUMBER}), p = (?P<friedman__p>{NUMBER})",
            *(rf"{a} beats {b}: p_holm = (?P<{a}_{b}__p>{NUMBER}), A12 = (?P<{a}_{b}__a12>"
              rf"{NUMBER})[^+−-]*(?P<{a}_{b}__diff>[+−-]{NUMBER}), (?:better in )?"
              rf"(?P<{a}_{b}__wins>\d+) of 30"
              for a, b in (("random", "grid"), ("tpe", "grid"), ("tpe", "random"))),
        ]),
    # trial 0 of the quick start (getting-started.md): one digits trial, about 20 s
    "digits-trial0": Check(
        ["hpo", "run", "--sampler", "tpe", "--trials", "1", "--jobs", "1", "--threads", "1",
         "-q", "--storage", "h.journal", "--artifacts", "runs"], run_values, cheap=False,
        patterns=[
            rf"best hypervolume (?P<value>{NUMBER})",
            rf"kappa=(?P<param__kappa>{NUMBER}), t_start=(?P<param__t_start>{NUMBER}), "
            rf"t_end=(?P<param__t_end>{NUMBER}), schedule=\w+, num_refs=(?P<param__num_refs>"
            rf"\d+), placement=\w+, bandwidth=(?P<param__bandwidth>{NUMBER})",
        ]),
    # one 30-epoch digits search (guides/search-python.md): about a minute on one thread
    "digits-search": Check(
        [sys.executable, "-m", "search_core", "--epochs", "30", "--kappa", "1", "--threads", "1",
         "--out", "demo"], search_values, cheap=False, patterns=[
            rf"probe A reaches \*\*(?P<A__accuracy>{NUMBER})\*\*",
            rf"controllability \*\*(?P<controllability>{NUMBER})\*\* \(per op: pool "
            rf"(?P<controllability__max_pool_3x3>{NUMBER}), skip "
            rf"(?P<controllability__skip_connect>{NUMBER}), conv "
            rf"(?P<controllability__sep_conv_3x3>{NUMBER})\)",
            *(_probe_row(p) for p in "ABCD"),
        ]),
}
# mapping a pattern group to a value key: A__accuracy -> A.accuracy, tpe_random__p -> tpe>random.p
PAIR_GROUP = re.compile(r"^(?P<a>[a-z]+)_(?P<b>[a-z]+)__(?P<rest>\w+)$")


def value_key(group: str) -> str:
    pair = PAIR_GROUP.match(group)
    if pair and pair.group("a") in ("random", "tpe", "grid"):
        return f"{pair.group('a')}>{pair.group('b')}.{pair.group('rest')}"
    return group.replace("__", ".")


# --------------------------------------------------------------------------- the pages


def passages() -> Iterator[tuple[str, str, str]]:
    """(check name, page, text) for every marked passage; whitespace folded to spaces."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for marker in MARKER.finditer(text):
            rest = text[marker.end():]
            stop = re.search(r"^#{1,6} |<!--\s*check_numbers:", rest, re.MULTILINE)
            body = rest[: stop.start()] if stop else rest
            yield marker.group("name"), str(page.relative_to(ROOT)), " ".join(body.split())


def _decimal(text: str) -> Decimal:
    return Decimal(text.replace("−", "-").replace(" ", "").replace("\u202f", ""))


def agrees(quoted: str, printed: str) -> bool:
    """``quoted`` is ``printed`` to the quoted precision (half a unit of the last quoted digit,
    plus half a unit of the last printed one)."""
    try:
        q, p = _decimal(quoted), _decimal(printed)
    except InvalidOperation:
        return False
    q_unit = Decimal(1).scaleb(q.as_tuple().exponent)  # type: ignore[arg-type]
    p_unit = Decimal(1).scaleb(p.as_tuple().exponent)  # type: ignore[arg-type]
    if "." not in printed or len(printed.split(".")[-1]) > 6:  # a count, or a float's repr
        p_unit = Decimal(0)
    return abs(q - p) <= (q_unit + p_unit) / 2


def run_check(name: str, check: Check) -> Values:
    with tempfile.TemporaryDirectory(prefix=f"check-{name}-") as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", **check.env}
        done = subprocess.run(check.command, cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=1800)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise SystemExit(f"check_numbers: {name}: {' '.join(check.command)} exited "
                             f"{done.returncode}:\n{output[-2000:]}")
        return check.read(done.stdout, Path(tmp))


def compare(name: str, check: Check, values: Values,
            texts: list[tuple[str, str]]) -> list[str]:
    problems = []
    found = 0
    for pattern in check.patterns:
        for page, text in texts:
            for match in re.finditer(pattern, text):
                for group, quoted in match.groupdict().items():
                    found += 1
                    key = value_key(group)
                    printed = values.get(key)
                    if printed is None:
                        problems.append(f"{page}: {name}: the command printed no {key} "
                                        f"(quoted {quoted})")
                    elif not agrees(quoted, printed):
                        problems.append(f"{page}: {name}: {key} is quoted as {quoted}; the "
                                        f"command printed {printed}")
        if not any(re.search(pattern, text) for _, text in texts):
            problems.append(f"{name}: no passage matches the pattern {pattern[:70]}...; "
                            "update docs/check_numbers.py with the page")
    if not found and not problems:
        problems.append(f"{name}: no quoted number found")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="the expensive checks too")
    parser.add_argument("--show", action="store_true", help="print the values read")
    parser.add_argument("names", nargs="*", help="only these checks")
    args = parser.parse_args(argv)
    marked: dict[str, list[tuple[str, str]]] = {}
    problems = []
    for name, page, text in passages():
        if name not in CHECKS:
            problems.append(f"{page}: marker names an unknown check {name!r}; known: "
                            f"{', '.join(CHECKS)}")
        marked.setdefault(name, []).append((page, text))
    for name in CHECKS:
        if name not in marked:
            problems.append(f"{name}: no page has a <!-- check_numbers: {name} --> marker")
    chosen = args.names or [n for n, c in CHECKS.items() if c.cheap or args.all]
    for name in chosen:
        check = CHECKS[name]
        values = run_check(name, check)
        if args.show:
            print(f"== {name}: {' '.join(check.command)}")
            print(json.dumps(values, indent=1))
        problems += compare(name, check, values, marked.get(name, []))
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"check_numbers: {', '.join(chosen)}: every quoted number is what the command "
              "prints")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
