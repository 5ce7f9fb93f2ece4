"""How large the seed noise is among good configurations, in the surrogate and in the table
(the numbers behind "What this says" in docs/benchmarks.md, issue 30).

    python benchmarks/noise_levels.py --table tables/digits-compare-seeds.csv

Surrogate: means at 20,000 random configurations (quantiles, best); among the best 40 of 4,000
random configurations, 20 pairs each evaluated on 60 fresh seeds: one configuration's sd, and
the sd of the paired and unpaired differences. Table: the same sds over its own seeds for all
configurations, the best half and the best tenth (by the 5-seed mean).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd


def surrogate_levels(path: str) -> None:
    from hpo.surrogate import load_table, surrogate_for
    from hpo.surrogate_checks import random_rows

    surrogate = surrogate_for(path)
    params = load_table(Path(path)).params
    means = surrogate.predict(random_rows(params, 20_000, np.random.default_rng(0)))
    print("surrogate means over 20,000 random points: quantiles 0.5/0.9/0.99 "
          f"{np.quantile(means, [0.5, 0.9, 0.99]).round(4).tolist()}, best {means.max():.4f}")
    rows = random_rows(params, 4_000, np.random.default_rng(1))
    ranked = np.argsort(-surrogate.predict(rows))[:40]
    one, paired, unpaired = [], [], []
    for a, b in zip(ranked[0::2], ranked[1::2]):
        va = np.array([surrogate.value(rows[a], s) for s in range(60)])
        vb = np.array([surrogate.value(rows[b], s) for s in range(60)])
        one.append(va.std(ddof=1))
        paired.append((va - vb).std(ddof=1))
        unpaired.append(np.sqrt(va.var(ddof=1) + vb.var(ddof=1)))
    print(f"surrogate, best 40 of 4,000: one configuration sd {np.mean(one):.4f}, paired "
          f"difference sd {np.mean(paired):.4f}, unpaired {np.mean(unpaired):.4f}")


def table_levels(path: str) -> None:
    frame = pd.read_csv(path, comment="#")
    wide = frame.pivot_table(index="config", columns="seed", values="value").dropna()
    means = wide.mean(axis=1)
    for share in (1.0, 0.5, 0.1):
        top = wide[means >= means.quantile(1 - share)]
        pairs = list(itertools.combinations(top.index, 2))
        paired = np.mean([(top.loc[a] - top.loc[b]).std(ddof=1) for a, b in pairs])
        unpaired = np.mean([np.sqrt(top.loc[a].var(ddof=1) + top.loc[b].var(ddof=1))
                            for a, b in pairs])
        print(f"table, best {share:.0%} ({len(top)} configurations): one configuration sd "
              f"{top.std(axis=1, ddof=1).mean():.4f}, paired difference sd {paired:.4f}, "
              f"unpaired {unpaired:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default="tables/digits-compare-seeds.csv")
    args = parser.parse_args()
    surrogate_levels(args.table)
    table_levels(args.table)


if __name__ == "__main__":
    main()
