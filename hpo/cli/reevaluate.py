"""``hpo reevaluate NAME``: the study's top configurations run again with fresh seeds."""

from __future__ import annotations

import argparse

from hpo.cli.common import Subparsers, add_storage
from hpo.options import check_flags
from search_core.device import add_device_arguments


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reevaluate", help="run the top configurations again with fresh seeds (seed-robust "
                           "best)")
    parser.add_argument("name", help="study name")
    parser.add_argument("--top", type=int, default=3, help="configurations (best first)")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds per configuration")
    parser.add_argument("--jobs", type=int, default=1, help="evaluations at once (one "
                                                            "process and thread each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per evaluation")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_device_arguments(parser)
    add_storage(parser)
    parser.set_defaults(handler=cmd_reevaluate)
    return parser


def cmd_reevaluate(args: argparse.Namespace) -> int:
    from hpo.reevaluate import format_summary, reevaluate
    from hpo.storage import load_existing_study
    from search_core.device import check_device_precision, resolve_device

    check_flags([(args.top >= 1, f"--top: got {args.top}; need >= 1"),
                 (args.seeds >= 1, f"--seeds: got {args.seeds}; need >= 1"),
                 (args.jobs >= 1, f"--jobs: got {args.jobs}; need >= 1"),
                 (args.threads >= 1, f"--threads: got {args.threads}; need >= 1")])
    # here, not in a worker: a device this machine lacks is one line before anything runs
    device = resolve_device(args.device or "auto", "--device")
    if args.precision is not None:
        check_device_precision(device, args.precision, "--precision")
    study = load_existing_study(args.storage, args.name)
    print(format_summary(study.study_name, reevaluate(study, args.top, args.seeds, args.jobs,
                                                      args.threads, args.quiet, args.device,
                                                      args.precision, args.storage)))
    return 0
