"""The ``hpo`` command: run, compare, list, show, export, report, bench, profile, train,
reevaluate, table.

The command line is this package, the top floor: one module per subcommand, each declaring
its flags (``add_parser``) and registering its own handler (``set_defaults(handler=...)``);
argparse and printing only, the work is the harness library's (the rest of ``hpo``) and the
report's (``reports``). Only this package imports ``reports``. Every entry point is
``main(argv) -> int``; bad input prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from hpo import installed_version
from hpo.cli import (
    bench,
    compare,
    export,
    list_studies,
    profile,
    reevaluate,
    report,
    run,
    show,
    studies,
    table,
    train,
)
from hpo.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_STORAGE_UNAVAILABLE,
)
from hpo.database import StorageUnavailable
from search_core.errors import NasHpoError, disk_full
from search_core.threads import configure_process

SUBCOMMANDS = (run, compare, list_studies, show, export, report, bench, profile, train,
               reevaluate, table, studies)  # in the order ``hpo --help`` lists them
MAX_MESSAGE = 400  # characters of an error line


UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)  # a read-only disk, a denied file


def bounded(message: str) -> str:
    """One line of at most MAX_MESSAGE characters."""
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpo", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hpo {installed_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # before anything imports torch: OpenMP reads its wait policy once (search_core/threads.py)
    configure_process(wait=getattr(args, "openmp_wait", None))
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except NasHpoError as err:
        if args.debug:
            raise
        print(f"hpo {args.command}: error: {bounded(str(err))}", file=sys.stderr)
        return (EXIT_STORAGE_UNAVAILABLE if isinstance(err, StorageUnavailable)
                else EXIT_BAD_INPUT)
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
        if args.debug or not (disk_full(err) or err.errno in UNWRITABLE):
            raise
        if err.errno in UNWRITABLE:
            print(bounded(f"hpo {args.command}: error: cannot write {err.filename or 'a file'}"
                          f": {err.strerror}; "
                          "run it where that folder is writable (--storage, --artifacts): "
                          "nothing was changed there"), file=sys.stderr)
            return EXIT_BAD_INPUT
        where = f" ({err.filename})" if err.filename else ""
        print(f"hpo {args.command}: error: {err.strerror or err}{where}; free some space and "
              "run the same command again: complete trials are kept, and the trials that "
              "were running start again", file=sys.stderr)
        return EXIT_DISK_FULL
