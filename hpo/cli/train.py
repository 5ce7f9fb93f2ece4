"""``hpo train NAME``: train a trial's family members from scratch (or inherited weights)
and report their test accuracy beside their proxy accuracy (``hpo.training``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from hpo.cli.common import Subparsers, add_storage
from hpo.options import check_flags
from hpo.records import TRAINED_ATTR
from search_core.device import add_device_arguments


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    train = subparsers.add_parser(
        "train", help="train family members of a trial from scratch (or inherited weights)")
    train.add_argument("name", help="study name")
    train.add_argument("--trial", default="best", help="trial number or 'best'")
    pick = train.add_mutually_exclusive_group(required=True)
    pick.add_argument("--s", help="complexity vector, comma-separated (one per op)")
    pick.add_argument("--probes", help="'all' or probe names of the trial's family: A,B,...")
    pick.add_argument("--latency-budget", help="the most accurate member under this latency, "
                                               "e.g. 2ms (measured here, batch --batch)")
    train.add_argument("--latency-table", default=None, help="with --latency-budget: a table "
                                                             "from hpo profile to pre-filter")
    train.add_argument("--batch", type=int, default=1, help="with --latency-budget: batch size")
    train.add_argument("--from", dest="init", choices=("scratch", "inherit"), default="scratch",
                       help="start from a fresh initialisation or the supernet's weights")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--seeds", type=int, default=3, help="trainings per genotype (seeds 0..K-1)")
    train.add_argument("--lr", type=float, default=0.025)
    train.add_argument("--batch-size", type=int, default=96)
    train.add_argument("--augment", choices=("auto", "none", "crop", "crop_flip"), default="auto")
    train.add_argument("--train-limit", default=None,
                       help="training images: the search's by default, a number, or 'all'")
    train.add_argument("--jobs", type=int, default=1, help="trainings at once (one thread each)")
    train.add_argument("--threads", type=int, default=1, help="torch threads per training")
    train.add_argument("--out", default=None,
                       help="folder for checkpoints and results (default runs/NAME/trained)")
    add_device_arguments(train, default_device="auto")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_storage(train)
    train.set_defaults(handler=cmd_train)
    return train


def check(args: argparse.Namespace) -> None:
    check_flags([(args.epochs >= 1, f"--epochs: got {args.epochs}; need >= 1"),
                 (args.seeds >= 1, f"--seeds: got {args.seeds}; need >= 1"),
                 (args.jobs >= 1, f"--jobs: got {args.jobs}; need >= 1"),
                 (args.threads >= 1, f"--threads: got {args.threads}; need >= 1")])


def cmd_train(args: argparse.Namespace) -> int:
    from hpo.cli.export import chosen_s
    from hpo.members import load_trial_result
    from hpo.training import (
        Job,
        data_config,
        format_summary,
        genotype_key,
        measure_latency,
        pick_members,
        plain,
        run_jobs,
        summarise,
    )
    from search_core.device import check_device_precision, resolve_device
    from search_core.train import TrainRecipe

    check(args)
    # here, not in a worker: a device this machine lacks is one line before anything runs
    precision = args.precision or "fp32"
    check_device_precision(resolve_device(args.device, "--device"), precision, "--precision")
    recipe = TrainRecipe(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         augment=args.augment, init=args.init, threads=args.threads,
                         device=args.device, precision=precision)
    study, trial, checkpoint, result = load_trial_result(args.storage, args.name, args.trial,
                                                         args.command)
    s = chosen_s(args, result)[0] if args.probes is None else None
    members = pick_members(trial, result, args.probes, s)
    data = data_config(result.config.data, args.train_limit)
    out = Path(args.out or Path("runs") / study.study_name / "trained") / f"trial-{trial.number}"
    jobs = [Job(member, seed, replace(recipe, seed=seed).to_dict(), data.to_dict(),
                plain(result.config.space),
                str(out / f"{genotype_key(member.genotype_json)}-seed{seed}.pt"),
                checkpoint if args.init == "inherit" else None)
            for member in members for seed in range(args.seeds)]
    trained = run_jobs(jobs, args.jobs, args.epochs, args.quiet)
    latency = measure_latency(members, result, args.threads)
    summary = summarise(members, trained, recipe, data.to_dict(), trial.number, latency)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trained.json").write_text(json.dumps(summary, indent=1))
    study.set_user_attr(TRAINED_ATTR.format(number=trial.number), summary)
    print(format_summary(summary))
    print(f"results: {out / 'trained.json'} and study {study.study_name!r} (user attribute "
          f"{TRAINED_ATTR.format(number=trial.number)}); hpo report {study.study_name} draws them")
    return 0
