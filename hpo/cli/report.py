"""``hpo report [NAME_OR_GROUP ...] [--out DIR] [--storage URL] [--latency TABLE.json]``.

Only argparse at import time: matplotlib, pandas and optuna load when the command runs.
"""

from __future__ import annotations

import argparse

from hpo.cli.common import Subparsers, add_storage


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    report = subparsers.add_parser(
        "report", help="figures, CSV tables and one index.html for studies or compare groups")
    report.add_argument("names", nargs="*", metavar="NAME_OR_GROUP",
                        help="study names and/or comparison-group names (optional with "
                             "--latency)")
    report.add_argument("--out", default="report",
                        help="folder for index.html, figures, CSV (default report/)")
    report.add_argument("--latency", default=None, metavar="TABLE.json",
                        help="also report this latency table (hpo profile --out FILE): "
                             "predicted vs measured, correction, machine, parts")
    add_storage(report)
    report.set_defaults(handler=cmd_report)
    return report


def cmd_report(args: argparse.Namespace) -> int:
    import optuna

    from reports.html import write_report
    from search_core.errors import require_extra

    require_extra("matplotlib", "plot", "hpo report")  # before any file is written
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # pooled importance makes studies
    index = write_report(args.storage, list(args.names), args.out, latency=args.latency)
    print(f"report: {index}")
    return 0
