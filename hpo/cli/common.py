"""What every subcommand shares: exit codes, and the flags declared once (storage, debug,
device placement, the run flags of ``hpo run`` and ``hpo compare``)."""

from __future__ import annotations

import argparse

from hpo.storage_urls import STORAGE_HELP
from search_core.device import add_device_arguments

EXIT_STOPPED_EARLY = 1  # failures, timeout, or nothing completed
EXIT_BAD_INPUT = 2
EXIT_WORKERS_DIED = 3  # the study finished, but worker processes died (each was logged when
# it died; their trials were re-run)
EXIT_DISK_FULL = 4  # resumable: rerun the same command once there is space
EXIT_STORAGE_UNAVAILABLE = 5  # the database did not answer; resumable once it is back
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

Subparsers = argparse._SubParsersAction


def add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")


def add_storage(parser: argparse.ArgumentParser) -> None:
    """``--storage`` and ``--debug``: every command that reads or writes studies."""
    parser.add_argument("--storage", default=None, help=STORAGE_HELP)
    add_debug(parser)


def add_placement(parser: argparse.ArgumentParser) -> None:
    """Where trials run: --device, --precision, --trials-per-gpu."""
    add_device_arguments(parser)
    parser.add_argument("--trials-per-gpu", type=int, default=1,
                        help="local: workers per visible GPU on a GPU machine (default 1)")


def add_study_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", default=None, help="study file, or a shipped study's name "
                        "(hpo studies list; default digits)")


def add_trial_flags(parser: argparse.ArgumentParser,
                    seed_help: str = "sampler and search seed") -> None:
    """How ``hpo run``'s and ``hpo compare``'s trials run: seed, backend, jobs, artifacts,
    threads, placement, output; storage and debug."""
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--backend", default="local",
                        help="local (processes) or ray (Ray Tune)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trials at once, in worker processes (default: one per CPU)")
    parser.add_argument("--artifacts", default="runs", help="folder for trial checkpoints")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per trial (default: CPUs / trials at once)")
    parser.add_argument("--noise", choices=("none", "intensify"), default=None,
                        help="intensify: give competitive configurations more seeds and pick "
                             "the best mean (default: the study file's noise.policy)")
    add_placement(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    add_storage(parser)
