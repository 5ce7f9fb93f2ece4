"""Common or per-trial training seeds: which finds better configurations? (on a table)

    python benchmarks/seed_policy.py STUDY.yaml --samplers random,tpe --trials 50 \\
        --repeats 30 --storage runs/seed-policy.journal

STUDY.yaml must use a table objective (``objective: {kind: table, path: ...}``), whose
surrogate gives each configuration a known mean and draws seed noise around it. For each
``training_seed`` policy (common: every trial of a study sees the same seed; per_trial: each
trial its own) it runs ``hpo compare`` with the same samplers, trials, repeats and seeds,
and scores every study's incumbent (the trial with the best *noisy* value, as a user would
pick it) by the surrogate's *mean* at that configuration: what it is worth on fresh seeds.
Prints per policy and sampler the incumbent's mean (mean ± sd over repeats), its noisy value
(the gap is the winner's curse), and a paired Wilcoxon test between the policies per sampler
(repeat r of both policies shares the sampler seed). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml

POLICIES = ("common", "per_trial")


def policy_study(study: Path, policy: str, folder: Path) -> Path:
    raw = yaml.safe_load(study.read_text())
    raw["training_seed"] = policy
    raw["name"] = f"{raw.get('name', study.stem)}-{policy.replace('_', '-')}"
    path = folder / f"{policy}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def incumbents(storage: str, group: str, path: str) -> dict[tuple[str, int], tuple[float, float]]:
    """(sampler, repeat) -> (incumbent's noisy value, the surrogate's mean there)."""
    from hpo.storage import open_storage
    from hpo.surrogate import surrogate_for
    from reports import data

    surrogate = surrogate_for(path)
    found = data.group_studies(open_storage(storage), group)
    out = {}
    for study, (_, meta) in zip(found.studies, found.meta.iterrows()):
        best = study.best_trial
        out[meta["sampler"], int(meta["repeat"])] = (
            best.value, float(surrogate.predict([best.params])[0]))
    return out


def main() -> None:
    import hpo.cli
    from hpo.study import load_study
    from reports.stats import wilcoxon

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--samplers", default="random,tpe")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()
    path = load_study(args.study).objective.path
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for policy in POLICIES:
            study = policy_study(args.study, policy, Path(tmp))
            group = f"seed-policy-{policy.replace('_', '-')}"
            code = hpo.cli.main(["compare", "--study", str(study), "--samplers", args.samplers,
                                 "--trials", str(args.trials), "--repeats", str(args.repeats),
                                 "--name", group, "--storage", args.storage, "--jobs", "1",
                                 "--artifacts", tmp, "-q"])
            if code != 0:
                raise SystemExit(code)
            results[policy] = incumbents(args.storage, group, path)
    print("policy     sampler  incumbent mean (surrogate)   its noisy value")
    for policy in POLICIES:
        for sampler in args.samplers.split(","):
            runs = [results[policy][sampler, r] for r in range(args.repeats)]
            means, noisy = [m for _, m in runs], [v for v, _ in runs]
            print(f"{policy:10s} {sampler:8s} {statistics.fmean(means):.4f} ± "
                  f"{statistics.stdev(means):.4f}           {statistics.fmean(noisy):.4f}")
    for sampler in args.samplers.split(","):
        common = [results["common"][sampler, r][1] for r in range(args.repeats)]
        per_trial = [results["per_trial"][sampler, r][1] for r in range(args.repeats)]
        _, p = wilcoxon(per_trial, common)
        diff = statistics.median(a - b for a, b in zip(per_trial, common))
        print(f"{sampler}: per_trial - common, median paired difference {diff:+.4f}, "
              f"Wilcoxon p = {p:.3g} ({args.repeats} repeats)")


if __name__ == "__main__":
    main()
