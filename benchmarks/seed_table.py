"""The thesis's Table 1 (or 2, 3) beside this implementation's probes A-D, over search seeds.

    python benchmarks/seed_table.py --experiment 1 --storage runs/results.journal \\
        exp1-subset-s0 exp1-subset-s1 exp1-subset-s2

Each named study is one search (its trial 0, or ``--trial``), typically the same
configuration with different search seeds. For probes A-D it prints, mean ± sd over the
studies: the proxy accuracy on the validation split (what the harness optimises), the same
one-hot architecture on the shared weights measured once on the test split (what the thesis's
tables report; used for nothing else), in-cell op parameters and the pool / conv / identity
counts over both cell types, beside the thesis's values; then whether the thesis's qualitative
claims hold in each search: penalising an op removes it (B has fewer convs than A, C fewer
pools, D fewer identities), B is the smallest of A-D, and the front spans small to large
models (in-cell parameters of the smallest and largest family member).
Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search_core.threads import configure_process

PROBES = ("A", "B", "C", "D")
REMOVES = {"B": "conv", "C": "pool", "D": "identity"}  # the op each probe penalises


def probe_numbers(supernet: Any, space: Any, data: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A family row's validation accuracy (%), the same architecture's test accuracy (%) on
    the shared weights (reported only), in-cell parameters and op counts by role."""
    from search_core.family import hard_accuracy
    from search_core.genotype import Genotype
    from search_core.ops import op_role

    genotype = Genotype.from_json(row["genotype"])
    roles = {"pool": 0, "conv": 0, "identity": 0}
    for op, count in genotype.op_counts()["total"].items():
        roles[op_role(op)] += count
    test = hard_accuracy(supernet, genotype.choice(space), data, "test")
    return {"val_acc": 100 * row["accuracy"], "test_acc": 100 * test,
            "cell_params": row["cell_params"], **roles}


def probe_rows(study_name: str, storage: str, trial: int) -> list[dict[str, Any]]:
    """Probes A-D of one search, and its family's smallest and largest in-cell params."""
    import optuna

    from hpo.records import TrialRecord
    from hpo.storage import open_storage
    from search_core.data import load_data
    from search_core.result import SearchResult

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    record = TrialRecord.from_frozen(study.trials[trial])
    result = SearchResult.load(record.checkpoint)
    data = load_data(result.config.data)
    family = {row["probe"]: row for row in record.family}
    rows = [{"study": study_name, "probe": probe,
             **probe_numbers(result.supernet, result.config.space, data, family[probe])}
            for probe in PROBES]
    sizes = [row["cell_params"] for row in record.family]
    rows.append({"study": study_name, "probe": "family", "min_cell_params": min(sizes),
                 "max_cell_params": max(sizes)})
    return rows


def mean_sd(values: Sequence[float], digits: int = 1) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def print_table(rows: list[dict[str, Any]], experiment: int) -> None:
    from reports.seed_results import SEED_TABLES

    seed = SEED_TABLES[experiment]
    print("| | " + " | ".join(PROBES) + " |")
    print("|---|" + "---|" * len(PROBES))
    lines = [("val accuracy % (proxy)", "val_acc", None, 1),
             ("test accuracy % (shared weights)", "test_acc", "test_acc", 1),
             ("in-cell params", "cell_params", "cell_params", 0),
             ("pool", "pool", "pool", 1), ("conv", "conv", "conv", 1),
             ("identity", "identity", "identity", 1)]
    for label, key, seed_key, digits in lines:
        cells = []
        for probe in PROBES:
            values = [r[key] for r in rows if r["probe"] == probe]
            ours = mean_sd(values, digits)
            theirs = getattr(seed[probe], seed_key) if seed_key else None
            cells.append(ours if theirs is None else f"{ours} (seed {theirs})")
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_claims(rows: list[dict[str, Any]]) -> None:
    studies = list(dict.fromkeys(r["study"] for r in rows))
    by = {(r["study"], r["probe"]): r for r in rows}
    for probe, role in REMOVES.items():
        held = [by[s, probe][role] < by[s, "A"][role] for s in studies]
        counts = ", ".join(f"{by[s, probe][role]} vs {by[s, 'A'][role]}" for s in studies)
        print(f"{probe} has fewer {role} ops than A: {sum(held)} of {len(studies)} ({counts})")
    smallest = [min(PROBES, key=lambda p, s=s: by[s, p]["cell_params"]) == "B" for s in studies]
    print(f"B is the smallest of A-D: {sum(smallest)} of {len(studies)}")
    spans = ", ".join(f"{by[s, 'family']['min_cell_params']}-{by[s, 'family']['max_cell_params']}"
                      for s in studies)
    print(f"family in-cell params, smallest-largest member: {spans}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--experiment", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--trial", type=int, default=0)
    args = parser.parse_args()
    configure_process(threads=1)
    if not Path(args.storage).exists() and "://" not in args.storage:
        raise SystemExit(f"--storage: {args.storage} not found")
    rows = [row for name in args.studies for row in probe_rows(name, args.storage, args.trial)]
    print_table(rows, args.experiment)
    print()
    print_claims(rows)


if __name__ == "__main__":
    main()
