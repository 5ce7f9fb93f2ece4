"""``hpo run``: run (or resume) a study."""

from __future__ import annotations

import argparse
import os

from hpo.cli.common import (
    EXIT_STOPPED_EARLY,
    EXIT_WORKERS_DIED,
    Subparsers,
    add_study_file,
    add_trial_flags,
)
from hpo.stopping import GRID, TRIALS

REEVALUATE_TOP = 3  # configurations hpo run --reevaluate K runs again
MAX_FRESH_SEEDS = 100


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    from hpo.samplers import PRUNERS, SAMPLERS

    run = subparsers.add_parser("run", help="run (or resume) a study")
    add_study_file(run)
    run.add_argument("--sampler", default="tpe", help=f"one of {', '.join(SAMPLERS.names())}")
    run.add_argument("--trials", type=int, default=20, help="complete trials of the study")
    run.add_argument("--timeout", type=float, default=None, help="stop asking after S seconds")
    run.add_argument("--name", default=None, help="study name (default: the study file's)")
    run.add_argument("--pruner", default="none", help=f"one of {', '.join(PRUNERS.names())}")
    run.add_argument("--max-failures", type=int, default=5, help="stop after N failed trials")
    run.add_argument("--reevaluate", type=int, default=0, metavar="K",
                     help="at the end, run the top 3 configurations again with K fresh seeds "
                          "each (as hpo reevaluate)")
    run.add_argument("--data-root", default=None,
                     help="folder with the data set's files (sets NAS_HPO_DATA)")
    run.add_argument("--address", default=None,
                     help="ray: join a running cluster (auto or HOST:PORT); default: start one")
    run.add_argument("--concurrency", type=int, default=None, help="ray: trials at once")
    run.add_argument("--cpus-per-trial", type=int, default=1,
                     help="ray: CPUs reserved per trial = torch threads per trial")
    run.add_argument("--retries", type=int, default=2,
                     help="ray: retries of a trial whose worker died")
    run.add_argument("--gpus-per-trial", type=float, default=0.0,
                     help="ray: GPUs per trial; a fraction shares a GPU (0.25: four trials)")
    add_trial_flags(run)
    run.set_defaults(handler=cmd_run)
    return run


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.options import RayOptions, RunOptions, check_flags, checked, read_study

    check_flags([(0 <= args.reevaluate <= MAX_FRESH_SEEDS,
                  f"--reevaluate: got {args.reevaluate}; need 0..{MAX_FRESH_SEEDS} fresh seeds "
                  "per configuration (0: none)")])
    options = checked(RunOptions(
        study_path=args.study, sampler=args.sampler, trials=args.trials, timeout=args.timeout,
        jobs=args.jobs, seed=args.seed, name=args.name, storage=args.storage,
        pruner=args.pruner, max_failures=args.max_failures, artifacts=args.artifacts,
        threads=args.threads, backend=args.backend, verbose=args.verbose,
        device=args.device, precision=args.precision, trials_per_gpu=args.trials_per_gpu,
        noise=args.noise, ray=RayOptions(address=args.address, concurrency=args.concurrency,
                       cpus_per_trial=args.cpus_per_trial, retries=args.retries,
                       gpus_per_trial=args.gpus_per_trial),
    ))
    spec = read_study(options)  # the flags and the study file first: before torch is imported
    import optuna

    from hpo.progress import StudyProgress
    from hpo.runner import run
    from search_core.data import DEFAULT_DATA_ROOT_ENV

    if args.data_root:  # read by this process and inherited by its workers
        os.environ[DEFAULT_DATA_ROOT_ENV] = args.data_root
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    summary = run(options, StudyProgress(quiet=args.quiet), announce=print, spec=spec)
    storage_flag = f" --storage {summary.storage}" if args.storage else ""
    print("\n".join(summary.lines(storage_flag)))
    finished = summary.stopped_because in (TRIALS, GRID)
    if args.reevaluate and summary.complete:
        reevaluate_at_end(args, summary.name)
    if not (summary.complete + summary.pruned > 0 and finished):
        return EXIT_STOPPED_EARLY
    return EXIT_WORKERS_DIED if summary.worker_deaths else 0


def reevaluate_at_end(args: argparse.Namespace, name: str) -> None:
    """``hpo run --reevaluate K``: the top configurations with K fresh seeds each."""
    from hpo.reevaluate import format_summary, reevaluate
    from hpo.storage import load_existing_study

    study = load_existing_study(args.storage, name)
    rows = reevaluate(study, REEVALUATE_TOP, args.reevaluate, args.jobs or 1,
                      args.threads or 1, args.quiet, storage=args.storage)
    print(format_summary(name, rows))
