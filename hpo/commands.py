"""The subcommands behind ``hpo``; each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from hpo.records import timing_summary, trial_row
from hpo.storage import open_storage, storage_label, study_names
from search_core.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.progress import StudyProgress
    from hpo.runner import RunOptions, run
    from search_core.data import DEFAULT_DATA_ROOT_ENV

    if args.data_root:  # read by this process and inherited by its workers
        os.environ[DEFAULT_DATA_ROOT_ENV] = args.data_root
    options = RunOptions(
        study_path=args.study, sampler=args.sampler, trials=args.trials, timeout=args.timeout,
        jobs=args.jobs, seed=args.seed, name=args.name, storage=args.storage,
        pruner=args.pruner, max_failures=args.max_failures, artifacts=args.artifacts,
        threads=args.threads, backend=args.backend, address=args.address,
        concurrency=args.concurrency, cpus_per_trial=args.cpus_per_trial, retries=args.retries,
        verbose=args.verbose,
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
    return 0 if summary.complete + summary.pruned > 0 and finished else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from hpo.compare import CompareOptions, compare
    from hpo.progress import StudyProgress
    from hpo.runner import RunOptions

    base = RunOptions(study_path=args.study, trials=args.trials, jobs=args.jobs, seed=args.seed,
                      storage=args.storage, artifacts=args.artifacts, threads=args.threads,
                      backend=args.backend, verbose=args.verbose)
    samplers = tuple(s for s in args.samplers.split(",") if s)
    options = CompareOptions(run=base, samplers=samplers, repeats=args.repeats,
                             group=args.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = compare(options, progress=lambda: StudyProgress(quiet=args.quiet))
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"budget {args.trials} trials x {args.repeats} repeats per sampler; "
          f"hpo report GROUP --out DIR draws the comparison")
    return 0


def _load(args: argparse.Namespace) -> optuna.Study:
    storage = open_storage(args.storage, must_exist=True)
    if args.name not in study_names(storage):
        known = ", ".join(study_names(storage)) or "none"
        raise ConfigError(f"no study {args.name!r} in {storage_label(args.storage)}; "
                          f"studies there: {known}")
    return optuna.load_study(study_name=args.name, storage=storage)


def cmd_list(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, must_exist=True)
    for summary in optuna.get_all_study_summaries(storage):
        best = summary.best_trial.values if summary.best_trial else None
        print(f"{summary.study_name}\t{summary.n_trials} trials\tbest {best}\t"
              f"sampler {summary.user_attrs.get('sampler')}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    study = _load(args)
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


def _pick_trial(study: optuna.Study, which: str) -> optuna.trial.FrozenTrial:
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


def cmd_export(args: argparse.Namespace) -> int:
    from search_core.result import SearchResult, as_simplex_point, save_model

    study = _load(args)
    trial = _pick_trial(study, args.trial)
    checkpoint = trial.user_attrs.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise ConfigError(f"trial {trial.number}: checkpoint {checkpoint!r} not found; run "
                          "export on the machine (or shared folder) that holds --artifacts")
    try:
        s = [float(v) for v in args.s.split(",")]
    except ValueError:
        raise ConfigError(f"--s: got {args.s!r}; expected comma-separated numbers") from None
    result = SearchResult.load(checkpoint)
    s_vec = as_simplex_point(s, len(result.ops))
    genotype = result.genotype(s_vec)
    payload: dict[str, Any] = {
        "study": study.study_name, "trial": trial.number, "s": s_vec.tolist(),
        "ops": list(result.ops), "genotype": genotype.to_dict(),
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
