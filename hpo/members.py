"""A trial's family members, for ``hpo export`` and ``hpo train``: the trial a command
names (a number, or ``best`` by ``hpo.facts.best_trial``), its search result, the member at
a complexity vector, and the most accurate member under a latency budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpo.facts import best_trial, complete_trials
from hpo.records import TrialRecord
from hpo.storage import load_existing_study
from search_core.errors import ConfigError


def pick_trial(study: optuna.Study, which: str) -> optuna.trial.FrozenTrial:
    """The complete trial ``which`` names: its number, or ``best``."""
    complete = complete_trials(study)
    if not complete:
        raise ConfigError(f"study {study.study_name!r} has no complete trial to export")
    if which == "best":
        best = best_trial(study)
        assert best is not None  # there are complete trials
        return best
    try:
        number = int(which)
    except ValueError:
        raise ConfigError(f"--trial: got {which!r}; expected a trial number or 'best'") from None
    for trial in complete:
        if trial.number == number:
            return trial
    raise ConfigError(f"--trial: trial {number} is not a complete trial of "
                      f"{study.study_name!r}; complete: {[t.number for t in complete]}")


def load_trial_result(storage: str | None, name: str, which: str,
                      command: str) -> tuple[optuna.Study, Any, str, Any]:
    """The study, the trial ``which`` names, its checkpoint path and the ``SearchResult``
    (``command`` names the command in the message when the checkpoint is elsewhere)."""
    from search_core.result import SearchResult

    study = load_existing_study(storage, name)
    trial = pick_trial(study, which)
    checkpoint = TrialRecord.from_frozen(trial).checkpoint
    if not checkpoint or not Path(checkpoint).exists():
        raise ConfigError(f"trial {trial.number}: checkpoint {checkpoint!r} not found; run "
                          f"{command} on the machine (or shared folder) that holds "
                          "--artifacts")
    return study, trial, checkpoint, SearchResult.load(checkpoint)


def parse_s(text: str) -> list[float]:
    """``--s``: comma-separated numbers."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--s: got {text!r}; expected comma-separated numbers") from None


def member_at(result: Any, s: list[float]) -> Any:
    """The family member at ``s``: its validation accuracy and parameters, as the family
    table measures every member."""
    from hpo.evaluation import cached_data
    from search_core.probes import Probe

    table = result.family(cached_data(result.config.data), [Probe("export", tuple(s))])
    return table.members[0]


def format_s(s: Any) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in s) + ")"


@dataclass(frozen=True)
class BudgetPick:
    """The member chosen under a latency budget: ``s``, what to record, a sentence to
    print, and a warning when the latency table was measured elsewhere."""

    s: list[float]
    record: dict[str, Any]
    summary: str
    warnings: list[str] = field(default_factory=list)


def pick_under_budget(result: Any, budget_text: str, table_path: str | None,
                      threads: int, batch: int) -> BudgetPick:
    """Search the family over s for the most accurate member measured under the budget
    (``--latency-budget``), ``table_path`` pre-filtering the candidates."""
    from hpo.evaluation import cached_data
    from search_core.latency import LatencyTable
    from search_core.selection import parse_latency, select_under_budget
    from search_core.timing import TimingSettings, fingerprint, fingerprint_mismatch

    budget = parse_latency(budget_text)
    if threads < 1 or batch < 1:
        raise ConfigError("--threads and --batch need >= 1")
    settings = TimingSettings(threads=threads)
    here = fingerprint(settings)
    table = LatencyTable.load(table_path) if table_path else None
    warnings = []
    if table is not None and (differs := fingerprint_mismatch(table.fingerprint, here)):
        warnings.append("warning: --latency-table was measured elsewhere ("
                        + "; ".join(differs)
                        + "); its predictions only pre-filter, latencies are measured here")
    found = select_under_budget(result, cached_data(result.config.data), budget, settings,
                                table, batch=batch)
    seen = (f"{found.architectures} distinct architectures from {found.s_vectors} s vectors, "
            f"{found.measured} measured, {found.under_budget} under budget")
    if found.best is None:
        fastest = found.fastest
        raise ConfigError(
            f"--latency-budget {budget_text}: no family member runs under {budget:g} "
            f"ms here (batch {batch}, {threads} thread(s)); the fastest measured is "
            f"{fastest.latency.median_ms:.3g} ms at s={format_s(fastest.s)} ({seen}); raise "
            "the budget or search with a larger kappa")
    best = found.best
    predicted = (f", predicted {best.predicted_ms:.3g} ms" if best.predicted_ms is not None
                 else "")
    summary = (f"under {budget:g} ms: s={format_s(best.s)}, validation accuracy "
               f"{best.accuracy:.4f}, latency {best.latency.median_ms:.3g} ms measured (batch "
               f"{batch}, {threads} thread(s), +-{best.latency.spread_ms:.2g}){predicted}; "
               f"{seen}")
    record = {
        "latency_budget_ms": budget, "latency_ms": best.latency.median_ms,
        "latency_spread_ms": best.latency.spread_ms, "predicted_latency_ms": best.predicted_ms,
        "accuracy": best.accuracy, "batch": batch, "threads": threads,
        "searched": {"s_vectors": found.s_vectors, "architectures": found.architectures,
                     "measured": found.measured, "under_budget": found.under_budget},
        "fingerprint": here,
    }
    return BudgetPick(list(best.s), record, summary, warnings)
