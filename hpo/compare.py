"""``hpo compare``: every sampler gets the same budget on the same objective, R times.

Each (sampler, repeat) is its own study, named ``GROUP.SAMPLER.rREPEAT`` and tagged with
``compare_group``, so a comparison is resumable like ``run`` (the same command tops every
study up) and ``hpo report GROUP`` finds it. ``grid`` gets an even grid over the ranges sized
to the budget; its seed changes the order of the cells.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hpo.announce import shown_path
from hpo.groups import ARM_ATTR, Group, group_attrs, group_maximises, group_studies
from hpo.objectives import MAXIMIZE, MINIMIZE
from hpo.options import RunOptions, checked, read_study
from hpo.samplers import SAMPLERS, check_sampler
from hpo.storage import open_storage, study_names
from hpo.storage_urls import storage_label
from hpo.study_spec import StudySpec, check_study_name, with_run_settings
from search_core.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


ARM_POLICIES = ("intensify", "reevaluate")  # what may follow a sampler's name: tpe+intensify
REEVALUATE_TOP, REEVALUATE_SEEDS = 3, 2  # an arm SAMPLER+reevaluate: top 3 x 2 fresh seeds


@dataclass(frozen=True)
class Arm:
    """One arm of a comparison: a sampler, plain or with a noise policy (``tpe+intensify``:
    intensification; ``tpe+reevaluate``: the top REEVALUATE_TOP configurations re-run with
    REEVALUATE_SEEDS fresh seeds at the end, inside the same budget of evaluations)."""

    sampler: str
    policy: str = ""  # "", "intensify" or "reevaluate"

    @property
    def label(self) -> str:
        return f"{self.sampler}+{self.policy}" if self.policy else self.sampler

    @property
    def reevaluations(self) -> int:
        return REEVALUATE_TOP * REEVALUATE_SEEDS if self.policy == "reevaluate" else 0


def parse_arm(text: str) -> Arm:
    """``tpe``, ``tpe+intensify`` or ``tpe+reevaluate`` (the sampler by its registered name)."""
    name, _, policy = text.partition("+")
    if policy and policy not in ARM_POLICIES:
        raise ConfigError(f"--samplers: {text!r}: after '+' comes one of "
                          f"{', '.join(ARM_POLICIES)} (e.g. tpe+intensify)")
    return Arm(SAMPLERS.canonical(name, "--samplers"), policy)


@dataclass(frozen=True)
class CompareOptions:
    run: RunOptions  # study, budget (trials), backend, storage, ...; sampler is ignored
    samplers: tuple[str, ...]
    repeats: int = 3
    group: str | None = None


def study_name(group: str, arm: str, repeat: int) -> str:
    return f"{group}.{arm.replace('+', '-')}.r{repeat}"


def known_optimum(spec: StudySpec) -> float | None:
    optimum = spec.objective.entry.optimum
    return None if optimum is None else optimum(spec.objective)


def plan(options: CompareOptions) -> tuple[StudySpec, str, list[RunOptions]]:
    """Validate everything first; then the run options of every (repeat, sampler) study."""
    if options.repeats < 1:
        raise ConfigError(f"--repeats: got {options.repeats}; need >= 1")
    if not options.samplers:
        raise ConfigError("--samplers: name at least one sampler, e.g. grid,random,tpe")
    arms = [parse_arm(text) for text in options.samplers]
    if len({arm.label for arm in arms}) < len(arms):
        raise ConfigError(f"--samplers: {','.join(options.samplers)} names a sampler twice")
    run_options = checked(options.run)
    from hpo.runner import validate

    spec = read_study(run_options)  # the file's own errors, before torch is imported
    reference = validate(run_options, spec)  # one reference for the whole group: a
    # measured one (latency) would otherwise differ by noise between its studies
    directions = spec.objective.directions
    if len(directions) > 1 and directions != [MAXIMIZE, MINIMIZE]:
        raise ConfigError(f"hpo compare: objectives {directions}; it compares one value or "
                          "an (accuracy, complexity) pair (by hypervolume)")
    for arm in arms:
        check_arm(arm, spec, options.run.trials)
    group = check_study_name(options.group or f"{spec.name}-compare", "--name")
    optimum = known_optimum(spec)
    runs = []
    for repeat in range(options.repeats):
        for arm in arms:
            seed = options.run.seed + repeat
            attrs = group_attrs(group, repeat, seed, options.run.trials, optimum, arm.label)
            trials = options.run.trials - arm.reevaluations
            runs.append(replace(
                options.run, sampler=arm.sampler, seed=seed, trials=trials,
                name=study_name(group, arm.label, repeat),
                grid_budget=trials if arm.sampler == "grid" else None,
                study_attrs=tuple(attrs.items()), reference=reference,
                noise="intensify" if arm.policy == "intensify" else options.run.noise,
            ))
    return spec, group, runs


def check_arm(arm: Arm, spec: StudySpec, budget: int) -> None:
    """The arm's sampler suits the objective; a noise policy suits the sampler and budget."""
    check_sampler(arm.sampler, spec.objective.directions)
    if arm.policy and len(spec.objective.directions) != 1:
        raise ConfigError(f"--samplers: {arm.label}: noise policies rank configurations by one "
                          f"value; this study has {len(spec.objective.directions)}")
    if arm.policy and SAMPLERS.get(arm.sampler).enumerates_grid:
        raise ConfigError(f"--samplers: {arm.label}: grid runs each cell once; put a noise "
                          "policy on a sampler that asks (random, tpe, ...)")
    if arm.reevaluations and budget <= arm.reevaluations:
        raise ConfigError(f"--trials: {arm.label} spends {arm.reevaluations} of the budget on "
                          f"re-evaluations; need --trials > {arm.reevaluations}")


