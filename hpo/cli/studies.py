"""``hpo studies``: the study files shipped with nas-hpo (``list``), a copy of one to edit
(``copy NAME``), and the study file's JSON Schema for editors (``schema``). ``--study NAME``
runs a shipped study without copying it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hpo.cli.common import Subparsers, add_debug
from hpo.shipped import copy_study, shipped_studies, study_summary


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    studies = subparsers.add_parser(
        "studies", help="the shipped study files: list them, or copy one to edit it")
    actions = studies.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the shipped studies, one line each")
    add_debug(listing)
    listing.set_defaults(handler=cmd_list)
    copy = actions.add_parser("copy", help="copy a shipped study (and the table it reads) "
                                           "into a folder")
    copy.add_argument("name", help="a shipped study's name (hpo studies list)")
    copy.add_argument("--to", default=".", help="folder to copy into (default: here)")
    add_debug(copy)
    copy.set_defaults(handler=cmd_copy)
    schema = actions.add_parser("schema", help="the study file's JSON Schema, for editors")
    add_debug(schema)
    schema.set_defaults(handler=cmd_schema)
    return studies


def cmd_list(args: argparse.Namespace) -> int:
    """One line per shipped study: its name and the first line of its comment."""
    studies = shipped_studies()
    width = max(map(len, studies))
    for name, path in studies.items():
        print(f"{name:<{width}}  {study_summary(path)}".rstrip())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema on stdout: ``hpo studies schema > study.schema.json``."""
    from hpo.study_schema import study_schema

    print(json.dumps(study_schema(), indent=1))
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    written = copy_study(args.name, Path(args.to))
    for path in written:
        print(f"wrote {path}")
    if len(written) > 1 and args.to != ".":  # a table study reads its table from the folder
        print(f"run it from {args.to}: cd {args.to} && hpo run --study {written[0].name}")
    else:
        print(f"run it: hpo run --study {written[0]}")
    return 0
