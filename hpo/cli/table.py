"""``hpo table build|show``: a tabular benchmark of a study's objective."""

from __future__ import annotations

import argparse

from hpo.cli.common import Subparsers, add_debug
from search_core.device import add_device_arguments


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    table = subparsers.add_parser("table", help="tabular benchmark of a study's objective")
    sub = table.add_subparsers(dest="table_command", required=True)
    build = sub.add_parser("build", help="evaluate N configurations x K seeds into a table")
    build.add_argument("--study", required=True, help="study file whose objective to tabulate")
    build.add_argument("--configs", type=int, required=True,
                       help="Sobol configurations (the study's grid cells come on top)")
    build.add_argument("--seeds", type=int, default=2, help="seeds per configuration (0..K-1)")
    build.add_argument("--subset", type=int, default=0, metavar="N",
                       help="the first N configurations of the design (grid cells first) get "
                            "--subset-seeds seeds instead (a seed-structured table)")
    build.add_argument("--subset-seeds", type=int, default=0, metavar="K",
                       help="seeds 0..K-1 for the --subset configurations")
    build.add_argument("--jobs", type=int, default=1, help="evaluations at once (one process "
                                                           "and thread each)")
    build.add_argument("--design-seed", type=int, default=0, help="seed of the Sobol design")
    build.add_argument("--out", default=None, help="table file (default tables/STUDY.csv)")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_device_arguments(build)
    add_debug(build)
    show = sub.add_parser("show", help="a table's size, cost and surrogate fit")
    show.add_argument("path", help="table file (CSV) written by hpo table build")
    add_debug(show)
    table.set_defaults(handler=cmd_table)
    return table


def cmd_table(args: argparse.Namespace) -> int:
    from hpo.table_build import TableRequest, build_table, show_table

    if args.table_command == "show":
        print("\n".join(show_table(args.path)))
        return 0
    print(build_table(TableRequest(
        study=args.study, configs=args.configs, seeds=args.seeds, jobs=args.jobs,
        design_seed=args.design_seed, out=args.out, quiet=args.quiet, device=args.device,
        precision=args.precision, subset=args.subset, subset_seeds=args.subset_seeds)))
    return 0
