"""``hpo compare``: samplers at equal budget, with repeats, and the paired verdict."""

from __future__ import annotations

import argparse
from typing import Any

from hpo.cli.common import EXIT_STOPPED_EARLY, Subparsers, add_study_file, add_trial_flags


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    cmp = subparsers.add_parser("compare", help="compare samplers at equal budget, with repeats")
    add_study_file(cmp)
    cmp.add_argument("--samplers", required=True,
                     help="comma-separated, e.g. grid,random,tpe; SAMPLER+intensify or "
                          "SAMPLER+reevaluate compares a noise policy at the same budget")
    cmp.add_argument("--trials", type=int, required=True, help="budget per sampler and repeat")
    cmp.add_argument("--repeats", type=int, default=3, help="seeds per sampler")
    cmp.add_argument("--name", default=None, help="comparison group (default STUDY-compare)")
    add_trial_flags(cmp, seed_help="seed of repeat 0 (repeat r: +r)")
    cmp.set_defaults(handler=cmd_compare)
    return cmp


def cmd_compare(args: argparse.Namespace) -> int:
    import optuna

    from hpo.compare import CompareOptions, compare
    from hpo.options import RunOptions
    from hpo.progress import StudyProgress
    from reports import group_frames

    base = RunOptions(study_path=args.study, trials=args.trials, jobs=args.jobs, seed=args.seed,
                      storage=args.storage, artifacts=args.artifacts, threads=args.threads,
                      backend=args.backend, verbose=args.verbose, device=args.device,
                      precision=args.precision, trials_per_gpu=args.trials_per_gpu,
                      noise=args.noise)
    samplers = tuple(s.strip() for s in args.samplers.split(",") if s.strip())
    options = CompareOptions(run=base, samplers=samplers, repeats=args.repeats,
                             group=args.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    group = compare(options, progress=lambda: StudyProgress(quiet=args.quiet), announce=print)
    if group is None:
        return EXIT_STOPPED_EARLY
    print_verdict(group, group_frames.final_best(group))
    worth = group_frames.incumbent_worth(group)
    if worth is not None:
        print("what each study's incumbent is worth on fresh seeds (the objective's mean at "
              "the configuration it chose: its best trial, or its best mean over seeds when "
              "intensified or re-evaluated; the values above are its best noisy draw):")
        print_verdict(group, worth)
    print(f"budget {args.trials} trials x {args.repeats} repeats per sampler; "
          f"hpo report {group.name} --out DIR draws the comparison")
    return 0


def print_verdict(group: Any, finals: Any) -> None:
    """The per-sampler summary of ``finals`` and the paired verdict's sentences."""
    import pandas as pd

    from hpo.compare import summarise_group
    from reports import group_frames

    rows = summarise_group(group, finals)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in group_frames.paired_verdict(group, finals=finals).sentences():
        print(f"- {line}")
