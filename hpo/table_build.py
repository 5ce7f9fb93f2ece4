"""``hpo table build``: a tabular benchmark of a study's real objective.

N configurations of the study's space (a scrambled Sobol design, plus every cell of the
study's ``grid:``) are each evaluated with K seeds (0..K-1) by the study's own objective
(``hpo.evaluation.evaluate``: the search, the family, the value; and the same objective on
the test split, for reporting). Every evaluation is appended to ``PATH`` (CSV) as it
finishes, flushed to disk, so a killed build loses only the evaluations in flight and the
same command continues it; a larger ``--configs`` or ``--seeds`` adds only what is missing
(the Sobol design with the same seed extends its prefix). ``PATH.json`` holds the metadata:
format version, the study (settings and fingerprint), the design, and the environment record
``hpo run`` also keeps (package versions, git commit, CPU, cores, threads per evaluation).

A study then answers its trials from the table (``objective: {kind: table, path: PATH}``,
hpo/surrogate.py) in milliseconds instead of minutes.

``--device`` and ``--precision`` replace the study file's settings (``hpo.study_spec.
with_run_settings``); the device is where the evaluations run (recorded in the metadata, not
part of the study's fingerprint), the precision is part of what they compute.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
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
from hpo.table_file import (
    FIXED_COLUMNS,
    RESULT_COLUMNS,
    TABLE_FORMAT,
    meta_path,
    read_meta,
    read_rows,
    write_json,
)
from search_core.errors import ConfigError

MAX_CONFIGS = 100_000
MAX_SEEDS = 100


@dataclass(frozen=True)
class TableRequest:
    """What ``hpo table build`` is asked: the study file, the design, where the table goes,
    and ``--device`` / ``--precision`` in place of the study's."""

    study: str
    configs: int
    seeds: int = 2
    jobs: int = 1
    design_seed: int = 0
    out: str | None = None
    quiet: bool = False
    device: str | None = None
    precision: str | None = None
    subset: int = 0  # the first N configurations of the design get subset_seeds seeds
    subset_seeds: int = 0

    def seeds_of(self, config: int) -> int:
        """How many seeds (0..K-1) configuration ``config`` of the design gets."""
        if config < self.subset:
            return max(self.seeds, self.subset_seeds)
        return self.seeds


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


def build_table(request: TableRequest) -> str:
    """Evaluate what the table at ``request.out`` lacks (appending as each evaluation ends);
    the sentence to print."""
    from hpo.evaluation import reference_complexity
    from hpo.study import load_study
    from hpo.study_spec import with_run_settings
    from search_core.device import check_device_precision, resolve_device

    check_flags([(1 <= request.configs <= MAX_CONFIGS,
                  f"--configs: got {request.configs}; need 1..{MAX_CONFIGS}"),
                 (1 <= request.seeds <= MAX_SEEDS,
                  f"--seeds: got {request.seeds}; need 1..{MAX_SEEDS}"),
                 (request.jobs >= 1, f"--jobs: got {request.jobs}; need >= 1"),
                 (0 <= request.subset <= MAX_CONFIGS,
                  f"--subset: got {request.subset}; need 0..{MAX_CONFIGS}"),
                 (0 <= request.subset_seeds <= MAX_SEEDS,
                  f"--subset-seeds: got {request.subset_seeds}; need 0..{MAX_SEEDS}"),
                 (bool(request.subset) == bool(request.subset_seeds),
                  "--subset N and --subset-seeds K go together (the first N configurations "
                  "get K seeds)")])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = with_run_settings(load_study(request.study), request.device, request.precision)
    # here, not in a worker: a device this machine lacks is one line before anything is written
    check_device_precision(resolve_device(spec.device, "device"), spec.precision)
    if not spec.objective.entry.trains:
        raise ConfigError(f"--study: {request.study} computes its objective from the parameters "
                          f"(kind {spec.objective.kind}); a table is for a trained objective")
    if len(spec.objective.directions) != 1:
        raise ConfigError("--study: a table holds one value per evaluation; this study has "
                          f"{len(spec.objective.directions)} objectives")
    path = Path(request.out or Path("tables") / f"{spec.name}.csv")
    design = configurations(spec, request.configs, request.design_seed)
    meta = table_meta(spec, request, len(design))
    check_meta(path, meta)
    done = {(int(r["config"]), int(r["seed"])) for r in read_rows(path)}
    reference = reference_complexity(spec)
    jobs = [TableJob(i, source, params, seed, spec.to_dict(), reference, spec.device)
            for seed, i, source, params in _seed_major(design, request)
            if (i, seed) not in done]
    if jobs and done:  # the stored values must still be what the objective computes
        check_reproduces(path, TableJob(0, "", {}, 0, spec.to_dict(), reference, spec.device))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(meta_path(path), meta)
    columns = [*FIXED_COLUMNS, *sorted(spec.params), *RESULT_COLUMNS]
    started = time.perf_counter()
    with appending(path, columns) as out:
        for job, record in run_in_processes(evaluate_job, jobs, request.jobs, "table",
                                            request.quiet):
            append_row(out, columns, job, record)
    subset = (f" (the first {request.subset} with {request.subset_seeds})"
              if request.subset else "")
    return (f"table {path}: {len(design)} configurations x {request.seeds} seeds{subset}; "
            f"{len(jobs)} evaluated now in {time.perf_counter() - started:.0f} s wall "
            f"({len(done)} were there); hpo table show {path}")


