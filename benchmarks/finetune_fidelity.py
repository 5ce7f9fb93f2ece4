"""What ``probes.accuracy: finetune`` buys: proxy and fine-tuned family accuracy against
trained accuracy, for a trial whose family ``hpo train`` has trained.

    hpo train NAME --probes all --epochs 8 --seeds 2          # first: the trained accuracies
    python benchmarks/finetune_fidelity.py NAME --storage runs/hpo.journal --epochs 1,3

For each distinct genotype of the trial's family: the proxy (recorded with the trial), its
validation accuracy after E epochs of fine-tuning from the shared weights (for each E of
``--epochs``; the objective's recipe, seeded like the search) and its trained test accuracy
(mean over the seeds ``hpo train`` ran). Prints Kendall's tau and Spearman's rho of each
against trained accuracy (95 % bootstrap intervals) and the seconds fine-tuning adds per
distinct genotype. Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

from search_core.threads import configure_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--trial", type=int, default=0)
    parser.add_argument("--epochs", default="1", help="fine-tuning epochs, comma-separated")
    args = parser.parse_args()
    configure_process(threads=1)
    import optuna

    from hpo.records import TRAINED_ATTR, TrialRecord
    from hpo.storage import open_storage
    from reports.data import rank_correlation
    from search_core.data import load_data
    from search_core.genotype import Genotype
    from search_core.result import SearchResult
    from search_core.train import TrainRecipe, fine_tuned_accuracy

    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
    record = TrialRecord.from_frozen(study.trials[args.trial])
    trained = study.user_attrs.get(TRAINED_ATTR.format(number=args.trial))
    if not trained:
        raise SystemExit(f"trial {args.trial} of {args.study} has no trained results; run "
                         "hpo train first")
    members = trained["members"]
    result = SearchResult.load(record.checkpoint)
    data = load_data(result.config.data)
    test = [m["test_acc_mean"] for m in members]
    columns = {"proxy": [m["proxy_accuracy"] for m in members]}
    for epochs in (int(e) for e in args.epochs.split(",")):
        recipe = TrainRecipe(epochs=epochs, init="inherit", seed=result.config.seed)
        started = time.perf_counter()
        columns[f"finetune {epochs}"] = [
            fine_tuned_accuracy(Genotype.from_json(m["genotype"]), result.config.space, data,
                                result.supernet, recipe)
            for m in members
        ]
        seconds = (time.perf_counter() - started) / len(members)
        print(f"finetune {epochs}: {seconds:.0f} s per distinct genotype", flush=True)
    print(f"{len(members)} distinct genotypes; trained test accuracy "
          f"{min(test):.4f}-{max(test):.4f}, median sd over seeds "
          f"{statistics.median(m['test_acc_sd'] for m in members):.4f}")
    for name, values in columns.items():
        tau, (a, b) = rank_correlation(values, test, "kendall")
        rho, (c, d) = rank_correlation(values, test, "spearman")
        print(f"{name:11s} vs trained: Kendall tau {tau:+.2f} [{a:+.2f}, {b:+.2f}], "
              f"Spearman rho {rho:+.2f} [{c:+.2f}, {d:+.2f}]; range "
              f"{min(values):.3f}-{max(values):.3f}")


if __name__ == "__main__":
    main()
