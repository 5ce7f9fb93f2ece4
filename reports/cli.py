"""``hpo report [NAME_OR_GROUP ...] --out DIR [--storage URL] [--latency TABLE.json]``.

Only argparse at import time: matplotlib, pandas and optuna load when the command runs.
"""

from __future__ import annotations

import argparse

from hpo.storage import STORAGE_HELP


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    report = subparsers.add_parser(
        "report", help="figures, CSV tables and one index.html for studies or compare groups")
    report.add_argument("names", nargs="*", metavar="NAME_OR_GROUP",
                        help="study names and/or comparison-group names (optional with "
                             "--latency)")
    report.add_argument("--out", required=True, help="folder for index.html, figures, CSV")
    report.add_argument("--storage", default=None,
                        help=STORAGE_HELP)
    report.add_argument("--latency", default=None, metavar="TABLE.json",
                        help="also report this latency table (hpo profile --out FILE): "
                             "predicted vs measured, correction, machine, parts")
    report.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return report


def cmd_report(args: argparse.Namespace) -> int:
    import optuna

    from reports.html import write_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # pooled importance makes studies
    index = write_report(args.storage, list(args.names), args.out, latency=args.latency)
    print(f"report: {index}")
    return 0
