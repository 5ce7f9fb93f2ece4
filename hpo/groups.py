"""Comparison groups, owned by the harness: ``hpo compare`` writes one study per (sampler,
repeat), tagged with the keys below; ``Group`` is what is read back (by ``hpo compare``'s
verdict and by the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from hpo.facts import is_multi_objective, maximises
from hpo.records import SAMPLER_ATTR

if TYPE_CHECKING:
    import pandas as pd

GROUP_ATTR = "compare_group"  # the group a study belongs to
REPEAT_ATTR = "repeat"  # its repeat number (seed = the group's seed + repeat)
SEED_ATTR = "seed"  # its sampler and search seed
BUDGET_ATTR = "budget"  # trials per study
OPTIMUM_ATTR = "known_optimum"  # the objective's known optimum, when it has one
ARM_ATTR = "arm"  # the sampler and its noise policy (tpe+intensify), as compared


@dataclass
class Group:
    name: str
    studies: list[optuna.Study]
    meta: pd.DataFrame  # study, sampler, repeat, budget, seed, known_optimum
    attrs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def samplers(self) -> list[str]:
        return list(dict.fromkeys(self.meta["sampler"]))


def group_attrs(group: str, repeat: int, seed: int, budget: int,
                optimum: float | None, arm: str | None = None) -> dict[str, Any]:
    """The user attributes that make a study a member of ``group`` (``arm``: the label it
    is compared under, when not its sampler's name)."""
    attrs: dict[str, Any] = {GROUP_ATTR: group, REPEAT_ATTR: repeat, SEED_ATTR: seed,
                             BUDGET_ATTR: budget}
    if arm is not None:
        attrs[ARM_ATTR] = arm
    if optimum is not None:
        attrs[OPTIMUM_ATTR] = optimum
    return attrs


def group_names(storage: Any) -> list[str]:
    names = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        name = summary.user_attrs.get(GROUP_ATTR)
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def group_studies(storage: Any, name: str) -> Group | None:
    """The studies tagged with group ``name``, by sampler then repeat; None if none."""
    import pandas as pd

    summaries = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                 if s.user_attrs.get(GROUP_ATTR) == name]
    if not summaries:
        return None
    summaries.sort(key=lambda s: (arm_label(s.user_attrs),
                                  int(s.user_attrs.get(REPEAT_ATTR, 0)), s.study_name))
    studies = [optuna.load_study(study_name=s.study_name, storage=storage) for s in summaries]
    meta = pd.DataFrame([{
        "study": s.study_name,
        "sampler": arm_label(s.user_attrs),
        "repeat": int(s.user_attrs.get(REPEAT_ATTR, i)),
        "budget": s.user_attrs.get(BUDGET_ATTR),
        "seed": s.user_attrs.get(SEED_ATTR),
        "known_optimum": s.user_attrs.get(OPTIMUM_ATTR),
    } for i, s in enumerate(summaries)])
    return Group(name, studies, meta, [dict(s.user_attrs) for s in summaries])


def arm_label(attrs: dict[str, Any]) -> str:
    """What a group member is compared as: its arm (tpe+intensify), else its sampler."""
    return str(attrs.get(ARM_ATTR) or attrs.get(SAMPLER_ATTR, "?"))


def group_maximises(group: Group) -> bool:
    """Whether the group's score is maximised (a hypervolume always is); a group shares one
    objective."""
    return not group.studies or is_multi_objective(group.studies[0]) or \
        maximises(group.studies[0])