def compare(options: CompareOptions, progress: Any = None,
            announce: Callable[[str], None] | None = None) -> Group | None:
    """Run (or resume) every study of the group; return the group as stored. ``announce``
    gets a one-line banner before the first study runs."""
    spec, group, runs = plan(options)
    from hpo.runner import run  # imports torch: after the flags are checked

    if announce is not None:
        announce(compare_banner(options, spec, group, runs))
    for run_options in runs:
        arm_spec = with_run_settings(spec, noise=run_options.noise)
        summary = run(run_options, progress() if progress else None, spec=arm_spec)
        arm = str(dict(run_options.study_attrs).get(ARM_ATTR, ""))
        if arm.endswith("+reevaluate") and summary.complete:
            reevaluate_arm(run_options, summary.name)
    return group_studies(open_storage(options.run.storage), group)


def reevaluate_arm(run_options: RunOptions, name: str) -> None:
    """An arm SAMPLER+reevaluate's end: its top configurations with fresh seeds (what is
    missing of them: a resumed comparison adds nothing twice)."""
    from hpo.reevaluate import reevaluate
    from hpo.storage import load_existing_study

    study = load_existing_study(run_options.storage, name)
    reevaluate(study, REEVALUATE_TOP, REEVALUATE_SEEDS, run_options.jobs or 1,
               run_options.threads or 1, quiet=True, storage=run_options.storage)


def compare_banner(options: CompareOptions, spec: StudySpec, group: str,
                   runs: list[RunOptions]) -> str:
    """One line: the group, study file, samplers, budget, storage, and how far it got."""
    storage = open_storage(options.run.storage)
    existing = set(study_names(storage))
    started = sum(run.name in existing for run in runs)
    others = sum(name.startswith(f"{group}.") for name in existing) - started
    if started:
        state = f"resuming: {started} of {len(runs)} studies started"
    else:
        state = f"adding to the group's {others} studies" if others else "new group"
    samplers = ", ".join(dict.fromkeys(str(dict(run.study_attrs).get(ARM_ATTR, run.sampler))
                                       for run in runs))
    return (f"hpo compare: group {group} on {shown_path(spec.source)}; samplers {samplers}; "
            f"{options.run.trials} trials x {options.repeats} repeats each; storage "
            f"{storage_label(options.run.storage)}; {state}")


def summarise_group(found: Group, finals: pd.DataFrame) -> list[dict[str, Any]]:
    """Per sampler: repeats and the median, min and max of ``finals`` (the report's
    ``final_best``: for an (accuracy, complexity) group the final hypervolume of the
    trial-level front), best first."""
    finals = finals.dropna(subset=["best"])
    known = [v for v in found.meta["known_optimum"] if v is not None and v == v]
    rows = []
    for sampler, values in finals.groupby("sampler", sort=False)["best"]:
        row: dict[str, Any] = {"sampler": sampler, "repeats": len(values),
                               "median_best": statistics.median(values),
                               "min_best": min(values), "max_best": max(values)}
        if known:
            row["median_gap_to_optimum"] = float(known[0]) - row["median_best"]
        rows.append(row)
    sign = -1.0 if group_maximises(found) else 1.0
    return sorted(rows, key=lambda r: sign * r["median_best"])
