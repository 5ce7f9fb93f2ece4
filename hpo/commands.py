"""The subcommands behind ``hpo``; each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from hpo.records import SAMPLER_ATTR, TrialRecord, timing_summary, trial_row
from hpo.storage import load_existing_study, open_storage
from search_core.errors import ConfigError

EXIT_STOPPED_EARLY = 1  # failures, timeout, or nothing completed
EXIT_WORKERS_DIED = 3  # the study finished, but worker processes died (each was logged when
# it died; their trials were re-run)


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.options import RayOptions, RunOptions, check_flags
    from hpo.progress import StudyProgress
    from hpo.runner import run
    from search_core.data import DEFAULT_DATA_ROOT_ENV

    check_flags([(0 <= args.reevaluate <= MAX_FRESH_SEEDS,
                  f"--reevaluate: got {args.reevaluate}; need 0..{MAX_FRESH_SEEDS} fresh seeds "
                  "per configuration (0: none)")])
    if args.data_root:  # read by this process and inherited by its workers
        os.environ[DEFAULT_DATA_ROOT_ENV] = args.data_root
    options = RunOptions(
        study_path=args.study, sampler=args.sampler, trials=args.trials, timeout=args.timeout,
        jobs=args.jobs, seed=args.seed, name=args.name, storage=args.storage,
        pruner=args.pruner, max_failures=args.max_failures, artifacts=args.artifacts,
        threads=args.threads, backend=args.backend, verbose=args.verbose,
        ray=RayOptions(address=args.address, concurrency=args.concurrency,
                       cpus_per_trial=args.cpus_per_trial, retries=args.retries),
    )
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    summary = run(options, StudyProgress(quiet=args.quiet))
    print(f"study {summary.name}: {summary.complete} complete, {summary.pruned} pruned, "
          f"{summary.failed} failed ({summary.stopped_because})")
    if summary.best is not None:
        print(f"best: {json.dumps(summary.best, default=str)}")
    print(f"results: storage {summary.storage} (hpo show {summary.name}; optuna-dashboard "
          f"{summary.storage}), checkpoints in {summary.artifacts}/")
    finished = summary.stopped_because in ("trials", "grid")
    if args.reevaluate and summary.complete:
        reevaluate_at_end(args, summary.name)
    if not (summary.complete + summary.pruned > 0 and finished):
        return EXIT_STOPPED_EARLY
    return EXIT_WORKERS_DIED if summary.worker_deaths else 0


REEVALUATE_TOP = 3  # configurations hpo run --reevaluate K runs again
MAX_FRESH_SEEDS = 100


def reevaluate_at_end(args: argparse.Namespace, name: str) -> None:
    """``hpo run --reevaluate K``: the top configurations with K fresh seeds each."""
    from hpo.reevaluate import format_summary, reevaluate

    study = load_existing_study(args.storage, name)
    rows = reevaluate(study, REEVALUATE_TOP, args.reevaluate, args.jobs or 1,
                      args.threads or 1, args.quiet)
    print(format_summary(name, rows))


def cmd_compare(args: argparse.Namespace) -> int:
    from hpo.compare import CompareOptions, compare, summarise_group
    from hpo.options import RunOptions
    from hpo.progress import StudyProgress
    from reports import data

    base = RunOptions(study_path=args.study, trials=args.trials, jobs=args.jobs, seed=args.seed,
                      storage=args.storage, artifacts=args.artifacts, threads=args.threads,
                      backend=args.backend, verbose=args.verbose)
    samplers = tuple(s for s in args.samplers.split(",") if s)
    options = CompareOptions(run=base, samplers=samplers, repeats=args.repeats,
                             group=args.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    group = compare(options, progress=lambda: StudyProgress(quiet=args.quiet))
    if group is None:
        return EXIT_STOPPED_EARLY
    import pandas as pd

    finals = data.final_best(group)
    rows = summarise_group(group, finals)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in data.paired_verdict(group, finals=finals).sentences():
        print(f"- {line}")
    print(f"budget {args.trials} trials x {args.repeats} repeats per sampler; "
          f"hpo report {group.name} --out DIR draws the comparison")
    return 0


def load_named_study(args: argparse.Namespace) -> optuna.Study:
    return load_existing_study(args.storage, args.name)


def cmd_list(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, must_exist=True)
    for summary in optuna.get_all_study_summaries(storage):
        best = summary.best_trial.values if summary.best_trial else None
        print(f"{summary.study_name}\t{summary.n_trials} trials\tbest {best}\t"
              f"sampler {summary.user_attrs.get(SAMPLER_ATTR)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    study = load_named_study(args)
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    if args.format == "json":
        print(json.dumps({"study": study.study_name, "user_attrs": study.user_attrs,
                          "trials": rows}, indent=1, default=str))
        return 0
    import pandas as pd

    frame = pd.DataFrame(rows)
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_string(index=False) if not frame.empty else "(no trials)")
    if args.timing:
        timing = timing_summary(study.get_trials(deepcopy=False))
        print("timing: " + (", ".join(f"{k} {v:.3g}" for k, v in timing.items())
                            or "needs two complete trials"))
    return 0


def pick_trial(study: optuna.Study, which: str) -> optuna.trial.FrozenTrial:
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no complete trial to export")
    if which == "best":
        return study.best_trial if len(study.directions) == 1 else study.best_trials[0]
    try:
        number = int(which)
    except ValueError:
        raise ConfigError(f"--trial: got {which!r}; expected a trial number or 'best'") from None
    for trial in complete:
        if trial.number == number:
            return trial
    raise ConfigError(f"--trial: trial {number} is not a complete trial of "
                      f"{study.study_name!r}; complete: {[t.number for t in complete]}")


def load_trial_result(args: argparse.Namespace) -> tuple[optuna.Study, Any, str, Any]:
    """The study, the ``--trial`` it names, its checkpoint path and the ``SearchResult``."""
    from search_core.result import SearchResult

    study = load_named_study(args)
    trial = pick_trial(study, args.trial)
    checkpoint = TrialRecord.from_frozen(trial).checkpoint
    if not checkpoint or not Path(checkpoint).exists():
        raise ConfigError(f"trial {trial.number}: checkpoint {checkpoint!r} not found; run "
                          f"{args.command} on the machine (or shared folder) that holds "
                          "--artifacts")
    return study, trial, checkpoint, SearchResult.load(checkpoint)


def cmd_export(args: argparse.Namespace) -> int:
    from search_core.result import as_simplex_point, save_model

    study, trial, _, result = load_trial_result(args)
    payload: dict[str, Any] = {"study": study.study_name, "trial": trial.number}
    if args.latency_budget is not None:
        s, extra = pick_under_budget(args, result)
        payload |= extra
    else:
        try:
            s = [float(v) for v in args.s.split(",")]
        except ValueError:
            raise ConfigError(f"--s: got {args.s!r}; expected comma-separated numbers") \
                from None
    s_vec = as_simplex_point(s, len(result.ops))
    genotype = result.genotype(s_vec)
    payload |= {
        "s": s_vec.tolist(), "ops": list(result.ops), "genotype": genotype.to_dict(),
        "op_counts": {k: dict(v) for k, v in genotype.op_counts().items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"wrote genotype of trial {trial.number} at s={s_vec.tolist()} to {out}")
    if args.model:
        from hpo.objective import cached_data

        model = result.model(s_vec, cached_data(result.config.data))
        save_model(model, args.model, study=study.study_name, trial=trial.number, s=s)
        print(f"wrote model ({model.num_params()} parameters) to {args.model}")
    return 0


def pick_under_budget(args: argparse.Namespace, result: Any) -> tuple[list[float], dict]:
    """Search the family over s for the most accurate member under --latency-budget."""
    from hpo.objective import cached_data
    from search_core.latency import (
        LatencyTable,
        TimingSettings,
        fingerprint,
        fingerprint_mismatch,
    )
    from search_core.selection import parse_latency, select_under_budget

    budget = parse_latency(args.latency_budget)
    if args.threads < 1 or args.batch < 1:
        raise ConfigError("--threads and --batch need >= 1")
    settings = TimingSettings(threads=args.threads)
    here = fingerprint(settings)
    table = LatencyTable.load(args.latency_table) if args.latency_table else None
    if table is not None:
        differs = fingerprint_mismatch(table.fingerprint, here)
        if differs:
            print("warning: --latency-table was measured elsewhere (" + "; ".join(differs)
                  + "); its predictions only pre-filter, latencies are measured here",
                  file=sys.stderr)
    found = select_under_budget(result, cached_data(result.config.data), budget, settings,
                                table, batch=args.batch)
    seen = (f"{found.architectures} distinct architectures from {found.s_vectors} s vectors, "
            f"{found.measured} measured, {found.under_budget} under budget")
    if found.best is None:
        fastest = found.fastest
        raise ConfigError(
            f"--latency-budget {args.latency_budget}: no family member runs under {budget:g} "
            f"ms here (batch {args.batch}, {args.threads} thread(s)); the fastest measured is "
            f"{fastest.latency.median_ms:.3g} ms at s={_fmt(fastest.s)} ({seen}); raise the "
            "budget or search with a larger kappa")
    best = found.best
    predicted = (f", predicted {best.predicted_ms:.3g} ms" if best.predicted_ms is not None
                 else "")
    print(f"under {budget:g} ms: s={_fmt(best.s)}, validation accuracy {best.accuracy:.4f}, "
          f"latency {best.latency.median_ms:.3g} ms measured (batch {args.batch}, "
          f"{args.threads} thread(s), +-{best.latency.spread_ms:.2g}){predicted}; {seen}")
    return list(best.s), {
        "latency_budget_ms": budget, "latency_ms": best.latency.median_ms,
        "latency_spread_ms": best.latency.spread_ms, "predicted_latency_ms": best.predicted_ms,
        "accuracy": best.accuracy, "batch": args.batch, "threads": args.threads,
        "searched": {"s_vectors": found.s_vectors, "architectures": found.architectures,
                     "measured": found.measured, "under_budget": found.under_budget},
        "fingerprint": here,
    }


def _fmt(s: Any) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in s) + ")"
