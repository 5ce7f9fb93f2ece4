"""The thread policy: how many intra-op threads a process that trains or times uses, and how
its OpenMP threads wait. Everything that trains or measures asks here: local workers, Ray
trials, ``hpo bench``, ``hpo profile``, ``hpo export``, ``python -m search_core``.

Why it matters (docs/benchmarks.md, "Threads under load"): torch's CPU kernels run on GNU
OpenMP threads, which by default spin at every barrier before they sleep. A supernet step is
thousands of small kernels, hence thousands of barriers; when another process holds one of
the cores, the spinning threads burn their time slices waiting for a partner that is not
running, and two threads trained 23x slower than on a quiet machine. Passive waiting (a
thread that has nothing to do sleeps at once) removes the collapse.

OpenMP reads its environment once, when torch is imported, so the wait policy must be in
``os.environ`` before that. The harness calls :func:`configure_process` first thing in every
entry point, and hands :func:`openmp_environment` to the processes it starts. A user of the
Python API does the same, before importing torch (``import search_core.threads`` does not
import torch)::

    from search_core.threads import configure_process
    configure_process(threads=1)
    import torch

or sets ``OMP_WAIT_POLICY=PASSIVE`` in the shell. A user's own ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` is respected.

Torch is imported inside functions only.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from search_core.errors import ConfigError

log = logging.getLogger(__name__)

# OpenMP wait policies by name: what goes into the environment. "openmp" leaves OpenMP's
# own default (GNU OpenMP: spin ~300,000 times at a barrier, then sleep).
WAIT_POLICIES: dict[str, dict[str, str]] = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "openmp": {},
}
DEFAULT_WAIT = "passive"  # measured: docs/benchmarks.md, "Threads under load"
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # a user's own setting of either wins
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by OpenMP, MKL and OpenBLAS
DEFAULT_THREADS_PER_TRIAL = 1  # measured: docs/benchmarks.md, "Threads under load"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (a
    container limited to 1.5 CPUs on a 64-core host gets 2, not 64)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup v2 ``cpu.max`` quota in CPUs, or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def threads_per_trial(threads: int | None = None, jobs: int = 1) -> int:
    """Intra-op threads of one trial: ``threads`` when given, else one.

    One thread per trial is the default because on the studies' shapes it is as fast as two
    on a quiet machine, or nearly, and it cannot collapse under load: there is no barrier to
    wait at. Cores beyond the first are used by running trials side by side (``--jobs``,
    Ray's concurrency), which scales better than threads within a trial.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: got {threads}; need >= 1")
    if jobs < 1:
        raise ConfigError(f"--jobs: got {jobs}; need >= 1")
    return DEFAULT_THREADS_PER_TRIAL if threads is None else threads


def workers_per_machine(threads: int, cpus: int | None = None) -> int:
    """How many trials of ``threads`` threads run side by side by default: one per
    ``threads`` usable CPUs (``--jobs`` when not given)."""
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, cpus // threads)


def oversubscription(threads: int, jobs: int = 1, cpus: int | None = None) -> str | None:
    """A warning when ``jobs`` processes of ``threads`` threads need more than the usable
    CPUs (allowed: a user may know better), else None."""
    cpus = usable_cpus() if cpus is None else cpus
    if jobs * threads <= cpus:
        return None
    return (f"{jobs} job(s) x {threads} thread(s) oversubscribe the {cpus} usable CPU(s): "
            "expect each trial to run slower")


def check_wait(wait: str) -> str:
    if wait not in WAIT_POLICIES:
        raise ConfigError(f"OpenMP wait policy: got {wait!r}; expected one of "
                          f"{', '.join(WAIT_POLICIES)}")
    return wait


def openmp_environment(threads: int | None = None, wait: str | None = None,
                       base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a process (or a process it starts) needs before torch is imported.

    ``wait`` None: the passive wait policy, unless ``base`` (default ``os.environ``) sets
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` itself, which is then handed on; a name of
    ``WAIT_POLICIES``: that policy. With ``threads``: the thread count for OpenMP, MKL and
    OpenBLAS (numpy)."""
    base = os.environ if base is None else base
    own = {name: base[name] for name in WAIT_VARS if name in base}
    env: dict[str, str] = {}
    if wait is not None:
        env |= WAIT_POLICIES[check_wait(wait)]
    else:
        env |= own or WAIT_POLICIES[DEFAULT_WAIT]
    if threads is not None:
        env |= dict.fromkeys(THREAD_VARS, str(threads))
    return env


def configure_process(threads: int | None = None, wait: str | None = None) -> None:
    """Put :func:`openmp_environment` into ``os.environ``: for this process if torch is not
    imported yet, and for every process it starts from now on."""
    env = openmp_environment(threads, wait)
    if "torch" in sys.modules and "OMP_WAIT_POLICY" in env:
        log.debug("torch was imported before the thread policy was set: this process keeps "
                  "OpenMP's spinning wait policy (processes it starts do not)")
    os.environ.update(env)


@contextmanager
def child_environment(threads: int | None = None) -> Iterator[None]:
    """Processes started inside the block (``multiprocessing``'s spawn copies
    ``os.environ``) get :func:`openmp_environment`; this process's own is restored after."""
    saved = {name: os.environ.get(name) for name in (*WAIT_VARS, *THREAD_VARS)}
    os.environ.update(openmp_environment(threads))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def in_effect() -> dict[str, object]:
    """What this process runs with, for the records: torch's intra-op threads (when torch is
    loaded) and the OpenMP variables of its environment."""
    record: dict[str, object] = {name: os.environ[name] for name in (*WAIT_VARS, *THREAD_VARS)
                                 if name in os.environ}
    if "torch" in sys.modules:
        record["torch_threads"] = sys.modules["torch"].get_num_threads()
    return record


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (None: leave torch's setting), restoring the
    previous setting afterwards."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
