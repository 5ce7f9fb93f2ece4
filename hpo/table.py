"""``hpo table build``: a tabular benchmark of a study's real objective.

N configurations of the study's space (a scrambled Sobol design, plus every cell of the
study's ``grid:``) are each evaluated with K seeds (0..K-1) by the study's own objective
(``hpo.objective.evaluate``: the search, the family, the value; and the same objective on
the test split, for reporting). Every evaluation is appended to ``PATH`` (CSV) as it
finishes, flushed to disk, so a killed build loses only the evaluations in flight and the
same command continues it; a larger ``--configs`` or ``--seeds`` adds only what is missing
(the Sobol design with the same seed extends its prefix). ``PATH.json`` holds the metadata:
format version, the study (settings and fingerprint), the design, and the environment record
``hpo run`` also keeps (package versions, git commit, CPU, cores, threads per evaluation).

A study then answers its trials from the table (``objective: {kind: table, path: PATH}``,
hpo/surrogate.py) in milliseconds instead of minutes.

``--device`` and ``--precision`` replace the study file's settings (``hpo.study.
with_run_settings``); the device is where the evaluations run (recorded in the metadata, not
part of the study's fingerprint), the precision is part of what they compute.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.options import check_flags
from hpo.pool import run_in_processes
from hpo.tablefile import (
    FIXED_COLUMNS,
    RESULT_COLUMNS,
    TABLE_FORMAT,
    meta_path,
    read_meta,
    read_rows,
    write_json,
)
from search_core.device import add_device_arguments
from search_core.errors import ConfigError

MAX_CONFIGS = 100_000
MAX_SEEDS = 100


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    table = subparsers.add_parser("table", help="tabular benchmark of a study's objective")
    sub = table.add_subparsers(dest="table_command", required=True)
    build = sub.add_parser("build", help="evaluate N configurations x K seeds into a table")
    build.add_argument("--study", required=True, help="study file whose objective to tabulate")
    build.add_argument("--configs", type=int, required=True,
                       help="Sobol configurations (the study's grid cells come on top)")
    build.add_argument("--seeds", type=int, default=2, help="seeds per configuration (0..K-1)")
    build.add_argument("--jobs", type=int, default=1, help="evaluations at once (one process "
                                                           "and thread each)")
    build.add_argument("--design-seed", type=int, default=0, help="seed of the Sobol design")
    build.add_argument("--out", default=None, help="table file (default tables/STUDY.csv)")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_device_arguments(build)
    build.add_argument("--debug", action="store_true", help="tracebacks on errors")
    show = sub.add_parser("show", help="a table's size, cost and surrogate fit")
    show.add_argument("path", help="table file (CSV) written by hpo table build")
    show.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return table


@dataclass(frozen=True)
class TableJob:
    """One evaluation: a configuration with one seed (picklable, for worker processes)."""

    config: int
    source: str  # "sobol" or "grid"
    params: dict[str, Any]
    seed: int
    study: dict[str, Any]  # StudySpec.to_dict
    reference: float
    device: str = "auto"  # where it runs (StudySpec.to_dict leaves the device out)


def cmd_table(args: argparse.Namespace) -> int:
    if args.table_command == "show":
        return cmd_show(args)
    return cmd_build(args)


def cmd_build(args: argparse.Namespace) -> int:
    from hpo.objective import reference_complexity
    from hpo.study import load_study, with_run_settings
    from search_core.device import check_device_precision, resolve_device

    check_flags([(1 <= args.configs <= MAX_CONFIGS,
                  f"--configs: got {args.configs}; need 1..{MAX_CONFIGS}"),
                 (1 <= args.seeds <= MAX_SEEDS, f"--seeds: got {args.seeds}; need 1..{MAX_SEEDS}"),
                 (args.jobs >= 1, f"--jobs: got {args.jobs}; need >= 1")])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = with_run_settings(load_study(args.study), args.device, args.precision)
    # here, not in a worker: a device this machine lacks is one line before anything is written
    check_device_precision(resolve_device(spec.device, "device"), spec.precision)
    if not spec.objective.entry.trains:
        raise ConfigError(f"--study: {args.study} computes its objective from the parameters "
                          f"(kind {spec.objective.kind}); a table is for a trained objective")
    if len(spec.objective.directions) != 1:
        raise ConfigError("--study: a table holds one value per evaluation; this study has "
                          f"{len(spec.objective.directions)} objectives")
    path = Path(args.out or Path("tables") / f"{spec.name}.csv")
    design = configurations(spec, args.configs, args.design_seed)
    meta = table_meta(spec, args, len(design))
    check_meta(path, meta)
    done = {(int(r["config"]), int(r["seed"])) for r in read_rows(path)}
    reference = reference_complexity(spec)
    jobs = [TableJob(i, source, params, seed, spec.to_dict(), reference, spec.device)
            for i, (source, params) in enumerate(design) for seed in range(args.seeds)
            if (i, seed) not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(meta_path(path), meta)
    columns = [*FIXED_COLUMNS, *sorted(spec.params), *RESULT_COLUMNS]
    started = time.perf_counter()
    with appending(path, columns) as out:
        for job, record in run_in_processes(evaluate_job, jobs, args.jobs, "table",
                                            args.quiet):
            append_row(out, columns, job, record)
    print(f"table {path}: {len(design)} configurations x {args.seeds} seeds; "
          f"{len(jobs)} evaluated now in {time.perf_counter() - started:.0f} s wall "
          f"({len(done)} were there); hpo table show {path}")
    return 0


def configurations(spec: Any, count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The study's grid cells (when it has a ``grid:``), then ``count`` points of a
    scrambled Sobol sequence over its params (categoricals drawn at random, seeded)."""
    import warnings

    import optuna

    from hpo.grid import grid_cells
    from hpo.trial import suggest_all

    cells = [("grid", cell) for cell in grid_cells(spec)] if spec.grid else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed))
        study = optuna.create_study(sampler=sampler)
        points = []
        for _ in range(count):
            trial = study.ask()
            points.append(("sobol", suggest_all(trial, spec)))
            study.tell(trial, 0.0)
    return cells + points


