"""``python -m search_core``: one search on a data set, then its family table.

    python -m search_core --epochs 30 --kappa 0.5 --out runs/digits-search

Torch is imported only after the thread policy is in the environment (search_core/threads.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from search_core.errors import NasHpoError
from search_core.threads import configure_process, threads_per_trial

if TYPE_CHECKING:
    from search_core.config import SearchConfig
    from search_core.engine import EpochMetrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m search_core", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", help="data set name (default: digits)")
    p.add_argument("--data-root", default=None, help="folder with the data set's files")
    p.add_argument("--ops", default="max_pool_3x3,skip_connect,sep_conv_3x3")
    p.add_argument("--cells", type=int, default=3)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--kappa", type=float, default=0.5)
    p.add_argument("--placement", default="vertices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the thread policy's, 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for checkpoint.pt, family.csv and summary.json")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace, threads: int) -> SearchConfig:
    from search_core.config import HyperNetConfig, SearchConfig, SearchSpace, TrainConfig
    from search_core.data import DataConfig

    return SearchConfig(
        space=SearchSpace(ops=tuple(args.ops.split(",")), cells=args.cells, nodes=args.nodes,
                          channels=args.channels),
        hypernet=HyperNetConfig(placement=args.placement),
        train=TrainConfig(epochs=args.epochs, kappa=args.kappa),
        data=DataConfig(name=args.data, root=args.data_root),
        seed=args.seed,
        threads=threads,
    )


def report_epoch(m: EpochMetrics) -> None:
    print(f"epoch {m.epoch + 1:3d}/{m.epochs}  t={m.temperature:.3f}  loss={m.train_loss:.3f}  "
          f"train_acc={m.train_acc:.3f}  val_acc={m.val_acc:.3f}  {m.seconds:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        args = parse_args(argv)
        threads = threads_per_trial(args.threads)
        configure_process(threads)  # before torch is imported
        from search_core.data import load_data
        from search_core.engine import search

        config = build_config(args, threads)
        data = load_data(config.data)
        result = search(config, data, on_epoch=report_epoch)
        table = result.family(data)
    except NasHpoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frame = table.to_frame().drop(columns=["genotype"])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = {"search_seconds": round(result.seconds, 1), **table.summary()}
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result.save(args.out / "checkpoint.pt")
        table.to_frame().to_csv(args.out / "family.csv", index=False)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
