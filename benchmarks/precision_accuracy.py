"""What bf16 autocast does to a search: its speed and its probes A-D, paired with fp32 on the
same search seeds. ``--eval-precision fp32`` measures bf16-trained supernets' families in fp32
(and compares them with fp32's): is a loss the training's or the evaluation's?

    python benchmarks/precision_accuracy.py --data fashion-mnist --train-limit 2000 \\
        --val-limit 2000 --epochs 10 --seeds 0,1,2 --out benchmarks/results/precision.jsonl

For each seed, one search per precision with everything else equal (Experiment 1 space,
16 channels, batch 64, kappa 1, the thesis's probes). Per search: its seconds, each probe's
validation proxy accuracy (what the harness optimises), the same architecture's accuracy on
the test split (reported, used for nothing), in-cell parameters and op counts. Rows are
JSON lines appended to ``--out``; a (seed, precision) already there is not run again, so the
script resumes. The summary pairs the precisions by seed: per probe the mean ± sd of
bf16 - fp32, a paired t-test with Holm's correction over the four probes, Cohen's d_z, and
the speed ratio of the searches.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from search_core.threads import configure_process

PROBES = ("A", "B", "C", "D")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--val-limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-precision", default=None,
                   help="evaluate the family (BN recalibration, validation, test) in this "
                        "precision instead of the search's: tells training from evaluation")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/precision.jsonl"))
    p.add_argument("--summary-only", action="store_true")
    return p.parse_args(argv)


def config_for(args: argparse.Namespace, seed: int, precision: str) -> Any:
    from search_core.config import SearchConfig, SearchSpace, TrainConfig
    from search_core.data import DataConfig

    val_fraction = 0.1 if args.data == "fashion-mnist" else 0.2
    return SearchConfig(
        space=SearchSpace(channels=args.channels, cells=3, nodes=4),
        train=TrainConfig(epochs=args.epochs, batch_size=64, kappa=1.0),
        data=DataConfig(name=args.data, val_fraction=val_fraction, seed=0,
                        train_limit=args.train_limit, val_limit=args.val_limit),
        seed=seed, threads=args.threads, device="cpu", precision=precision)


def run_one(args: argparse.Namespace, seed: int, precision: str) -> dict[str, Any]:
    from search_core.data import load_data
    from search_core.engine import search
    from search_core.family import evaluate_family, hard_accuracy
    from search_core.ops import op_role
    from search_core.probes import seed_probes

    config = config_for(args, seed, precision)
    data = load_data(config.data)
    result = search(config, data)
    evaluated = args.eval_precision or precision
    result.config = config.replace(precision=evaluated)  # what the family is measured in
    family = evaluate_family(result, data, seed_probes(config.space.ops),
                             complexity="cell_params")
    probes: dict[str, Any] = {}
    for member in family.members:
        roles = {"pool": 0, "conv": 0, "identity": 0}
        for op, count in member.op_counts["total"].items():
            roles[op_role(op)] += count
        test = hard_accuracy(result.supernet, member.genotype.choice(config.space), data,
                             "test", precision=evaluated)
        probes[member.probe] = {"val_acc": member.accuracy, "test_acc": test,
                                "cell_params": member.cell_params, **roles}
    return {"data": args.data, "train_limit": args.train_limit, "train": len(data.train),
            "val": len(data.val),
            "epochs": args.epochs, "channels": args.channels, "threads": args.threads,
            "seed": seed, "precision": precision, "eval_precision": evaluated,
            "search_seconds": result.seconds,
            "final_train_loss": result.history[-1]["train_loss"],
            "final_val_acc": result.history[-1]["val_acc"], "probes": probes}


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two rows the same measurement."""
    return (row["data"], row["train_limit"], row["epochs"], row["channels"], row["threads"],
            row["seed"], row["precision"], row.get("eval_precision", row["precision"]))


def summary(rows: list[dict[str, Any]], precisions: list[str]) -> None:
    import numpy as np
    from scipy import stats

    from reports.stats import holm

    base, other = precisions[0], precisions[1]
    by = {(r["seed"], r["precision"]): r for r in rows}
    seeds = sorted({s for s, p in by if (s, base) in by and (s, other) in by})
    if len(seeds) < 2:
        print(f"{len(seeds)} paired seed(s): nothing to summarise yet")
        return
    print(f"{other} - {base}, paired over seeds {seeds}")
    speed = [by[s, base]["search_seconds"] / by[s, other]["search_seconds"] for s in seeds]
    print(f"search seconds {base}: " + ", ".join(f"{by[s, base]['search_seconds']:.0f}"
                                                 for s in seeds) +
          f"; {other}: " + ", ".join(f"{by[s, other]['search_seconds']:.0f}" for s in seeds) +
          f"; speed {other}/{base}: {statistics.mean(speed):.2f}x "
          f"(per seed {', '.join(f'{v:.2f}' for v in speed)})")
    tests = []
    for probe in PROBES:
        for metric in ("val_acc", "test_acc"):
            a = np.array([by[s, base]["probes"][probe][metric] for s in seeds]) * 100
            b = np.array([by[s, other]["probes"][probe][metric] for s in seeds]) * 100
            diff = b - a
            sd = float(diff.std(ddof=1))
            p = float(stats.ttest_rel(b, a).pvalue) if sd > 0 else 1.0
            tests.append((probe, metric, a, b, diff, sd, p))
    adjusted = holm([t[-1] for t in tests])
    print(f"{'probe':5} {'metric':8} {base + ' %':>14} {other + ' %':>14} {'diff (pts)':>14} "
          f"{'d_z':>6} {'p':>6} {'p Holm':>7}")
    for (probe, metric, a, b, diff, sd, p), p_holm in zip(tests, adjusted):
        dz = float(diff.mean() / sd) if sd > 0 else float("nan")
        print(f"{probe:5} {metric:8} {a.mean():7.1f} ± {a.std(ddof=1):4.1f} "
              f"{b.mean():7.1f} ± {b.std(ddof=1):4.1f} {diff.mean():+7.2f} ± {sd:4.2f} "
              f"{dz:6.2f} {p:6.3f} {p_holm:7.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_process(args.threads)
    precisions = args.precisions.split(",")
    rows = ([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
            if args.out.exists() else [])
    if not args.summary_only:
        done = {key(r) for r in rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            for precision in precisions:
                wanted = {"data": args.data, "train_limit": args.train_limit,
                          "epochs": args.epochs, "channels": args.channels,
                          "threads": args.threads, "seed": seed, "precision": precision,
                          "eval_precision": args.eval_precision or precision}
                if key(wanted) in done:
                    continue
                row = run_one(args, seed, precision)
                rows.append(row)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"seed {seed} {precision}: {row['search_seconds']:.0f} s, probe A val "
                      f"{row['probes']['A']['val_acc']:.3f}", flush=True)
    here = (args.data, args.train_limit, args.epochs, args.channels, args.threads)
    selected = [r for r in rows if key(r)[:5] == here
                and key(r)[7] == (args.eval_precision or r["precision"])]
    summary(selected, precisions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