def _seed_major(design: list[tuple[str, dict[str, Any]]],
                request: TableRequest) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    """(seed, config, source, params) seed by seed: a build stopped part way leaves whole
    seeds (every configuration's seed 0 before any seed 1), which is what the surrogate's
    per-seed model wants."""
    most = max(request.seeds_of(i) for i in range(len(design)))
    for seed in range(most):
        for i, (source, params) in enumerate(design):
            if seed < request.seeds_of(i):
                yield seed, i, source, params


def check_reproduces(path: Path, template: TableJob) -> None:
    """Evaluate the table's first stored evaluation again before adding to it: a table
    extended by code whose objective computes other values (a changed search, another
    library version) would mix two objectives in one table. One line naming both values,
    and nothing written, when they differ (CPU evaluations are bit-exact run to run)."""
    row = next((r for r in read_rows(path) if math.isfinite(_number(r.get("value")))), None)
    if row is None:
        return
    params = {name: _typed_cell(row[name], param)
              for name, param in template.study["params"].items()}
    job = dataclasses.replace(template, config=int(row["config"]), source=row["source"],
                              params=params, seed=int(row["seed"]))
    again = evaluate_job(job)["value"]
    stored = float(row["value"])
    if not math.isclose(again, stored, rel_tol=1e-9, abs_tol=1e-12):
        built = read_meta(path).get("environment", {}).get("git_commit") or "an unknown commit"
        raise ConfigError(f"--out: {path}: configuration {job.config} seed {job.seed} gives "
                          f"{again:.6g} now and {stored:.6g} in the table (built by "
                          f"{str(built)[:12]}): the objective's code or libraries changed since; "
                          "build a new table with another --out")


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _typed_cell(text: str, param: dict[str, Any]) -> Any:
    """A parameter's cell as the type the study declares."""
    if param["type"] == "int":
        return int(float(text))
    if param["type"] == "float":
        return float(text)
    by_text = {str(c): c for c in param.get("choices") or ()}
    return by_text.get(text, text)


def configurations(spec: Any, count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The study's grid cells (when it has a ``grid:``), then ``count`` points of a
    scrambled Sobol sequence over its params (categoricals drawn at random, seeded)."""
    import warnings

    import optuna

    from hpo.grid import grid_cells
    from hpo.trial import suggest_all

    cells = [("grid", cell) for cell in grid_cells(spec)] if spec.grid else []
    with warnings.catch_warnings():  # QMCSampler is experimental (Optuna 3.0-5.1): our choice
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
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
    from hpo.evaluation import evaluate
    from hpo.study import spec_from_dict
    from hpo.study_spec import with_run_settings

    started, cpu = time.perf_counter(), time.process_time()
    try:
        spec = with_run_settings(spec_from_dict(job.study), job.device)
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


def table_meta(spec: Any, request: TableRequest, configs: int) -> dict[str, Any]:
    from hpo.records import environment
    from search_core.configtools import to_plain

    return {
        "format": TABLE_FORMAT,
        "study_name": spec.name,
        "fingerprint": spec.fingerprint(),
        "study": spec.to_dict(),
        "params": {name: to_plain(param) for name, param in spec.params.items()},
        "directions": spec.objective.directions,
        "design": {"sobol": request.configs, "grid": configs - request.configs,
                   "design_seed": request.design_seed, "seeds": request.seeds,
                   "subset": request.subset, "subset_seeds": request.subset_seeds},
        "evaluation": {"threads": 1, "jobs": request.jobs, "device": spec.device,
                       "precision": spec.precision},
        "environment": environment(threads=1),  # versions, commit, CPU, cores
        "command": f"hpo table build --study {request.study} --configs {request.configs} "
                   f"--seeds {request.seeds} --jobs {request.jobs}" + _subset_flags(request)
                   + _device_flags(request),
    }


def _subset_flags(request: TableRequest) -> str:
    if not request.subset:
        return ""
    return f" --subset {request.subset} --subset-seeds {request.subset_seeds}"


def _device_flags(request: TableRequest) -> str:
    """``--device`` and ``--precision`` as given on the command line (none: nothing)."""
    flags = [f" --{name} {value}" for name in ("device", "precision")
             if (value := getattr(request, name, None)) is not None]
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


def show_table(path: str) -> list[str]:
    """What ``hpo table show`` prints: size, cost, the surrogate's held-out fit and how like
    a real seed its simulated seeds are."""
    from hpo.surrogate import cross_validate, load_table
    from hpo.surrogate_checks import seed_check_lines, seed_checks

    table = load_table(Path(path))
    lines = []
    meta, frame = table.meta, table.frame
    seconds = frame["cpu_seconds"]
    lines.append(f"table {path}: study {meta['study_name']} (fingerprint {meta['fingerprint']}), "
          f"{frame['config'].nunique()} configurations, {len(frame)} evaluations "
          f"({table.failed} failed), seeds {sorted(frame['seed'].unique().tolist())}")
    lines.append(f"cost: {seconds.sum() / 3600:.2f} CPU hours ({seconds.median():.1f} s median per "
          f"evaluation, {meta['evaluation']['threads']} thread each; wall "
          f"{frame['seconds'].sum() / 3600:.2f} h summed) on {meta['environment']['cpu']} "
          f"({meta['environment']['cores']} CPUs)")
    fit = cross_validate(table)
    lines.append(f"surrogate ({fit['model']}), {fit['folds']}-fold held-out configurations: "
          f"Spearman {fit['spearman']:.3f}, RMSE {fit['rmse']:.4g} (value sd "
          f"{fit['value_sd']:.4g}); seed vs seed Spearman {fit['seed_spearman']:.3f}, seed "
          f"noise sd {fit['noise_sd']:.4g}")
    lines += seed_check_lines(seed_checks(table))
    return lines


