"""The checks of ``hpo run``'s and ``hpo compare``'s flags that need no study file: run
first, so a bad flag fails in a fraction of a second (nothing here imports torch)."""

from __future__ import annotations

from dataclasses import replace

from hpo.backends.registry import BACKENDS
from hpo.options import RunOptions, check_flags, trial_threads
from hpo.samplers import PRUNERS, SAMPLERS
from hpo.study import check_study_name
from search_core.device import check_device_name, check_precision

MAX_GPUS_PER_TRIAL = 64


def check_run_flags(options: RunOptions) -> RunOptions:
    """Every check of the command-line flags that needs no study file: run first, so a bad
    flag fails in a fraction of a second (nothing here imports torch). Returns ``options``
    with the registered spelling of the sampler, pruner and backend (``TPE`` is ``tpe``)."""
    options = replace(options, sampler=SAMPLERS.canonical(options.sampler, "--sampler"),
                      pruner=PRUNERS.canonical(options.pruner, "--pruner"),
                      backend=BACKENDS.canonical(options.backend, "--backend"))
    if options.name is not None:
        check_study_name(options.name, "--name")
    ray = options.ray
    check_flags([
        (options.trials >= 1, f"--trials: got {options.trials}; need >= 1"),
        (options.jobs is None or options.jobs >= 1, f"--jobs: got {options.jobs}; need >= 1"),
        (options.backend == "ray" or not (ray.address or ray.concurrency),
         "--address and --concurrency need --backend ray"),
        (ray.cpus_per_trial >= 1 and ray.retries >= 0 and (ray.concurrency or 1) >= 1,
         "--cpus-per-trial and --concurrency need >= 1, --retries >= 0"),
        (options.backend == "ray" or not ray.gpus_per_trial,
         "--gpus-per-trial needs --backend ray (local workers: --trials-per-gpu)"),
        (0 <= ray.gpus_per_trial <= MAX_GPUS_PER_TRIAL,
         f"--gpus-per-trial: got {ray.gpus_per_trial}; need 0..{MAX_GPUS_PER_TRIAL} (a "
         "fraction such as 0.25 shares a GPU between four trials)"),
        (options.trials_per_gpu >= 1,
         f"--trials-per-gpu: got {options.trials_per_gpu}; need >= 1"),
    ])
    if options.device is not None:
        check_device_name(options.device, "--device")
    if options.precision is not None:
        check_precision(options.precision, "--precision")
    trial_threads(options)  # raises on a bad --threads
    return options
