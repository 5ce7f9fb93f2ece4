"""What ``hpo run`` is asked to do: ``RunOptions``, the checks of its flags that need no
study file (``checked``: run first, so a bad flag fails in a fraction of a second; nothing
here imports torch), and the thread decisions that follow."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.backend_registry import BACKENDS, BackendEntry
from hpo.placement import gpu_slots, threads_for, visible_gpus, wants_gpu
from hpo.samplers import PRUNERS, SAMPLERS
from hpo.study import load_study
from hpo.study_spec import check_study_name, with_run_settings
from search_core.device import check_device_name, check_precision
from search_core.errors import ConfigError, require_extra
from search_core.threads import threads_per_trial, usable_cpus, workers_per_machine

MAX_GPUS_PER_TRIAL = 64

if TYPE_CHECKING:
    from hpo.study_spec import StudySpec


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
    device: str | None = None  # --device: in place of the study's (with_run_settings)
    precision: str | None = None  # --precision: likewise
    noise: str | None = None  # --noise: the study's noise.policy in place of the file's
    trials_per_gpu: int = 1  # local workers per GPU on a GPU machine
    gpus: tuple[str, ...] = ()  # decided by with_jobs: the GPU of each local worker slot
    backend: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    verbose: bool = False
    # set by hpo compare for the studies of a group
    grid_budget: int | None = None  # grid from the ranges, sized to this many cells
    study_attrs: tuple[tuple[str, Any], ...] = ()  # extra study user attributes
    reference: float | None = None  # hypervolume reference, when known (a compare group's)

    @property
    def backend_entry(self) -> BackendEntry:
        return BACKENDS.get(self.backend, "--backend")


def check_flags(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise ``ConfigError`` with the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def checked(options: RunOptions) -> RunOptions:
    """``options`` after every check of the command-line flags that needs no study file,
    with the registered spelling of the sampler, pruner and backend (``TPE`` is ``tpe``)."""
    options = replace(options, sampler=SAMPLERS.canonical(options.sampler, "--sampler"),
                      pruner=PRUNERS.canonical(options.pruner, "--pruner"),
                      backend=BACKENDS.canonical(options.backend, "--backend"))
    if options.name is not None:
        check_study_name(options.name, "--name")
    if options.backend_entry.needs:
        require_extra(*options.backend_entry.needs, f"--backend {options.backend}")
    ray, cluster = options.ray, options.backend_entry.cluster
    check_flags([
        (options.trials >= 1, f"--trials: got {options.trials}; need >= 1"),
        (options.jobs is None or options.jobs >= 1, f"--jobs: got {options.jobs}; need >= 1"),
        (cluster or not (ray.address or ray.concurrency),
         "--address and --concurrency need --backend ray"),
        (ray.cpus_per_trial >= 1 and ray.retries >= 0 and (ray.concurrency or 1) >= 1,
         "--cpus-per-trial and --concurrency need >= 1, --retries >= 0"),
        (cluster or not ray.gpus_per_trial,
         "--gpus-per-trial needs --backend ray (local workers: --trials-per-gpu)"),
        (0 <= ray.gpus_per_trial <= MAX_GPUS_PER_TRIAL,
         f"--gpus-per-trial: got {ray.gpus_per_trial}; need 0..{MAX_GPUS_PER_TRIAL} (a "
         "fraction such as 0.25 shares a GPU between four trials)"),
        (options.trials_per_gpu >= 1,
         f"--trials-per-gpu: got {options.trials_per_gpu}; need >= 1"),
    ])
    if Path(options.artifacts).exists() and not Path(options.artifacts).is_dir():
        raise ConfigError(f"--artifacts {options.artifacts}: a file, not a folder; give a "
                          "folder for the trials' checkpoints")
    if options.device is not None:
        check_device_name(options.device, "--device")
    if options.precision is not None:
        check_precision(options.precision, "--precision")
    trial_threads(options)  # raises on a bad --threads
    return options


RAY_ADDRESS_VAR = "RAY_ADDRESS"  # how Ray users point tools at their cluster
CONNECT_TIMEOUT_S = 5.0  # a cluster address that accepts no connection in this long is down


def cluster_address(options: RunOptions) -> str | None:
    """The cluster a cluster backend joins: ``--address``, else ``RAY_ADDRESS`` from the
    environment; None: it starts its own on this machine."""
    if not options.backend_entry.cluster:
        return None
    return options.ray.address or os.environ.get(RAY_ADDRESS_VAR) or None


def check_cluster_address(address: str, flag: str) -> None:
    """A ``HOST:PORT`` that accepts no TCP connection within ``CONNECT_TIMEOUT_S`` is one
    line, before anything is written (``auto`` is left to Ray, which reads its address
    file)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"{flag} {address}: no Ray cluster answers there "
                          f"({err.strerror or err}); start one (ray start --head) or give "
                          "the head's address") from None


def read_study(options: RunOptions) -> StudySpec:
    """The study file (read here, once per run) with ``--device``, ``--precision`` and
    ``--noise`` in place of its own; every layer and worker after this gets the spec, not
    the path."""
    return with_run_settings(load_study(options.study_path), options.device, options.precision,
                             options.noise)


def trial_threads(options: RunOptions) -> int:
    """Torch threads of one trial: ``--threads``, else for local workers the usable CPUs
    shared by the ``--jobs`` trials that run at once (one search alone uses every core;
    jobs not decided yet counts as one per CPU); on Ray, the CPUs reserved per trial."""
    if options.backend_entry.cluster:
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
    trials, ``--jobs`` included (a worker holds ~0.5 GB); one for a backend without local
    workers (Ray) and for objectives that do not train (microseconds per trial: a worker
    costs more)."""
    if not options.backend_entry.local_workers or not spec.objective.entry.trains:
        return replace(options, jobs=max(1, min(options.jobs or 1, options.trials)))
    gpus = visible_gpus() if wants_gpu(spec.device) else []
    slots = tuple(gpu_slots(gpus, options.trials_per_gpu)) if gpus else ()
    if options.jobs is not None:
        return replace(options, jobs=max(1, min(options.jobs, options.trials)), gpus=slots)
    jobs = len(slots) if slots else workers_per_machine(threads_per_trial(options.threads))
    return replace(options, jobs=max(1, min(jobs, options.trials)), gpus=slots)
