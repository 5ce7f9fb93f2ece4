"""What ``probes.accuracy: finetune`` buys: proxy and fine-tuned family accuracy against
trained accuracy, for a trial whose family ``hpo train`` has trained.

    hpo train NAME --probes A,B,C --epochs 8 --seeds 2       # the trained accuracies
    python benchmarks/finetune_fidelity.py NAME --storage runs/hpo.journal --probes A,B,C \
        --epochs 1,3 --out runs/finetune.json

For each distinct genotype of the trial's family: the proxy (recorded with the trial), its
validation accuracy after E epochs of fine-tuning from the shared weights (for each E of
``--epochs``; the objective's recipe, seeded like the search) and its trained test accuracy
(mean over the seeds ``hpo train`` ran). Prints Kendall's tau and Spearman's rho of each
against trained accuracy (95 % bootstrap intervals) and the seconds fine-tuning adds per
distinct genotype. Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from search_core.threads import configure_process


def fine_tuned(study_name: str, storage: str, trial: int, probes: list[str],
               epochs: list[int], out: Path) -> dict[str, dict[str, float]]:
    """Fine-tuned validation accuracy per distinct genotype of ``probes`` and per E of
    ``epochs``, kept in ``out`` (JSON) as each finishes; a rerun skips what is there."""
    import optuna

    from hpo.records import TrialRecord
    from hpo.storage import open_storage
    from search_core.data import load_data
    from search_core.genotype import Genotype
    from search_core.result import SearchResult
    from search_core.train import TrainRecipe, fine_tuned_accuracy

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    record = TrialRecord.from_frozen(study.trials[trial])
    by_probe = {row["probe"]: row["genotype"] for row in record.family}
    genotypes = list(dict.fromkeys(by_probe[p] for p in probes))
    done: dict[str, dict[str, float]] = json.loads(out.read_text()) if out.exists() else {}
    result = data = None
    for e in epochs:
        for genotype in genotypes:
            key = f"{e}|{genotype}"
            if key in done:
                continue
            if result is None:
                result = SearchResult.load(record.checkpoint)
                data = load_data(result.config.data)
            recipe = TrainRecipe(epochs=e, init="inherit", seed=result.config.seed)
            started = time.perf_counter()
            acc = fine_tuned_accuracy(Genotype.from_json(genotype), result.config.space, data,
                                      result.supernet, recipe)
            done[key] = {"accuracy": acc, "seconds": time.perf_counter() - started}
            out.write_text(json.dumps(done))
            print(f"finetune {e}: {acc:.4f} in {done[key]['seconds']:.0f} s", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--trial", type=int, default=0)
    parser.add_argument("--probes", required=True, help="the probes hpo train trained: A,B,...")
    parser.add_argument("--epochs", default="1", help="fine-tuning epochs, comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="JSON of fine-tuned results")
    args = parser.parse_args()
    configure_process(threads=1)
    import optuna

    from hpo.records import TRAINED_ATTR
    from hpo.storage import open_storage
    from reports.fidelity import rank_correlation

    epochs = [int(e) for e in args.epochs.split(",")]
    done = fine_tuned(args.study, args.storage, args.trial, args.probes.split(","), epochs,
                      args.out)
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage))
    trained = study.user_attrs.get(TRAINED_ATTR.format(number=args.trial))
    if not trained:
        raise SystemExit(f"trial {args.trial} of {args.study} has no trained results yet; "
                         "run hpo train, then this again")
    members = trained["members"]
    test = [m["test_acc_mean"] for m in members]
    columns = {"proxy": [m["proxy_accuracy"] for m in members]}
    for e in epochs:
        columns[f"finetune {e}"] = [done[f"{e}|{m['genotype']}"]["accuracy"] for m in members]
        seconds = statistics.median(done[f"{e}|{m['genotype']}"]["seconds"] for m in members)
        print(f"finetune {e}: median {seconds:.0f} s per distinct genotype")
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
