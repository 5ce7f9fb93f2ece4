"""What ``hpo run`` is asked to do: ``RunOptions``, and the thread decisions that follow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hpo.placement import gpu_slots, threads_for, visible_gpus, wants_gpu
from search_core.errors import ConfigError
from search_core.threads import threads_per_trial, usable_cpus, workers_per_machine

if TYPE_CHECKING:
    from hpo.study import StudySpec


@dataclass(frozen=True)
class RayOptions:
    """Settings of the Ray backend only."""

    address: str | None = None  # join this cluster (auto or HOST:PORT)
    concurrency: int | None = None  # trials at once (default: as many as CPUs allow)
    cpus_per_trial: int = 1  # CPUs (and torch threads) per trial
    gpus_per_trial: float = 0.0  # GPUs per trial; fractions share a GPU (0.25: four)
    retries: int = 2  # retries of a trial whose worker died


@dataclass(frozen=True)
class RunOptions:
    study_path: str | None
    sampler: str = "tpe"
    trials: int = 20
    timeout: float | None = None
    jobs: int | None = None  # None: as many 1-thread workers as CPUs (search_core/threads.py)
    seed: int = 0
    name: str | None = None
    storage: str | None = None
    pruner: str = "none"
    max_failures: int = 5
    artifacts: str = "runs"
    threads: int | None = None
    device: str | None = None  # --device: in place of the study's (hpo.study.with_run_settings)
    precision: str | None = None  # --precision: likewise
    trials_per_gpu: int = 1  # local workers per GPU on a GPU machine
    gpus: tuple[str, ...] = ()  # decided by with_jobs: the GPU of each local worker slot
    backend: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    verbose: bool = False
    # set by hpo compare for the studies of a group
    grid_budget: int | None = None  # grid from the ranges, sized to this many cells
    study_attrs: tuple[tuple[str, Any], ...] = ()  # extra study user attributes
    reference: float | None = None  # hypervolume reference, when known (a compare group's)


def check_flags(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise ``ConfigError`` with the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def trial_threads(options: RunOptions) -> int:
    """Torch threads of one trial: ``--threads``, else for local workers the usable CPUs
    shared by the ``--jobs`` trials that run at once (one search alone uses every core;
    jobs not decided yet counts as one per CPU); on Ray, the CPUs reserved per trial."""
    if options.backend == "ray":
        threads = options.ray.cpus_per_trial if options.threads is None else options.threads
        return threads_per_trial(threads)
    if options.threads is not None:
        return threads_per_trial(options.threads, options.jobs or 1)
    cpus = usable_cpus()
    return threads_for(cpus, options.jobs or cpus)


def with_jobs(options: RunOptions, spec: StudySpec) -> RunOptions:
    """``options`` with ``jobs`` decided: on a GPU machine (device auto or cuda, local
    backend), ``--trials-per-gpu`` workers per visible GPU, each slot's GPU in ``gpus``;
    else the thread policy's number of workers for this machine; never more than the
    trials; one for the Ray backend (it runs no local workers) and for objectives that do
    not train (microseconds per trial: a worker costs more)."""
    if options.backend != "local" or not spec.objective.entry.trains:
        return replace(options, jobs=options.jobs or 1)
    gpus = visible_gpus() if wants_gpu(spec.device) else []
    slots = tuple(gpu_slots(gpus, options.trials_per_gpu)) if gpus else ()
    if options.jobs is not None:
        return replace(options, gpus=slots)
    jobs = len(slots) if slots else workers_per_machine(threads_per_trial(options.threads))
    return replace(options, jobs=max(1, min(jobs, options.trials)), gpus=slots)
