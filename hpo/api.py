"""nas-hpo from Python: run a study, read what it found, or hand the search to your own
Optuna study. ``import hpo`` gives these names (``hpo.run``, ``hpo.load``, ...).

```python
import hpo

results = hpo.run("low-dim-synthetic", sampler="random", trials=8, storage="demo.journal")
results.best_trial.params        # an optuna FrozenTrial
results.trials()                 # pandas: one row per trial
```

This module is a front door, as the command line is: it composes the harness (``hpo.runner``,
``hpo.trial``, ``hpo.facts``) and reads fronts from the report's frames (``reports``).
Every function raises ``hpo.NasHpoError`` subclasses for bad input, with the one-line
messages the command line prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.evaluation import check_fits_in_memory, reference_complexity
from hpo.facts import best_numbers, best_trial
from hpo.options import RunOptions
from hpo.records import (
    FINGERPRINT_ATTR,
    HISTORY_ATTR,
    REFERENCE_ATTR,
    SAMPLER_ATTR,
    TrialRecord,
    metric_names,
    named_values,
    set_trial_attrs,
    trial_row,
)
from hpo.runner import name_the_values, set_study_attributes
from hpo.runner import run as run_study
from hpo.storage import load_existing_study
from hpo.study import load_study, parse_study
from hpo.study_spec import StudySpec
from hpo.trial import TrialTask, run_trial, suggest_all, training_seed
from search_core.errors import ConfigError, NasHpoError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OptunaObjective", "Results", "TrialFailed", "load", "read_study", "run"]

StudyLike = Union[str, Path, Mapping[str, Any], StudySpec]  # noqa: UP007 - a runtime alias


class TrialFailed(NasHpoError):
    """A search trial failed (its reason is the message and the trial's ``fail_reason``);
    pass ``catch=(hpo.TrialFailed,)`` to ``study.optimize`` to go on past it."""


def read_study(study: StudyLike = "digits") -> StudySpec:
    """A validated study: a shipped study's name (``hpo studies list``), a YAML file's path,
    a mapping with a study file's keys, or a ``StudySpec`` as it is."""
    if isinstance(study, StudySpec):
        return study
    if isinstance(study, Mapping):
        return parse_study(dict(study), source="")
    return load_study(study)


def run(study: StudyLike = "digits", *, sampler: str = "tpe", trials: int = 20, seed: int = 0,
        storage: str | None = None, name: str | None = None, jobs: int = 1,
        threads: int | None = None, artifacts: str = "runs", backend: str = "local",
        timeout: float | None = None, progress: bool = False,
        noise: str | None = None) -> Results:
    """Run (or resume) a study as ``hpo run`` does, and return its results.

    ``storage``: a journal file or database URL (default ``runs/hpo.journal``); ``jobs``:
    trials at once in worker processes (1: in this process); ``name``: the study's name in
    the storage (default the study file's ``name``); ``progress``: the progress bar;
    ``noise``: ``"intensify"`` or ``"none"`` in place of the study's ``noise.policy``
    (``--noise``)."""
    from hpo.progress import StudyProgress
    from hpo.study_spec import with_run_settings

    spec = with_run_settings(read_study(study), noise=noise)
    options = RunOptions(study_path=spec.source or None, sampler=sampler, trials=trials,
                         seed=seed, storage=storage, name=name, jobs=jobs, threads=threads,
                         artifacts=artifacts, backend=backend, timeout=timeout, noise=noise)
    summary = run_study(options, progress=StudyProgress() if progress else None, spec=spec)
    return load(summary.name, storage)


def load(name: str, storage: str | None = None) -> Results:
    """The results of the study ``name`` in ``storage`` (default ``runs/hpo.journal``)."""
    return Results(load_existing_study(storage, name), storage)


@dataclass(frozen=True)
class Results:
    """A study's results: its trials, best trial, families and fronts (pandas frames)."""

    study: optuna.Study
    storage: str | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The best complete trial (a multi-objective study: the trial whose family front
        has the largest hypervolume; an intensified one: the incumbent's first trial); None
        before any trial completed."""
        return best_trial(self.study)

    def configurations(self) -> pd.DataFrame:
        """An intensified study's configurations, the incumbent first: config, incumbent,
        mean, sd, seeds, trials and each parameter (empty for a study run without
        intensification), as ``hpo show`` and the report list them."""
        from reports.study_frames import configuration_frame

        return configuration_frame(self.study)

    def trials(self) -> pd.DataFrame:
        """One row per trial, as ``hpo show`` lists them: number, state, the value(s) under
        the objective's names, ``param_*``, the family's hypervolume and controllability,
        seconds, the failure reason, and ``best``."""
        import pandas as pd

        best = best_numbers(self.study)
        rows = [trial_row(t) | {"best": t.number in best}
                for t in self.study.get_trials(deepcopy=False)]
        return named_values(pd.DataFrame(rows), metric_names(self.study))

    def family(self, trial: int | None = None) -> pd.DataFrame:
        """The family a trial's search found (default the best trial's): one row per probe
        (A-D and the lattice) with its s, accuracy, parameters, op counts, ``on_front`` and
        genotype. Empty for objectives that train nothing (synthetic, table)."""
        import pandas as pd

        chosen = self.best_trial if trial is None else self._trial(trial)
        if chosen is None:
            return pd.DataFrame()
        return pd.DataFrame(list(TrialRecord.from_frozen(chosen).family))

    def _trial(self, number: int) -> FrozenTrial:
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number == number:
                return trial
        raise ConfigError(f"study {self.name!r} has no trial {number}")

    def front(self, complexity: str = "params") -> pd.DataFrame:
        """The Pareto front of every complete trial's family members pooled (accuracy up,
        ``complexity`` down: "params", "cell_params" or "latency_ms"), with a ``trial``
        column; empty when no trial has a family."""
        import pandas as pd

        from reports.study_frames import union_front

        front = union_front(self.study, complexity)
        return front.front.reset_index(drop=True) if front is not None else pd.DataFrame()

    def report(self, out: str | Path = "report") -> Path:
        """Write ``hpo report``'s HTML report of this study into ``out``; its index.html."""
        from reports.html import write_report
        from search_core.errors import require_extra

        require_extra("matplotlib", "plot", "a report")
        return write_report(self.storage, [self.name], out)


