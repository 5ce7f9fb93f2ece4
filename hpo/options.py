"""What ``hpo run`` is asked to do: ``RunOptions``, and the thread decisions that follow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from search_core.errors import ConfigError
from search_core.threads import threads_per_trial, workers_per_machine

if TYPE_CHECKING:
    from hpo.study import StudySpec


@dataclass(frozen=True)
class RayOptions:
    """Settings of the Ray backend only."""

    address: str | None = None  # join this cluster (auto or HOST:PORT)
    concurrency: int | None = None  # trials at once (default: as many as CPUs allow)
    cpus_per_trial: int = 1  # CPUs (and torch threads) per trial
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
    """Torch threads of one trial: the thread policy's (search_core/threads.py) for local
    workers; on Ray, --threads or else the CPUs reserved per trial."""
    if options.backend == "ray":
        threads = options.ray.cpus_per_trial if options.threads is None else options.threads
        return threads_per_trial(threads)
    return threads_per_trial(options.threads, options.jobs or 1)


def with_jobs(options: RunOptions, spec: StudySpec) -> RunOptions:
    """``options`` with ``jobs`` decided: the thread policy's number of workers for this
    machine, never more than the trials; one for the Ray backend (it runs no local workers)
    and for objectives that do not train (microseconds per trial: a worker costs more)."""
    if options.jobs is not None:
        return options
    if options.backend != "local" or not spec.objective.entry.trains:
        return replace(options, jobs=1)
    jobs = workers_per_machine(threads_per_trial(options.threads))
    return replace(options, jobs=max(1, min(jobs, options.trials)))
