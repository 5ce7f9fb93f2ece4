"""The ``hpo`` command: run, compare, list, show, export, train, reevaluate, table, report,
bench, profile.

Every entry point is ``main(argv) -> int``; bad input prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from hpo import bench as bench_cli
from hpo import profile as profile_cli
from hpo import reevaluate, table, train_cli
from hpo.storage import STORAGE_HELP
from reports import cli as report_cli
from search_core.device import add_device_arguments
from search_core.errors import NasHpoError, disk_full
from search_core.threads import configure_process

EXIT_BAD_INPUT = 2
EXIT_DISK_FULL = 4  # resumable: rerun the same command once there is space
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
MAX_MESSAGE = 400  # characters of an error line


def _bounded(message: str) -> str:
    """One line of at most MAX_MESSAGE characters."""
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default=None,
                        help=STORAGE_HELP)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")


def _placement(parser: argparse.ArgumentParser) -> None:
    """Where trials run: --device, --precision, --trials-per-gpu."""
    add_device_arguments(parser)
    parser.add_argument("--trials-per-gpu", type=int, default=1,
                        help="local: workers per visible GPU on a GPU machine (default 1)")


def build_parser() -> argparse.ArgumentParser:
    from hpo.samplers import PRUNERS, SAMPLERS

    parser = argparse.ArgumentParser(prog="hpo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) a study")
    run.add_argument("--study", default=None, help="study file (default studies/digits.yaml)")
    run.add_argument("--sampler", default="tpe", help=f"one of {', '.join(SAMPLERS.names())}")
    run.add_argument("--trials", type=int, default=20, help="complete trials of the study")
    run.add_argument("--timeout", type=float, default=None, help="stop asking after S seconds")
    run.add_argument("--jobs", type=int, default=None,
                     help="trials at once, in worker processes (default: one per CPU)")
    run.add_argument("--seed", type=int, default=0, help="sampler and search seed")
    run.add_argument("--name", default=None, help="study name (default: the study file's)")
    run.add_argument("--pruner", default="none", help=f"one of {', '.join(PRUNERS.names())}")
    run.add_argument("--max-failures", type=int, default=5, help="stop after N failed trials")
    run.add_argument("--reevaluate", type=int, default=0, metavar="K",
                     help="at the end, run the top 3 configurations again with K fresh seeds "
                          "each (as hpo reevaluate)")
    run.add_argument("--artifacts", default="runs", help="folder for trial checkpoints")
    run.add_argument("--data-root", default=None,
                     help="folder with the data set's files (sets NAS_HPO_DATA)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch threads per trial (default: CPUs / trials at once)")
    run.add_argument("--backend", default="local", help="local (processes) or ray (Ray Tune)")
    run.add_argument("--address", default=None,
                     help="ray: join a running cluster (auto or HOST:PORT); default: start one")
    run.add_argument("--concurrency", type=int, default=None, help="ray: trials at once")
    run.add_argument("--cpus-per-trial", type=int, default=1,
                     help="ray: CPUs reserved per trial = torch threads per trial")
    run.add_argument("--retries", type=int, default=2,
                     help="ray: retries of a trial whose worker died")
    run.add_argument("--gpus-per-trial", type=float, default=0.0,
                     help="ray: GPUs per trial; a fraction shares a GPU (0.25: four trials)")
    _placement(run)
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    _common(run)

    cmp = sub.add_parser("compare", help="compare samplers at equal budget, with repeats")
    cmp.add_argument("--study", default=None, help="study file (default studies/digits.yaml)")
    cmp.add_argument("--samplers", required=True, help="comma-separated, e.g. grid,random,tpe")
    cmp.add_argument("--trials", type=int, required=True, help="budget per sampler and repeat")
    cmp.add_argument("--repeats", type=int, default=3, help="seeds per sampler")
    cmp.add_argument("--name", default=None, help="comparison group (default STUDY-compare)")
    cmp.add_argument("--seed", type=int, default=0, help="seed of repeat 0 (repeat r: +r)")
    cmp.add_argument("--backend", default="local", help="local or ray")
    cmp.add_argument("--jobs", type=int, default=None,
                     help="trials at once per study (default: one per CPU)")
    cmp.add_argument("--artifacts", default="runs", help="folder for trial checkpoints")
    cmp.add_argument("--threads", type=int, default=None,
                     help="torch threads per trial (default: CPUs / trials at once)")
    _placement(cmp)
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cmp.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    _common(cmp)

    lst = sub.add_parser("list", help="list the studies in a storage")
    _common(lst)

    show = sub.add_parser("show", help="show a study's trials")
    show.add_argument("name")
    show.add_argument("--format", choices=("table", "json", "csv"), default="table")
    show.add_argument("--timing", action="store_true",
                      help="also print where the wall time went (trial vs harness overhead)")
    _common(show)

    export = sub.add_parser("export", help="export a family member's genotype (and model)")
    export.add_argument("name")
    export.add_argument("--trial", default="best", help="trial number or 'best'")
    pick = export.add_mutually_exclusive_group(required=True)
    pick.add_argument("--s", help="complexity vector, e.g. 0.2,0.2,0.6")
    pick.add_argument("--latency-budget", default=None, metavar="DURATION",
                      help="pick the most accurate member measured under it, e.g. 2ms "
                           "(searches over s)")
    export.add_argument("--latency-table", default=None,
                        help="with --latency-budget: table from hpo profile to skip "
                             "architectures predicted far over budget")
    export.add_argument("--threads", type=int, default=1,
                        help="with --latency-budget: torch threads when measuring")
    export.add_argument("--batch", type=int, default=1,
                        help="with --latency-budget: batch size the budget is for")
    export.add_argument("--out", required=True, help="genotype JSON file to write")
    export.add_argument("--model", default=None, help="also write the network weights here")
    # where the member's accuracy and the model's BN statistics are computed; the model is
    # written from the CPU whatever the device
    add_device_arguments(export)
    _common(export)

    report_cli.add_parser(sub)
    bench_cli.add_parser(sub)
    profile_cli.add_parser(sub)
    train_cli.add_parser(sub)
    reevaluate.add_parser(sub)
    table.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # before anything imports torch: OpenMP reads its wait policy once (search_core/threads.py)
    configure_process(wait=getattr(args, "openmp_wait", None))
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from hpo import commands

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": commands.cmd_run,
        "compare": commands.cmd_compare,
        "report": report_cli.cmd_report,
        "bench": bench_cli.cmd_bench,
        "profile": profile_cli.cmd_profile,
        "list": commands.cmd_list,
        "show": commands.cmd_show,
        "export": commands.cmd_export,
        "train": train_cli.cmd_train,
        "reevaluate": reevaluate.cmd_reevaluate,
        "table": table.cmd_table,
    }
    try:
        return handlers[args.command](args)
    except NasHpoError as err:
        if args.debug:
            raise
        print(f"hpo {args.command}: error: {_bounded(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away (hpo list | head): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python's documented remedy
        return 0
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        print(f"hpo {args.command}: {err or 'interrupted; rerun the same command to resume'}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if args.debug or not disk_full(err):
            raise
        where = f" ({err.filename})" if err.filename else ""
        print(f"hpo {args.command}: error: {err.strerror or err}{where}; free some space and "
              "run the same command again: complete trials are kept, and the trials that "
              "were running start again", file=sys.stderr)
        return EXIT_DISK_FULL


if __name__ == "__main__":
    sys.exit(main())
