"""The checks of ``hpo run``'s and ``hpo compare``'s flags that need no study file: run
first, so a bad flag fails in a fraction of a second (nothing here imports torch)."""

from __future__ import annotations

from dataclasses import replace

from hpo.backends.registry import BACKENDS
from hpo.options import RunOptions, check_flags, trial_threads
from hpo.samplers import PRUNERS, SAMPLERS
from hpo.study import check_study_name


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
    ])
    trial_threads(options)  # raises on a bad --threads
    return options
