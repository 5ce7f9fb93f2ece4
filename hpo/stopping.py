"""When a study run stops: one rule, as a value, used by every backend and the summary.

As syne-tune's ``StoppingCriterion``: one function of (the study's state counts, the time
now) that says why the run stops, or None while it goes on."""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import TrialState

from hpo.facts import StateCounts, finished

TRIALS = "trials"  # the budget of finished trials is reached
GRID = "grid"  # every enqueued grid cell has run (the grid is smaller than --trials)
TIMEOUT = "timeout"  # --timeout has passed
STOPPED_EARLY = "stopped early"  # the backend returned with none of the reasons above


@dataclass(frozen=True)
class StopRule:
    """A run stops when the study has ``trials`` finished (COMPLETE or PRUNED) trials, when
    ``max_failures`` trials failed in this run (``base_failures`` failed before it), for a
    grid when no enqueued cell is left, or when ``deadline`` (``time.time()``) has passed."""

    trials: int
    max_failures: int
    base_failures: int = 0
    deadline: float | None = None
    grid: bool = False

    def reason(self, counts: StateCounts, now: float) -> str | None:
        """Why the run stops now (a code above, or "N failed trials (--max-failures)"), or
        None while it goes on."""
        if counts[TrialState.FAIL] - self.base_failures >= self.max_failures:
            return f"{self.max_failures} failed trials (--max-failures)"
        if finished(counts) >= self.trials:
            return TRIALS
        if self.grid and counts[TrialState.WAITING] == counts[TrialState.RUNNING] == 0:
            return GRID
        if self.deadline is not None and now > self.deadline:
            return TIMEOUT
        return None

    def plan(self, counts: StateCounts, now: float) -> tuple[int, int]:
        """(trials still to start, trials running); (0, 0) means stop. A grid starts only
        its enqueued cells."""
        if self.reason(counts, now) is not None:
            return 0, 0
        running = counts[TrialState.RUNNING]
        to_start = self.trials - finished(counts) - running
        if self.grid:
            to_start = min(to_start, counts[TrialState.WAITING])
        return max(to_start, 0), running

    def final_reason(self, counts: StateCounts, now: float) -> str:
        """Why a run that has returned stopped: ``reason``, else ``STOPPED_EARLY``."""
        return self.reason(counts, now) or STOPPED_EARLY
