"""A progress bar over a study (tqdm, on stderr): trials done, the running trials' epochs,
failures and the best value so far under the objective's name."""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.facts import FINISHED, maximises
from hpo.records import HISTORY_ATTR

MAX_RUNNING_SHOWN = 1  # running trials named in the bar; more are counted (a 120-column
# terminal keeps a bar of 20 cells or more: tests/test_ux.py)
BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
              "{postfix}")


def running_epochs(trials: list[FrozenTrial]) -> str:
    """The first running trial and the epochs it has finished, and how many more run, e.g.
    "#7 3/5 (+2)" (from the history a trial records after every epoch)."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    shown = []
    for trial in running[:MAX_RUNNING_SHOWN]:
        history = trial.user_attrs.get(HISTORY_ATTR) or []
        last = history[-1] if history else None
        if isinstance(last, dict) and "epoch" in last and "epochs" in last:
            shown.append(f"#{trial.number} {int(last['epoch']) + 1}/{int(last['epochs'])}")
        else:
            shown.append(f"#{trial.number} start")
    more = len(running) - len(shown)
    return ", ".join(shown) + (f" (+{more})" if more > 0 else "")


def best_so_far(study: optuna.Study, trials: list[FrozenTrial]) -> tuple[str, str] | None:
    """(the objective's name, the best value so far) of a single-objective study."""
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    if not complete or len(study.directions) != 1:
        return None
    best = max(complete) if maximises(study) else min(complete)
    names = study.metric_names
    return (f"best {names[0]}" if names else "best"), f"{best:.4f}"


def postfix_text(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    """What follows the bar: "#7 3/5 (+2) · 1 failed · best hypervolume 0.8123"."""
    parts = [running_epochs(trials)]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    parts.append(f"{failed} failed" if failed else "")
    if best := best_so_far(study, trials):
        parts.append(" ".join(best))
    return " · ".join(part for part in parts if part)


class StudyProgress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def start(self, study: optuna.Study, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        done = self._done(study.get_trials(deepcopy=False))
        self.bar = tqdm(total=total, initial=min(done, total), desc=study.study_name,
                        unit="trial", file=sys.stderr, dynamic_ncols=True,
                        bar_format=BAR_FORMAT)

    @staticmethod
    def _done(trials: list[FrozenTrial]) -> int:
        return sum(t.state in FINISHED for t in trials)

    def update(self, study: optuna.Study) -> None:
        """Redraw from the storage: called after each trial, after each epoch of a trial
        run in this process, and twice a second while worker processes run trials."""
        if self.bar is None:
            return
        trials = study.get_trials(deepcopy=False)
        self.bar.n = min(self._done(trials), self.bar.total)
        self.bar.set_postfix_str(postfix_text(study, trials), refresh=False)
        self.bar.refresh()

    def note(self, text: str) -> None:
        """Say what the run is doing before its trials report (e.g. "starting Ray"); the
        next update replaces it."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
