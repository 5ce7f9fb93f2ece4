"""``python -m search_core``: one search on a data set, then its family table.

    python -m search_core --epochs 30 --kappa 0.5 --out runs/digits-search
    python -m search_core --device cuda --precision bf16 --out runs/digits-gpu

With ``--out``, the search keeps a resume point in ``OUT/search-state.pt`` (written after
every epoch): the same command run again after an interruption continues after the last
finished epoch, and the point is deleted once checkpoint.pt, family.csv and summary.json are
written. Torch is imported only after the thread policy is in the environment
(search_core/threads.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from search_core.device import add_device_arguments
from search_core.errors import NasHpoError
from search_core.threads import configure_process, threads_per_trial, usable_cpus

if TYPE_CHECKING:
    from search_core.config import SearchConfig
    from search_core.engine import EpochMetrics

STATE_FILE = "search-state.pt"  # the resume point under --out

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
                   help="torch threads (default: every usable CPU: one search alone)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for checkpoint.pt, family.csv and summary.json (and, while "
                        f"the search runs, its resume point {STATE_FILE})")
    add_device_arguments(p, default_device="auto")
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
        device=args.device,
        precision=args.precision or "fp32",
    )


def report_epoch(m: EpochMetrics) -> None:
    print(f"epoch {m.epoch + 1:3d}/{m.epochs}  t={m.temperature:.3f}  loss={m.train_loss:.3f}  "
          f"train_acc={m.train_acc:.3f}  val_acc={m.val_acc:.3f}  {m.seconds:.1f}s", flush=True)


class EpochReporter:
    """Prints every epoch, and first "resumed after epoch N" when the search resumed."""

    def __init__(self) -> None:
        self.announced = False

    def __call__(self, m: EpochMetrics) -> None:
        if m.epoch > 0:
            self.resumed(m.epoch)
        self.announced = True  # a first epoch numbered 0: a fresh search
        report_epoch(m)

    def resumed(self, after: int | None) -> None:
        if after is not None and not self.announced:
            print(f"resumed after epoch {after}", flush=True)
        self.announced = True


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    try:
        args = parse_args(argv)
        threads = threads_per_trial(args.threads if args.threads else usable_cpus())
        configure_process(threads)  # before torch is imported
        from search_core.data import load_data
        from search_core.device import check_device_precision, resolve_device
        from search_core.engine import search

        config = build_config(args, threads)
        # a device this machine lacks: one line before --out is made
        check_device_precision(resolve_device(config.device), config.precision)
        data = load_data(config.data)
        state = None
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            state = args.out / STATE_FILE
        reporter = EpochReporter()
        result = search(config, data, on_epoch=reporter, state=state)
        reporter.resumed(result.resumed_from)  # when every epoch was done before
        table = result.family(data)
    except NasHpoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    frame = table.to_frame().drop(columns=["genotype"])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = {"search_seconds": round(result.seconds, 1), **table.summary(),
               **result.device, "precision": config.precision,
               "resumed_from": result.resumed_from}
    print(json.dumps(summary, indent=1))
    if args.out is not None and state is not None:
        result.save(args.out / "checkpoint.pt")
        table.to_frame().to_csv(args.out / "family.csv", index=False)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
        state.unlink(missing_ok=True)  # the result is safe: no resume point needed
    return 0


if __name__ == "__main__":
    sys.exit(main())