class OptunaObjective:
    """The search as an objective for your own Optuna study: each call samples the study
    file's parameters on the trial, runs one search and returns its value(s).

    ```python
    import optuna

    import hpo

    objective = hpo.OptunaObjective("low-dim-synthetic")  # or "digits": a real search
    study = optuna.create_study(study_name="mine", directions=objective.directions,
                                storage="sqlite:///mine.db")
    study.optimize(objective, n_trials=4, catch=(hpo.TrialFailed,))
    hpo.load("mine", "sqlite:///mine.db").trials()  # as hpo show --storage ... lists them
    ```

    The trials store what ``hpo show`` and ``hpo report`` read (the family, history, seed,
    timings); the first call records the study file on the study, as ``hpo run`` does.
    A failed search raises ``TrialFailed``; a pruned one ``optuna.TrialPruned`` (a single
    objective reports the validation accuracy every epoch)."""

    def __init__(self, study: StudyLike = "digits", *, seed: int = 0, artifacts: str = "runs",
                 threads: int = 1) -> None:
        self.spec = read_study(study)
        if self.spec.noise.intensify:
            raise ConfigError("noise.policy: intensify decides which trials are asked; run "
                              "it with hpo.run (or hpo run), not inside your own optimize loop")
        self.seed = seed
        self.artifacts = Path(artifacts)
        self.threads = threads

    @property
    def directions(self) -> list[str]:
        """What ``optuna.create_study(directions=...)`` needs for this objective."""
        return list(self.spec.objective.directions)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        study = trial.study
        reference = self.prepare(study)
        params = suggest_all(trial, self.spec)
        task = TrialTask(
            number=trial.number, params=params, spec=self.spec,
            seed=training_seed(self.spec, self.seed, trial.number), reference=reference,
            checkpoint=self.artifacts / study.study_name / f"trial-{trial.number}.pt",
            threads=self.threads)
        outcome = run_trial(task, self._each_epoch(trial))
        set_trial_attrs(trial, outcome.record.to_user_attrs())
        if outcome.interrupted:
            raise KeyboardInterrupt
        if outcome.state == TrialState.PRUNED:
            raise optuna.TrialPruned()
        if outcome.state == TrialState.FAIL:
            raise TrialFailed(outcome.record.fail_reason or "the search failed")
        values = list(outcome.values or ())
        return values[0] if len(values) == 1 else values

    def prepare(self, study: optuna.Study) -> float:
        """Check ``study`` fits this objective and record the study file on it (once);
        returns the hypervolume's reference complexity."""
        directions = [d.name.lower() for d in study.directions]
        if directions != self.directions:
            raise ConfigError(f"the study's directions are {directions}; this objective's are "
                              f"{self.directions}: create the study with "
                              "directions=objective.directions")
        stored = study.user_attrs.get(FINGERPRINT_ATTR)
        if stored is not None:
            if stored != self.spec.fingerprint():
                raise ConfigError(f"study {study.study_name!r} was made with a different study "
                                  "file; use a new study")
            return float(study.user_attrs[REFERENCE_ATTR])
        check_fits_in_memory(self.spec)
        reference = reference_complexity(self.spec)
        options = RunOptions(study_path=self.spec.source or None, jobs=1, threads=self.threads)
        study.set_user_attr(SAMPLER_ATTR, type(study.sampler).__name__)
        set_study_attributes(study, self.spec, options, reference)
        name_the_values(study, self.spec)
        return reference

    def _each_epoch(self, trial: optuna.Trial) -> Any:
        single = len(self.directions) == 1

        def each_epoch(metrics: Any, history: list[dict[str, float]]) -> None:
            trial.set_user_attr(HISTORY_ATTR, history)
            if single:
                trial.report(metrics.val_acc, metrics.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {metrics.epoch}")

        return each_epoch
