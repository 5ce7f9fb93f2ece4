"""What ``hpo run`` says before and after its trials: a one-line banner and a short summary
(best value by name, its trial and parameters, why the run stopped, what to run next).
torch-free plain text; the numbers come from the study as stored."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from hpo.facts import StateCounts, finished
from hpo.shipped import is_shipped

MAX_PARETO_SHOWN = 8  # Pareto trials listed by number in the summary


def number(value: Any) -> str:
    """A value as a person reads it: 4 significant digits, integers as they are."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"


def shown_path(path: str | None) -> str:
    """A file path as output may show it: relative to the working folder when under it,
    else its name alone (no user's temporary or home folders in a shared report); a study
    file shipped with nas-hpo as "the shipped NAME.yaml"."""
    if not path:
        return ""
    candidate = Path(path)
    if is_shipped(candidate):
        return f"the shipped {candidate.name}"
    if not candidate.is_absolute():
        return str(candidate)
    try:
        return str(candidate.relative_to(Path.cwd()))
    except ValueError:
        return candidate.name


def params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={number(value)}" for key, value in params.items())


def banner(name: str, study_file: str, sampler: str, seed: int, trials: int, jobs: int,
           storage: str, counts: StateCounts) -> str:
    """One line: the study, its file, sampler, budget, workers, storage, new or resumed."""
    done = finished(counts)
    failed = counts[TrialState.FAIL]
    if done or failed:
        state = f"resuming: {min(done, trials)} of {trials} done"
        state += f", {failed} failed before" if failed else ""
    else:
        state = "new study"
    at_once = f", {jobs} at once" if jobs > 1 else ""
    return (f"hpo run: study {name} from {shown_path(study_file)}; sampler {sampler} "
            f"(seed {seed}); {trials} trials{at_once}; storage {storage}; {state}")


def stop_reason_words(reason: str, trials: int) -> str:
    """``StopRule.final_reason``'s code in words."""
    if reason == "trials":
        return f"{trials} trials finished"
    if reason == "grid":
        return "every grid cell has run"
    if reason == "timeout":
        return "--timeout reached before the budget"
    if reason == "stopped early":
        return "stopped before the budget (no trial could finish)"
    return reason


@dataclass(frozen=True)
class BestTrial:
    """The best trial of a single-objective study, or the Pareto trials of a multi-objective
    one (``number`` None)."""

    metric_names: tuple[str, ...]
    number: int | None = None
    values: tuple[float, ...] = ()
    params: Mapping[str, Any] | None = None
    pareto: tuple[int, ...] = ()
    seeds: int = 1  # intensified: the incumbent's mean over this many seeds (values[0])
    sd: float = float("nan")
    trials: tuple[int, ...] = ()  # intensified: the incumbent configuration's trials
    wasted: int = 0  # intensified: re-evaluations that gave the same values as the first


def best_lines(best: BestTrial) -> list[str]:
    if best.number is not None:
        name = best.metric_names[0] if best.metric_names else "value"
        if best.seeds > 1 or best.trials:
            return [f"incumbent {name} {number(best.values[0])} ± {number(best.sd)}, mean over "
                    f"{best.seeds} seed{'s' if best.seeds > 1 else ''} (configuration "
                    f"{best.number}: trials {', '.join(map(str, best.trials[:12]))})",
                    f"  {params_text(best.params or {})}", *wasted_lines(best.wasted)]
        return [f"best {name} {number(best.values[0])} (trial {best.number})",
                f"  {params_text(best.params or {})}"]
    shown = ", ".join(map(str, best.pareto[:MAX_PARETO_SHOWN]))
    more = f" and {len(best.pareto) - MAX_PARETO_SHOWN} more" if (
        len(best.pareto) > MAX_PARETO_SHOWN) else ""
    names = " vs ".join(best.metric_names)
    return [f"Pareto front ({names}): {len(best.pareto)} trials: {shown}{more}"]


def wasted_lines(wasted: int) -> list[str]:
    if not wasted:
        return []
    return [f"note: every configuration run on several seeds gave the same value on each; "
            f"the objective looks deterministic and {wasted} re-evaluation"
            f"{'s' if wasted > 1 else ''} bought nothing: run it with --noise none"]


def next_commands(name: str, storage_flag: str, storage: str) -> list[str]:
    """What to run next on the study (``storage_flag``: `` --storage S`` unless default)."""
    return [
        "next:",
        f"  every trial:  hpo show {name}{storage_flag}",
        f"  HTML report:  hpo report {name}{storage_flag} --out report/",
        f"  dashboard:    optuna-dashboard {storage}",
    ]
