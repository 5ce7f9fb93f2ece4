"""Common or per-trial training seeds: which picks better configurations? (from a table)

    python benchmarks/seed_policy.py tables/digits-compare.csv --budgets 10,20,50

A table of ``hpo table build`` with two or more seeds per configuration holds, for every
configuration, what each seed gave. Random search with a budget of N trials is then
emulated without any model: draw N of the table's configurations; under ``common`` every
trial is read at one seed s (the study's training seed), under ``per_trial`` each trial at
its own seed; the incumbent (the best value read, as a user picks it) is then scored at a
seed that did not choose it (held out). Both policies see the same N configurations in each
draw (paired). Each seed's mean over all configurations is subtracted first: a seed that is
better for every configuration moves every value alike and changes no choice.

Prints the seeds' means and spreads, how much of a seed's deviation from the configuration
mean the parameters predict (5-fold held-out R^2 of a random forest: 0 means independent
noise per configuration, near 1 a smooth distortion that a search tunes to), and per budget
the held-out worth of both policies' incumbents (mean and sd over draws), the paired
difference with its 95 % bootstrap interval, and the winner's curse (chosen value minus
held-out value). Why not a surrogate: the table objective draws seed noise independently
per configuration, which makes the two policies the same for any search that never
revisits a configuration. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hpo.surrogate import encode, load_table

POLICIES = ("common", "per_trial")


def seed_matrix(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(values: configurations x seeds, only configurations with every seed; their encoded
    parameters)."""
    table = load_table(path)
    wide = table.frame.pivot_table(index="config", columns="seed", values="value").dropna()
    first = table.frame.drop_duplicates("config").set_index("config").loc[wide.index]
    features = encode(first.reset_index().to_dict("records"), table.params)
    return wide, features


def deviation_r2(wide: pd.DataFrame, features: np.ndarray, seed: int = 0) -> float:
    """Held-out R^2 of the first seed's deviation from the configuration mean, predicted
    from the parameters (5-fold random forest)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import cross_val_predict

    deviation = (wide.iloc[:, 0] - wide.mean(axis=1)).to_numpy()
    forest = RandomForestRegressor(200, min_samples_leaf=3, random_state=seed)
    predicted = cross_val_predict(forest, features, deviation, cv=5)
    return float(1 - np.mean((predicted - deviation) ** 2) / np.var(deviation))


def emulate(values: np.ndarray, budget: int, draws: int, seed: int) -> dict[str, np.ndarray]:
    """Per policy and draw: (held-out value of the incumbent, its chosen value, the seed it
    was read at)."""
    rng = np.random.default_rng(seed)
    configs, seeds = values.shape
    out = {p: np.empty((draws, 3)) for p in POLICIES}
    for d in range(draws):
        chosen = rng.choice(configs, budget, replace=False)
        common = np.full(budget, rng.integers(seeds))
        for policy, read in (("common", common), ("per_trial", rng.integers(seeds, size=budget))):
            best = int(np.argmax(values[chosen, read]))
            held_out = [s for s in range(seeds) if s != read[best]]
            out[policy][d] = (values[chosen[best], held_out].mean(),
                              values[chosen[best], read[best]], read[best])
    return out


def bootstrap_interval(x: np.ndarray, seed: int = 0, resamples: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [x[rng.integers(len(x), size=len(x))].mean() for _ in range(resamples)]
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--budgets", default="10,20,50")
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wide, features = seed_matrix(args.table)
    print(f"{len(wide)} configurations with seeds {list(wide.columns)}")
    for s in wide.columns:
        print(f"seed {s}: mean {wide[s].mean():.4f}, sd over configurations {wide[s].std():.4f}")
    shift = wide.iloc[:, 1] - wide.iloc[:, 0]
    print(f"seed {wide.columns[1]} - seed {wide.columns[0]}, paired over configurations: "
          f"{shift.mean():+.4f} +- {shift.std():.4f}")
    print(f"a seed's deviation from the configuration mean, predicted from the parameters: "
          f"held-out R^2 {deviation_r2(wide, features, args.seed):.3f}")
    values = (wide - wide.mean(axis=0)).to_numpy()
    for budget in (int(b) for b in args.budgets.split(",")):
        runs = emulate(values, budget, args.draws, args.seed)
        for policy in POLICIES:
            held, chosen = runs[policy][:, 0], runs[policy][:, 1]
            print(f"budget {budget:3d} {policy:9s}: incumbent's held-out worth {held.mean():+.4f}"
                  f" (sd {held.std():.4f} over {args.draws} draws); winner's curse "
                  f"{(chosen - held).mean():.4f}")
        for s, name in enumerate(wide.columns):
            at = runs["common"][:, 2] == s
            print(f"  common at seed {name}: held-out worth {runs['common'][at, 0].mean():+.4f}"
                  f" (sd {runs['common'][at, 0].std():.4f})")
        diff = runs["per_trial"][:, 0] - runs["common"][:, 0]
        lo, hi = bootstrap_interval(diff, args.seed)
        print(f"budget {budget:3d} per_trial - common: {diff.mean():+.4f} "
              f"(95 % bootstrap interval {lo:+.4f} .. {hi:+.4f}); per_trial better in "
              f"{(diff > 0).mean():.0%} of draws, worse in {(diff < 0).mean():.0%}")


if __name__ == "__main__":
    main()
