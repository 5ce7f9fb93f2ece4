"""The shape of the code: the layers (the command line on top, then the report, the harness
library, the compression stages, the search), no import circles between files or between
packages, no import that runs up a layer, no product module over 500 lines, torch only where
it is needed, private attributes of other libraries' objects in the compatibility modules
only, and a new objective is one module plus one registry line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from hpo_helpers import Hpo

from hpo.objectives import OBJECTIVES, Objective
from hpo.records import RAY_ATTRS, SCALAR_ATTRS, TrialRecord

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hpo", "search_core", "reports", "compress")
# The layers, top first. A module imports its own layer or those below, never one above:
# only the two front doors, the command line (hpo.cli) and the Python API (hpo.api), import
# the report; the search (search_core) and the compression stages (compress) import nothing
# of the harness or the report.
LAYERS = ("hpo.cli", "hpo.api", "reports", "hpo", "compress", "search_core")
# python -m hpo is the command line; the package's names (hpo.run, ...) are the API's
ENTRY_POINTS = {"hpo.__main__": "hpo.cli", "hpo": "hpo.api"}
MAX_LINES = 500


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


def layer(module: str) -> str:
    """The layer a module belongs to: the longest prefix in ``LAYERS``."""
    if module in ENTRY_POINTS:
        return ENTRY_POINTS[module]
    return max((name for name in LAYERS if module == name or module.startswith(f"{name}.")),
               key=len)


def test_every_product_module_is_in_a_layer() -> None:
    graph = import_graph()
    assert {layer(module) for module in graph} == set(LAYERS)


@pytest.mark.slow
def test_no_import_runs_up_a_layer() -> None:
    """Nothing outside the front doors imports ``reports``; ``search_core`` and
    ``compress`` import nothing above them."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(f"{module} -> {target}" for module, targets in import_graph().items()
                    for target in targets if rank[layer(target)] < rank[layer(module)])
    assert upward == []


def test_the_packages_have_no_circles() -> None:
    graph = import_graph()
    packages = {layer(module): set() for module in graph}
    for module, targets in graph.items():
        packages[layer(module)] |= {layer(t) for t in targets} - {layer(module)}
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages) or [])


def test_no_product_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for package in PACKAGES
            for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.slow
@pytest.mark.parametrize("module", ["hpo.study", "hpo.records", "hpo.objectives",
                                    "hpo.options", "hpo.stopping", "reports.study_frames",
                                    "reports.group_frames", "reports.fidelity",
                                    "search_core.threads", "search_core.machine",
                                    "search_core.timing_settings", "compress",
                                    "compress.settings", "compress.stages", "hpo.pipeline"])
def test_importing_loads_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "False", f"importing {module} loads torch"


COMPAT = {"hpo/compat_optuna.py", "hpo/compat_ray.py"}  # Optuna's and Ray's private parts
# Private names of other libraries that are part of how those libraries are used, each with
# its reason: argparse documents add_subparsers' return type only by this name; torch's
# multi-tensor kernels (the optimiser's step); BatchNorm's common base class; os._exit, the
# documented way for a child process to end at once (a worker whose driver died).
ALLOWED_PRIVATE = {"_SubParsersAction", "_foreach_add_", "_foreach_lerp_", "_foreach_mul_",
                   "_foreach_mul", "_BatchNorm", "_exit"}


def private_uses(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``, ``cls`` or ``super()``: another object's
    private attribute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
            continue
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.slow
def test_private_attributes_of_other_objects_only_in_the_compat_modules() -> None:
    uses = [use for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            if str(p.relative_to(ROOT)) not in COMPAT for use in private_uses(p)
            if use.rsplit(".", 1)[-1] not in ALLOWED_PRIVATE]
    assert uses == []
    compat = [use for name in sorted(COMPAT) for use in private_uses(ROOT / name)]
    assert compat, "the compatibility modules are where the private attributes are"


def test_the_private_attribute_check_finds_one(tmp_path: Path) -> None:
    path = ROOT / "tests" / "_private_probe.py"
    path.write_text("def f(study, self):\n    return study._storage, self._x\n")
    try:
        assert [use.split(": ")[1] for use in private_uses(path)] == ["study._storage"]
    finally:
        path.unlink()


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


@pytest.mark.slow
def test_a_new_objective_is_one_registry_line(cli: Hpo) -> None:
    with OBJECTIVES.temporarily("family_size", Objective(
            ("maximize",), "distinct architectures", from_family=family_size)):
        study = cli.write_study(lambda raw: raw["objective"].update(kind="family_size"))
        result = cli.run("--trials", 2, "--sampler", "random", study=study)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        genotypes = {row["genotype"] for row in TrialRecord.from_frozen(trial).family}
        assert trial.value == len(genotypes) >= 1
