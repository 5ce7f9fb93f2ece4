"""The subcommands behind ``hpo``; each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo.records import SAMPLER_ATTR, TrialRecord, metric_names, timing_summary, trial_row
from hpo.storage import load_existing_study, open_storage
from hpo.study import load_study
from search_core.errors import ConfigError
from search_core.files import write_bytes_atomically

if TYPE_CHECKING:
    import pandas as pd

EXIT_STOPPED_EARLY = 1  # failures, timeout, or nothing completed
EXIT_WORKERS_DIED = 3  # the study finished, but worker processes died (each was logged when
# it died; their trials were re-run)


def cmd_run(args: argparse.Namespace) -> int:
    from hpo.flags import check_run_flags
    from hpo.options import RayOptions, RunOptions, check_flags

    check_flags([(0 <= args.reevaluate <= MAX_FRESH_SEEDS,
                  f"--reevaluate: got {args.reevaluate}; need 0..{MAX_FRESH_SEEDS} fresh seeds "
                  "per configuration (0: none)")])
    options = check_run_flags(RunOptions(
        study_path=args.study, sampler=args.sampler, trials=args.trials, timeout=args.timeout,
        jobs=args.jobs, seed=args.seed, name=args.name, storage=args.storage,
        pruner=args.pruner, max_failures=args.max_failures, artifacts=args.artifacts,
        threads=args.threads, backend=args.backend, verbose=args.verbose,
        device=args.device, precision=args.precision, trials_per_gpu=args.trials_per_gpu,
        ray=RayOptions(address=args.address, concurrency=args.concurrency,
                       cpus_per_trial=args.cpus_per_trial, retries=args.retries,
                       gpus_per_trial=args.gpus_per_trial),
    ))  # the flags and the study file first: a bad one fails before torch is imported
    load_study(options.study_path)
    from hpo.progress import StudyProgress
    from hpo.runner import run
    from search_core.data import DEFAULT_DATA_ROOT_ENV

    if args.data_root:  # read by this process and inherited by its workers
        os.environ[DEFAULT_DATA_ROOT_ENV] = args.data_root
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    summary = run(options, StudyProgress(quiet=args.quiet), announce=print)
    storage_flag = f" --storage {summary.storage}" if args.storage else ""
    print("\n".join(summary.lines(storage_flag)))
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
    from hpo.compare import CompareOptions, compare
    from hpo.options import RunOptions
    from hpo.progress import StudyProgress
    from reports import data

    base = RunOptions(study_path=args.study, trials=args.trials, jobs=args.jobs, seed=args.seed,
                      storage=args.storage, artifacts=args.artifacts, threads=args.threads,
                      backend=args.backend, verbose=args.verbose, device=args.device,
                      precision=args.precision, trials_per_gpu=args.trials_per_gpu)
    samplers = tuple(s.strip() for s in args.samplers.split(",") if s.strip())
    options = CompareOptions(run=base, samplers=samplers, repeats=args.repeats,
                             group=args.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    group = compare(options, progress=lambda: StudyProgress(quiet=args.quiet), announce=print)
    if group is None:
        return EXIT_STOPPED_EARLY
    print_verdict(group, data.final_best(group))
    worth = data.incumbent_worth(group)
    if worth is not None:
        print("what each study's incumbent is worth on fresh seeds (the objective's mean at "
              "its best trial; the values above are its best noisy draw):")
        print_verdict(group, worth)
    print(f"budget {args.trials} trials x {args.repeats} repeats per sampler; "
          f"hpo report {group.name} --out DIR draws the comparison")
    return 0


def print_verdict(group: Any, finals: Any) -> None:
    """The per-sampler summary of ``finals`` and the paired verdict's sentences."""
    import pandas as pd

    from hpo.compare import summarise_group
    from reports import data

    rows = summarise_group(group, finals)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in data.paired_verdict(group, finals=finals).sentences():
        print(f"- {line}")


def load_named_study(args: argparse.Namespace) -> optuna.Study:
    return load_existing_study(args.storage, args.name)


def cmd_list(args: argparse.Namespace) -> int:
    """One line per study, tab-separated: name, trial counts by state, best, sampler."""
    storage = open_storage(args.storage, must_exist=True)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        print("\t".join([summary.study_name, state_counts_text(study),
                         best_text(study), f"sampler {summary.user_attrs.get(SAMPLER_ATTR)}"]))
    return 0


def state_counts_text(study: optuna.Study) -> str:
    """"12 complete, 1 failed, 2 waiting": the states a study's trials are in."""
    from hpo.stopping import state_counts

    counts = state_counts(study)
    order = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
             TrialState.WAITING)
    words = {TrialState.FAIL: "failed"}
    parts = [f"{counts[state]} {words.get(state, state.name.lower())}" for state in order
             if counts[state]]
    return ", ".join(parts) or "no trials"


