"""When a study run stops: one rule, as a value, used by every backend and the summary."""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

StateCounts = dict[TrialState, int]


def state_counts(study: optuna.Study) -> StateCounts:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


@dataclass(frozen=True)
class StopRule:
    """A run stops when the study has ``trials`` finished (COMPLETE or PRUNED) trials, when
    ``max_failures`` trials failed in this run (``base_failures`` failed before it), when
    ``deadline`` (time.time()) has passed, or, for a grid, when no enqueued cell is left."""

    trials: int
    max_failures: int
    base_failures: int = 0
    deadline: float | None = None
    grid: bool = False

    def stopped(self, counts: StateCounts) -> bool:
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        failed = counts[TrialState.FAIL] - self.base_failures
        expired = self.deadline is not None and time.time() > self.deadline
        return done >= self.trials or failed >= self.max_failures or expired

    def plan(self, counts: StateCounts) -> tuple[int, int]:
        """(trials still to start, trials running); (0, 0) means stop. A grid starts only
        its enqueued cells."""
        if self.stopped(counts):
            return 0, 0
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        running = counts[TrialState.RUNNING]
        to_start = self.trials - done - running
        if self.grid:
            to_start = min(to_start, counts[TrialState.WAITING])
        return max(to_start, 0), running

    def reason(self, counts: StateCounts) -> str:
        """Why a finished run stopped: "trials", "grid" (every cell ran: the grid is smaller
        than --trials), "N failed trials (--max-failures)" or "stopped early"."""
        if counts[TrialState.FAIL] - self.base_failures >= self.max_failures:
            return f"{self.max_failures} failed trials (--max-failures)"
        if counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] >= self.trials:
            return "trials"
        if self.grid and counts[TrialState.WAITING] == counts[TrialState.RUNNING] == 0:
            return "grid"
        return "stopped early"
