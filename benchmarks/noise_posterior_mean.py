"""Would a posterior-mean choice beat the best value? (issue 30, not built: it did not)

    python benchmarks/noise_posterior_mean.py runs/noise-compare.log \\
        --table tables/digits-compare-seeds.csv

For every plain ``tpe`` and ``random`` study of a ``noise_compare.py`` storage on the table:
a Gaussian process (Matern 2.5 plus a white-noise term, on the params scaled to [0, 1], kappa
and bandwidth on a log scale) is fitted to its trials, and the configuration with the best
predicted mean is set beside the one with the best value; both are judged by the surrogate's
mean, paired by study. The table study's four params are assumed (digits-compare).
"""

from __future__ import annotations

import argparse
import collections
import warnings

import numpy as np

LOW = np.array([np.log(0.1), 0.05, np.log(0.05), 3])
HIGH = np.array([np.log(10), 0.5, np.log(2), 8])


def scaled(params: list[dict]) -> np.ndarray:
    raw = np.array([[np.log(p["kappa"]), p["t_end"], np.log(p["bandwidth"]), p["num_refs"]]
                    for p in params])
    return (raw - LOW) / (HIGH - LOW)


def main() -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    from hpo.facts import complete_trials
    from hpo.surrogate import surrogate_for

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("storage")
    parser.add_argument("--table", default="tables/digits-compare-seeds.csv")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    surrogate = surrogate_for(args.table)
    storage = JournalStorage(JournalFileBackend(args.storage))
    found = collections.defaultdict(list)
    for summary in storage.get_all_studies():
        arm = summary.study_name.split(".")[1]
        if arm not in ("tpe", "random"):
            continue
        trials = complete_trials(optuna.load_study(study_name=summary.study_name,
                                                   storage=storage))
        params = [t.params for t in trials]
        values = np.array([t.values[0] for t in trials])
        kernel = (ConstantKernel(0.01) * Matern(length_scale=[0.3] * 4, nu=2.5)
                  + WhiteKernel(0.004))
        process = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                           random_state=0).fit(scaled(params), values)
        worth = np.asarray(surrogate.predict(params))
        found[arm].append((worth[np.argmax(values)],
                           worth[np.argmax(process.predict(scaled(params)))]))
    for arm, pairs in found.items():
        best_value, posterior = np.array(pairs).T
        diff = posterior - best_value
        print(f"{arm}: {len(pairs)} studies; worth of the best value {best_value.mean():.4f}, "
              f"of the best posterior mean {posterior.mean():.4f}; paired difference "
              f"{diff.mean():+.4f} ± {diff.std(ddof=1):.4f}, better in {(diff > 0).sum()}")


if __name__ == "__main__":
    main()