def evaluate_job(job: TableJob) -> dict[str, Any]:
    """One evaluation in this process (one torch thread): value, test value, seconds; a
    failing evaluation is a row with its error (the build goes on)."""
    from hpo.objective import evaluate
    from hpo.study import StudySpec, with_run_settings

    started, cpu = time.perf_counter(), time.process_time()
    try:
        spec = with_run_settings(StudySpec.from_dict(job.study), job.device)
        result = evaluate(spec, job.params, job.seed, job.reference, threads=1, test=True)
    except Exception as err:  # recorded, and the table goes on
        return {"value": math.nan, "test_value": math.nan,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "error": f"{type(err).__name__}: {err}"[:300]}
    return {"value": result.values[0],
            "test_value": result.test_values[0] if result.test_values else math.nan,
            "seconds": result.seconds, "cpu_seconds": time.process_time() - cpu, "error": ""}


# ----------------------------------------------------------------------------- files


def table_meta(spec: Any, args: argparse.Namespace, configs: int) -> dict[str, Any]:
    from hpo.records import environment
    from search_core.configtools import to_plain

    return {
        "format": TABLE_FORMAT,
        "study_name": spec.name,
        "fingerprint": spec.fingerprint(),
        "study": spec.to_dict(),
        "params": {name: to_plain(param) for name, param in spec.params.items()},
        "directions": spec.objective.directions,
        "design": {"sobol": args.configs, "grid": configs - args.configs,
                   "design_seed": args.design_seed, "seeds": args.seeds},
        "evaluation": {"threads": 1, "jobs": args.jobs, "device": spec.device,
                       "precision": spec.precision},
        "environment": environment(threads=1),  # versions, commit, CPU, cores
        "command": f"hpo table build --study {args.study} --configs {args.configs} "
                   f"--seeds {args.seeds} --jobs {args.jobs}" + _device_flags(args),
    }


def _device_flags(args: argparse.Namespace) -> str:
    """``--device`` and ``--precision`` as given on the command line (none: nothing)."""
    flags = [f" --{name} {value}" for name in ("device", "precision")
             if (value := getattr(args, name, None)) is not None]
    return "".join(flags)


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """An existing table must be of the same study (fingerprint) and format."""
    old = meta_path(path)
    if not old.exists():
        if path.exists():
            raise ConfigError(f"--out: {path} exists without its {old.name}; give another "
                              "--out (a table is its CSV and its JSON)")
        return
    before = read_meta(path)
    if before.get("fingerprint") != meta["fingerprint"] or before.get("format") != TABLE_FORMAT:
        raise ConfigError(f"--out: {path} holds a table of study {before.get('study_name')!r} "
                          f"(fingerprint {before.get('fingerprint')}), not of this study "
                          f"({meta['fingerprint']}); give another --out")
    if before.get("design", {}).get("design_seed") != meta["design"]["design_seed"]:
        raise ConfigError(f"--design-seed: {path} was built with design seed "
                          f"{before['design']['design_seed']}; use it to extend the table")


@contextlib.contextmanager
def appending(path: Path, columns: list[str]) -> Iterator[Any]:
    """The table file for appending: header written when new, a torn last line cut off."""
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        header = data.split(b"\n", 1)[0].decode()
        if header and header.split(",") != columns:
            raise ConfigError(f"--out: {path} has columns {header!r}, expected "
                              f"{','.join(columns)}; give another --out")
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as file:
        if new:
            file.write(",".join(columns) + "\n")
            _sync(file)
        yield file


def _sync(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def append_row(out: Any, columns: list[str], job: TableJob, record: dict[str, Any]) -> None:
    row = {"config": job.config, "source": job.source, "seed": job.seed, **job.params,
           **record}
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c)) for c in columns])
    out.write(buffer.getvalue())
    _sync(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    from hpo.surrogate import cross_validate, load_table

    table = load_table(Path(args.path))
    meta, frame = table.meta, table.frame
    seconds = frame["cpu_seconds"]
    print(f"table {args.path}: study {meta['study_name']} (fingerprint {meta['fingerprint']}), "
          f"{frame['config'].nunique()} configurations, {len(frame)} evaluations "
          f"({table.failed} failed), seeds {sorted(frame['seed'].unique().tolist())}")
    print(f"cost: {seconds.sum() / 3600:.2f} CPU hours ({seconds.median():.1f} s median per "
          f"evaluation, {meta['evaluation']['threads']} thread each; wall "
          f"{frame['seconds'].sum() / 3600:.2f} h summed) on {meta['environment']['cpu']} "
          f"({meta['environment']['cores']} CPUs)")
    fit = cross_validate(table)
    print(f"surrogate ({fit['model']}), {fit['folds']}-fold held-out configurations: "
          f"Spearman {fit['spearman']:.3f}, RMSE {fit['rmse']:.4g} (value sd "
          f"{fit['value_sd']:.4g}); seed vs seed Spearman {fit['seed_spearman']:.3f}, seed "
          f"noise sd {fit['noise_sd']:.4g}")
    return 0