def best_text(study: optuna.Study) -> str:
    """"best hypervolume 0.7954 (trial 12)", or the size of a Pareto front."""
    from hpo.announce import number

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return "no complete trial"
    names = metric_names(study)
    if len(study.directions) > 1:
        return f"Pareto front ({' vs '.join(names)}): {len(study.best_trials)} trials"
    best = study.best_trial
    return f"best {names[0]} {number(best.value)} (trial {best.number})"


def best_numbers(study: optuna.Study) -> set[int]:
    """The best trial, or the Pareto trials of a multi-objective study."""
    complete = any(t.state == optuna.trial.TrialState.COMPLETE
                   for t in study.get_trials(deepcopy=False))
    if not complete:
        return set()
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    return {study.best_trial.number}


def cmd_show(args: argparse.Namespace) -> int:
    study = load_named_study(args)
    best = best_numbers(study)
    rows = [trial_row(t) | {"best": t.number in best} for t in study.get_trials(deepcopy=False)]
    if args.format == "json":
        print(json.dumps({"study": study.study_name, "user_attrs": study.user_attrs,
                          "trials": rows}, indent=1, default=str))
        return 0
    import pandas as pd

    frame = pd.DataFrame(rows)
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(readable_trials(frame, study) if not frame.empty else "(no trials)")
    if args.timing:
        print(timing_text(timing_summary(study.get_trials(deepcopy=False))))
    return 0


def readable_trials(frame: pd.DataFrame, study: optuna.Study) -> str:
    """The trials as a table a person reads: the best marked with *, values under the
    objective's name, 4 significant digits, no all-empty columns, empty where nothing is."""
    from hpo.announce import number

    names = metric_names(study)
    value_columns = ["value"] if "value" in frame else [f"value_{i}" for i in range(len(names))]
    frame = frame.drop(columns=[n for n in names if n in frame])  # e.g. the family's
    # hypervolume when it is the value
    frame = frame.rename(columns=dict(zip(value_columns, names)))
    frame = frame.rename(columns=lambda c: c.removeprefix("param_"))
    frame["best"] = frame["best"].map({True: "*", False: ""})
    frame = frame[["best", *[c for c in frame.columns if c != "best"]]]
    frame = frame.dropna(axis="columns", how="all")
    text = frame.astype(object).map(lambda v: "" if v is None or v != v else number(v))
    return text.to_string(index=False)


def timing_text(timing: dict[str, float]) -> str:
    if not timing:
        return "timing: needs two complete trials"
    return (f"timing over {int(timing['trials'])} complete trials (medians per trial): "
            f"search and evaluation {timing['evaluate_s']:.1f} s, harness overhead "
            f"{timing['overhead_s']:.2f} s ({100 * timing['overhead_share']:.1f} %); "
            f"first start to last end {timing['span_s']:.0f} s")


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
    """The member's genotype (and with ``--model`` its network, written from the CPU);
    ``--device`` and ``--precision`` say where and how its accuracy is measured and the
    model's BN statistics recalibrated (default: auto, and the trial's precision)."""
    from search_core.device import check_device_precision, resolve_device
    from search_core.result import as_simplex_point, save_model

    device = resolve_device(args.device or "auto", "--device")  # one line, before any work
    study, trial, _, result = load_trial_result(args)
    precision = args.precision or result.config.precision
    check_device_precision(device, precision, "--precision")
    result.config = result.config.replace(device=args.device or "auto", precision=precision)
    result.supernet.to(device)
    result.hypernet.to(device)
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
    s_vec = [round(v, 6) for v in as_simplex_point(s, len(result.ops)).tolist()]  # no float32
    # noise in what is written
    genotype = result.genotype(s_vec)
    member = exported_member(result, s_vec)
    payload |= {
        "s": s_vec, "ops": list(result.ops), "genotype": genotype.to_dict(),
        "op_counts": {k: dict(v) for k, v in genotype.op_counts().items()},
        "accuracy": payload.get("accuracy", member.accuracy), "params": member.params,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out, json.dumps(payload, indent=1).encode())
    print(f"trial {trial.number} at s={_fmt(s_vec)}: validation accuracy "
          f"{payload['accuracy']:.4f} (one-hot on the supernet's weights), "
          f"{member.params:,} parameters; genotype written to {out}")
    if args.model:
        from hpo.objective import cached_data

        model = result.model(s_vec, cached_data(result.config.data))
        save_model(model, args.model, study=study.study_name, trial=trial.number, s=s_vec)
        print(f"model written to {args.model}; load it with "
              "search_core.load_model(path) (weights only, no pickled code)")
    return 0


def exported_member(result: Any, s: list[float]) -> Any:
    """The family member at ``s``: its validation accuracy and parameters, as the family
    table measures every member."""
    from hpo.objective import cached_data
    from search_core.family import Probe

    table = result.family(cached_data(result.config.data), [Probe("export", tuple(s))])
    return table.members[0]


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
