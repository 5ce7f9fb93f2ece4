"""Independent evaluations in worker processes, each result handed back as it finishes.

Used by ``hpo reevaluate`` and ``hpo table build``: one function applied to picklable jobs,
in this process (``workers == 1``) or in that many spawned processes holding one torch
thread each (search_core/threads.py), with a progress bar counting finished jobs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

Job = TypeVar("Job")
ORPHAN_CHECK_S = 1.0  # how often a worker looks whether the process that started it is alive
EXIT_ORPHANED = 70  # a worker's exit status when its driver died


def orphan_guard(driver: int) -> None:
    """Pool initializer: the worker exits when the process that started it is gone (it was
    killed: nothing else would ever stop the worker, which holds ~0.5 GB)."""

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="orphan-guard", daemon=True).start()


def run_in_processes(fn: Callable[[Job], Any], jobs: Sequence[Job], workers: int, desc: str,
                     quiet: bool = False) -> Iterator[tuple[Job, Any]]:
    """(job, fn(job)) for every job, in the order they finish."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="evaluation", desc=desc, file=sys.stderr,
               disable=quiet or not jobs, dynamic_ncols=True)
    try:
        if workers == 1:
            for job in jobs:
                result = fn(job)
                bar.update(1)
                yield job, result
            return
        import multiprocessing

        from search_core.threads import child_environment

        with child_environment(1), ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=orphan_guard, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for future in as_completed(futures):
                bar.update(1)
                yield futures[future], future.result()
    finally:
        bar.close()
