"""Independent evaluations in worker processes, each result handed back as it finishes.

Used by ``hpo reevaluate`` and ``hpo table build``: one function applied to picklable jobs,
in this process (``workers == 1``) or in that many spawned processes holding one torch
thread each (search_core/threads.py), with a progress bar counting finished jobs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

Job = TypeVar("Job")


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
                workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for future in as_completed(futures):
                bar.update(1)
                yield futures[future], future.result()
    finally:
        bar.close()
