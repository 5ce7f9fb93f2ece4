"""Does a cheap fidelity rank configurations like a costlier one?

    python benchmarks/fidelity_agreement.py studies/fashion-mnist-cpu.yaml \\
        --high channels=16 --configs 6 --seeds 0 --out runs/fidelity.jsonl

Draws ``--configs`` configurations of the study's space (Optuna's random sampler, seed
``--sample-seed``), evaluates each with the study's objective at its own fidelity ("low") and
at the fidelity with ``--high`` applied ("high": KEY=VALUE of the study's fidelity keys,
comma-separated), with every search seed of ``--seeds``, and prints per configuration the
values, and Kendall's tau and Spearman's rho between the fidelities (95 % bootstrap
intervals), with the seconds one evaluation takes at each. With two or more seeds it also
prints the agreement of the low fidelity with itself over seeds: the most any fidelity can
agree with another while seeds move values that much.

Each evaluation is appended to ``--out`` (JSON lines) as it finishes, and a rerun skips
those already there: a killed run loses at most the evaluations in flight. ``--jobs`` runs
evaluations in that many processes, one torch thread each. Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from search_core.threads import configure_process

FIDELITY_KEYS = ("epochs", "train_limit", "val_limit", "channels")


def parse_fidelity(text: str) -> dict[str, int]:
    changes = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in FIDELITY_KEYS or not value.isdigit():
            raise SystemExit(f"--high: got {item!r}; expected KEY=INTEGER with KEY one of "
                             f"{', '.join(FIDELITY_KEYS)}")
        changes[key] = int(value)
    return changes


def configurations(study_path: str, count: int, seed: int) -> list[dict[str, Any]]:
    import optuna

    from hpo.study import load_study
    from hpo.trial import suggest_all

    spec = load_study(study_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest_all(study.ask(), spec) for _ in range(count)]


def evaluate_one(job: dict[str, Any]) -> dict[str, Any]:
    """One search + family evaluation of ``job``'s configuration at its fidelity."""
    configure_process(threads=1)
    from hpo.evaluation import evaluate, reference_complexity
    from hpo.study import load_study

    spec = load_study(job["study"])
    spec = dataclasses.replace(spec, fidelity=dataclasses.replace(spec.fidelity,
                                                                  **job["fidelity"]))
    result = evaluate(spec, job["params"], job["seed"], reference_complexity(spec), threads=1)
    return {**job, "value": result.values[0], "seconds": result.seconds}


def done_keys(path: Path) -> dict[tuple[int, str, int], dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(row["config"], row["level"], row["seed"]): row for row in rows}


def summarise(rows: list[dict[str, Any]], seeds: list[int]) -> None:
    from reports.fidelity import rank_correlation

    value = {(r["config"], r["level"], r["seed"]): r["value"] for r in rows}
    configs = sorted({r["config"] for r in rows})
    mean = {(c, level): statistics.fmean(value[c, level, s] for s in seeds
                                         if (c, level, s) in value)
            for c in configs for level in ("low", "high")}
    print("config  low (mean over seeds)  high")
    for c in configs:
        print(f"{c:6d}  {mean[c, 'low']:.4f}                 {mean[c, 'high']:.4f}")
    low = [mean[c, "low"] for c in configs]
    high = [mean[c, "high"] for c in configs]
    for method in ("kendall", "spearman"):
        corr, (a, b) = rank_correlation(low, high, method)
        print(f"{method:8s} low vs high over {len(configs)} configurations: {corr:+.2f} "
              f"[{a:+.2f}, {b:+.2f}]")
    if len(seeds) >= 2:
        first = [value[c, "low", seeds[0]] for c in configs]
        second = [value[c, "low", seeds[1]] for c in configs]
        corr, (a, b) = rank_correlation(first, second, "kendall")
        print(f"kendall  low, seed {seeds[0]} vs seed {seeds[1]}: {corr:+.2f} [{a:+.2f}, {b:+.2f}]")
        for seed in seeds:
            if all((c, "high", seed) in value for c in configs):
                corr, (a, b) = rank_correlation([value[c, "low", seed] for c in configs],
                                                [value[c, "high", seed] for c in configs],
                                                "kendall")
                print(f"kendall  low vs high, both seed {seed}: {corr:+.2f} "
                      f"[{a:+.2f}, {b:+.2f}]")
    for level in ("low", "high"):
        seconds = [r["seconds"] for r in rows if r["level"] == level]
        print(f"seconds per evaluation, {level}: median {statistics.median(seconds):.0f} "
              f"(n={len(seconds)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--high", required=True, help="fidelity changes, e.g. channels=16")
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--seeds", default="0", help="search seeds, comma-separated")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--levels", default="low,high",
                        help="which fidelities to evaluate now (e.g. low: add a seed of the "
                             "low fidelity only, for its agreement with itself)")
    args = parser.parse_args()
    levels = [level for level in args.levels.split(",") if level in ("low", "high")]
    seeds = [int(s) for s in args.seeds.split(",")]
    high = parse_fidelity(args.high)
    params = configurations(args.study, args.configs, args.sample_seed)
    done = done_keys(args.out)
    jobs = [{"study": args.study, "config": c, "level": level, "seed": seed,
             "fidelity": {} if level == "low" else high, "params": params[c]}
            for seed in seeds for level in levels for c in range(args.configs)
            if (c, level, seed) not in done]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, args.out.open("a") as out:
        for future in as_completed([pool.submit(evaluate_one, job) for job in jobs]):
            row = future.result()
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"config {row['config']} {row['level']} seed {row['seed']}: "
                  f"{row['value']:.4f} in {row['seconds']:.0f} s", flush=True)
    summarise(list(done_keys(args.out).values()), seeds)


if __name__ == "__main__":
    main()
