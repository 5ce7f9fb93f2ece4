"""Does intensification pick better configurations at equal budget? (issue 30)

    python benchmarks/noise_compare.py --study digits-compare-seeds-table \\
        --budgets 20,50,100 --repeats 30 --storage runs/noise-compare.log
    python benchmarks/noise_compare.py --study studies/digits-compare.yaml --budgets 20 \\
        --repeats 5 --arms tpe,tpe+intensify --jobs 2 --fresh-seeds 3 \\
        --storage runs/noise-real.log

Per budget, one ``hpo compare`` group (the same command resumes it): each arm (a sampler,
plain or ``+intensify`` / ``+reevaluate``) runs ``--repeats`` studies of ``--trials``
evaluations (a ``+reevaluate`` arm spends 6 of them re-running its top 3 configurations on 2
fresh seeds). Every study is judged by what its chosen configuration is worth: on a table,
the surrogate's mean there (``hpo.facts.best_trial``: the incumbent by mean for an
intensified study, the best fresh-seed mean for a re-evaluated one, else the best value);
on a real objective (``--fresh-seeds K``) the mean of K new evaluations of it, with seeds
no trial used (5000 + k; the same seeds for every study, so the judging is paired too).

The focused questions, paired by repeat (same sampler seed, same training seeds): each
``SAMPLER+intensify`` against plain ``SAMPLER``, and ``tpe+reevaluate`` against ``tpe`` and
against ``tpe+intensify``; Wilcoxon signed-rank, Holm over every focused pair of every
budget, Vargha-Delaney A12 and the mean paired difference with its sd. Prints a Markdown
table and writes every study's worth to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FOCUSED = (("tpe+intensify", "tpe"), ("random+intensify", "random"),
           ("tpe+reevaluate", "tpe"), ("tpe+intensify", "tpe+reevaluate"))
FRESH_SEED_BASE = 5000


def run_group(study: str, arms: list[str], budget: int, repeats: int, storage: str,
              jobs: int, seed: int = 0) -> Any:
    from hpo.compare import CompareOptions, compare
    from hpo.options import RunOptions

    run = RunOptions(study_path=study, trials=budget, storage=storage, jobs=jobs, threads=1,
                     noise="none", seed=seed,
                     artifacts=str(Path(storage).parent / "noise-artifacts"))
    options = CompareOptions(run=run, samplers=tuple(arms), repeats=repeats,
                             group=f"noise-b{budget}")
    return compare(options)


def study_hours(study: Any) -> float:
    """The evaluation time the study's complete trials and its fresh-seed re-evaluations
    record, in hours (a table's simulated clock: what the real objective would have taken)."""
    from hpo.facts import complete_trials
    from hpo.records import TrialRecord
    from hpo.reevaluate import all_stored

    seconds = sum(TrialRecord.from_frozen(t).seconds or 0.0 for t in complete_trials(study))
    seconds += sum(float(run.get("seconds") or 0.0)
                   for runs in all_stored(study).values() for run in runs.values())
    return seconds / 3600


def table_worth(group: Any) -> pd.DataFrame:
    from reports.group_frames import incumbent_worth

    worth = incumbent_worth(group)
    if worth is None:
        raise SystemExit("this objective has no mean to judge by; pass --fresh-seeds K")
    worth["hours"] = [study_hours(study) for study in group.studies]
    return worth


def fresh_worth(group: Any, seeds: int, jobs: int) -> pd.DataFrame:
    """Each study's chosen configuration evaluated on ``seeds`` fresh seeds (the mean)."""
    from hpo.facts import best_trial, reported_value
    from hpo.pool import run_in_processes
    from hpo.records import REFERENCE_ATTR, STUDY_FILE_ATTR
    from hpo.reevaluate import Job, evaluate_job

    jobs_list, rows = [], []
    for study, (_, meta) in zip(group.studies, group.meta.iterrows()):
        chosen = best_trial(study)
        attrs = study.user_attrs
        rows.append({"sampler": meta["sampler"], "repeat": meta["repeat"],
                     "study": meta["study"], "noisy": reported_value(study),
                     "chosen": chosen.number, "hours": study_hours(study),
                     "params": dict(chosen.params)})
        jobs_list += [Job(len(rows) - 1, dict(chosen.params), FRESH_SEED_BASE + k,
                          attrs[STUDY_FILE_ATTR], float(attrs.get(REFERENCE_ATTR, 0.0)), 1)
                      for k in range(seeds)]
    values: dict[int, list[float]] = {}
    for job, record in run_in_processes(evaluate_job, jobs_list, jobs, "fresh seeds"):
        values.setdefault(job.trial, []).append(record["value"])
    for index, row in enumerate(rows):
        row["best"] = statistics.fmean(values[index])
        row["fresh"] = values[index]
    return pd.DataFrame(rows)


def focused_pairs(worth_by_budget: dict[int, pd.DataFrame]) -> list[dict[str, Any]]:
    from reports.stats import a12, holm, wilcoxon

    rows = []
    for budget, worth in worth_by_budget.items():
        wide = worth.pivot_table(index="repeat", columns="sampler", values="best")
        for better, base in FOCUSED:
            if better not in wide or base not in wide:
                continue
            pair = wide[[better, base]].dropna()
            diff = (pair[better] - pair[base]).to_numpy()
            _, p = wilcoxon(pair[better].to_numpy(), pair[base].to_numpy())
            rows.append({"budget": budget, "arm": better, "against": base, "repeats": len(diff),
                         "mean_diff": float(diff.mean()), "sd_diff": float(diff.std(ddof=1)),
                         "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
                         "a12": a12(pair[better].to_numpy(), pair[base].to_numpy()), "p": p})
    for row, q in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = q
    return rows


def arm_lines(worth: pd.DataFrame) -> list[str]:
    lines = []
    for arm, frame in worth.groupby("sampler", sort=False):
        chosen = frame["noisy"] - frame["best"]
        lines.append(f"| {arm} | {frame['best'].mean():.4f} ± {frame['best'].std(ddof=1):.4f} "
                     f"| {frame['noisy'].mean():.4f} | {chosen.mean():+.4f} "
                     f"| {frame['hours'].mean():.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--budgets", default="20,50,100")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--arms", default="tpe,tpe+intensify,random,random+intensify,"
                                          "tpe+reevaluate")
    parser.add_argument("--storage", default="runs/noise-compare.log")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0,
                        help="repeat r runs with seed SEED + r (another SEED: other repeats)")
    parser.add_argument("--fresh-seeds", type=int, default=0,
                        help="judge by K fresh evaluations (a real objective)")
    parser.add_argument("--out", default=None, help="JSON of every study's worth")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    worth_by_budget = {}
    for budget in (int(b) for b in args.budgets.split(",")):
        group = run_group(args.study, arms, budget, args.repeats, args.storage, args.jobs,
                          args.seed)
        worth = (fresh_worth(group, args.fresh_seeds, args.jobs) if args.fresh_seeds
                 else table_worth(group))
        worth_by_budget[budget] = worth
        print(f"\nbudget {budget} evaluations, {args.repeats} repeats: worth of the chosen "
              "configuration (mean ± sd over repeats), the value the study reports for it "
              "(a mean over seeds where it has several), the excess (winner's curse), and the "
              "evaluation hours each study spent (a table's simulated clock)")
        print("| arm | worth | reported value | excess | hours |\n|---|---|---|---|---|")
        print("\n".join(arm_lines(worth)))
    pairs = focused_pairs(worth_by_budget)
    print("\n| budget | arm | against | mean paired diff ± sd | wins/ties | A12 | p | p_holm |")
    print("|---|---|---|---|---|---|---|---|")
    for r in pairs:
        print(f"| {r['budget']} | {r['arm']} | {r['against']} | {r['mean_diff']:+.4f} ± "
              f"{r['sd_diff']:.4f} | {r['wins']}/{r['ties']} of {r['repeats']} | "
              f"{r['a12']:.2f} | {r['p']:.3g} | {r['p_holm']:.3g} |")
    if args.out:
        payload = {"study": args.study, "repeats": args.repeats, "arms": arms,
                   "pairs": pairs, "worth": {b: json.loads(w.to_json(orient="records"))
                                             for b, w in worth_by_budget.items()}}
        Path(args.out).write_text(json.dumps(payload, indent=1, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
