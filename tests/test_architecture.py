"""The shape of the code (issue 13): no import circles, torch only where it is needed,
Optuna's and Ray's private attributes in their compatibility modules only, and a new
objective is one module plus one registry line."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hpo_helpers import Hpo

from hpo.objectives import OBJECTIVES, Objective
from hpo.records import RAY_ATTRS, SCALAR_ATTRS, TrialRecord

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hpo", "search_core", "reports")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Our modules that ``path`` imports anywhere: at module level, inside functions (a
    lazy import is still a dependency) and under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) - {module_name(p)} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_circles() -> None:
    """Not even through a lazy or a type-only import: each module can be read knowing only
    the ones below it."""
    graph = import_graph()
    assert len(graph) > 40 and graph["hpo.runner"], "the graph was read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", ["hpo.study", "hpo.records", "hpo.objectives",
                                    "hpo.options", "hpo.stopping", "reports.data",
                                    "search_core.threads", "search_core.machine"])
def test_importing_loads_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "False", f"importing {module} loads torch"


PRIVATE = re.compile(r"\._storage\b|\._trial_id\b|\._ot_trials\b|\._ot_study\b"
                     r"|\._completed_trials\b")
COMPAT = {"hpo/compat_optuna.py", "hpo/compat_ray.py"}


def test_private_attributes_of_optuna_and_ray_only_in_the_compat_modules() -> None:
    users = {str(p.relative_to(ROOT)) for package in PACKAGES
             for p in (ROOT / package).rglob("*.py") if PRIVATE.search(p.read_text())}
    assert users == COMPAT


def test_trial_record_round_trips_through_user_attrs() -> None:
    record = TrialRecord(seed=3, sampler_seed=7, worker="h:1", history=({"val_acc": 0.5},),
                         family=({"probe": "A"},), family_summary={"hypervolume": 0.4},
                         seconds=1.5, threads={"torch": 1}, checkpoint="c.pt",
                         fail_reason=None, grid_cell='{"kappa": 1}', retry_of=2,
                         heartbeat=9.0, ray={"ray_node_id": "n1"})
    attrs = record.to_user_attrs()
    assert "fail_reason" not in attrs and attrs["ray_node_id"] == "n1"
    assert set(attrs) - set(RAY_ATTRS) - set(SCALAR_ATTRS) <= set(TrialRecord.__dataclass_fields__)
    assert attrs["family_hypervolume"] == 0.4 and next(iter(attrs)) == "family_hypervolume"
    assert TrialRecord.from_user_attrs(attrs) == record
    assert record.hypervolume == 0.4


# --------------------------------------------------------------- extending: a new objective


def family_size(spec: object, table: object) -> list[float]:
    """A toy objective: how many distinct architectures the family holds (maximise)."""
    return [float(len({m.genotype for m in table.members}))]  # type: ignore[attr-defined]


def test_a_new_objective_is_one_registry_line(cli: Hpo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OBJECTIVES, "_entries", dict(OBJECTIVES._entries))  # undone after
    OBJECTIVES.add("family_size", Objective(("maximize",), "distinct architectures",
                                            from_family=family_size))
    study = cli.write_study(lambda raw: raw["objective"].update(kind="family_size"))
    result = cli.run("--trials", 2, "--sampler", "random", study=study)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        genotypes = {row["genotype"] for row in TrialRecord.from_frozen(trial).family}
        assert trial.value == len(genotypes) >= 1
