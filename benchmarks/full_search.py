"""One fixed configuration of a study searched with several search seeds, as a trial would
(search + family evaluation), then the thesis's Table 1 (or 2) beside probes A-D.

    python benchmarks/full_search.py --study studies/fashion-mnist-exp1-full.yaml \\
        --seeds 0,1,2 --device cuda --out runs/full-exp1.jsonl

Needs no Optuna or Ray (a GPU machine without them runs it). The configuration is the
study's one-cell grid. Each search writes its resume point under ``--artifacts`` every
epoch, so a killed run continues where it stopped; a seed already in ``--out`` is not run
again. Per seed: wall seconds, the device (and GPU name), probes A-D (validation proxy,
test accuracy of the same architecture on the shared weights: reported, used for nothing),
in-cell parameters, op counts, and the family's smallest and largest member.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # seed_table beside this file

from search_core.threads import configure_process

PROBES = ("A", "B", "C", "D")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="studies/fashion-mnist-exp1-full.yaml")
    p.add_argument("--seeds", default="0")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--experiment", type=int, choices=(1, 2), default=1)
    p.add_argument("--artifacts", type=Path, default=Path("runs/full-search"))
    p.add_argument("--out", type=Path, default=Path("runs/full-search.jsonl"))
    return p.parse_args(argv)


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from seed_table import probe_numbers

    from hpo.evaluation import cached_data, evaluate, reference_complexity
    from hpo.study import load_study
    from hpo.study_config import build_search_config
    from hpo.study_spec import with_run_settings
    from search_core.device import resolve_device
    from search_core.result import SearchResult

    spec = with_run_settings(load_study(args.study), args.device, args.precision)
    params = {name: values[0] for name, values in spec.grid.items()}
    started = time.perf_counter()
    checkpoint = args.artifacts / f"{spec.name}-seed{seed}.pt"

    def progress(m: Any) -> None:
        print(f"seed {seed} epoch {m.epoch + 1}/{m.epochs} loss {m.train_loss:.3f} "
              f"val {m.val_acc:.3f} {m.seconds:.1f}s", flush=True)

    result = evaluate(spec, params, seed, reference_complexity(spec), on_epoch=progress,
                      checkpoint=checkpoint, threads=args.threads)
    wall = time.perf_counter() - started
    config = build_search_config(spec, params, seed=seed)
    data = cached_data(config.data)
    search = SearchResult.load(checkpoint)
    search.supernet.to(resolve_device(spec.device))  # the test split where it ran
    rows = {row["probe"]: row for row in result.family.rows()}  # type: ignore[union-attr]
    probes = {probe: probe_numbers(search.supernet, config.space, data, rows[probe])
              for probe in PROBES}
    sizes = [row["cell_params"] for row in rows.values()]
    return {"study": spec.name, "seed": seed, "wall_s": wall, "trial_s": result.seconds,
            "device": result.device, "precision": result.precision,
            "resumed_from": result.resumed_from, "train": len(data.train),
            "val": len(data.val), "test": len(data.test),
            "hypervolume": result.values[0], "probes": probes,
            "min_cell_params": min(sizes), "max_cell_params": max(sizes)}


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ``seed_table.print_table`` and ``print_claims`` read."""
    out = []
    for r in rows:
        name = f"seed {r['seed']}"
        out += [{"study": name, "probe": p, **r["probes"][p]} for p in PROBES]
        out.append({"study": name, "probe": "family", "min_cell_params": r["min_cell_params"],
                    "max_cell_params": r["max_cell_params"]})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_process(args.threads)
    rows = ([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
            if args.out.exists() else [])
    done = {r["seed"] for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        if seed in done:
            continue
        row = one_seed(args, seed)
        rows.append(row)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("seed", "wall_s", "device", "hypervolume")}),
              flush=True)
    from seed_table import print_claims, print_table

    for r in rows:
        print(f"seed {r['seed']}: {r['wall_s'] / 60:.1f} min on {r['device']} "
              f"({r['precision']}), {r['train']} training images, hypervolume "
              f"{r['hypervolume']:.3f}")
    print_table(table_rows(rows), args.experiment)
    print()
    print_claims(table_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
