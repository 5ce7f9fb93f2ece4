"""A progress bar over a study: trials done, best so far, ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys
from typing import Any

import optuna
from optuna.trial import TrialState


class StudyProgress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.initial = 0

    def start(self, study: optuna.Study, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        self.initial = self._done(study)
        self.bar = tqdm(total=total, initial=min(self.initial, total), desc=study.study_name,
                        unit="trial", file=sys.stderr, dynamic_ncols=True)

    @staticmethod
    def _done(study: optuna.Study) -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   for t in study.get_trials(deepcopy=False))

    def update(self, study: optuna.Study) -> None:
        if self.bar is None:
            return
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        postfix = {"failed": failed}
        if complete and len(study.directions) == 1:
            values = [t.value for t in complete]
            best = max(values) if study.direction.name == "MAXIMIZE" else min(values)
            postfix["best"] = f"{best:.4f}"
        self.bar.n = min(done, self.bar.total)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
