"""The compression stages measured on real data (issue "After the search"), over seeds.

    python benchmarks/compress_experiments.py pruning  --out runs/compress.jsonl
    python benchmarks/compress_experiments.py lottery  --out runs/compress.jsonl
    python benchmarks/compress_experiments.py quantise --out runs/compress.jsonl
    python benchmarks/compress_experiments.py distill  --out runs/compress.jsonl
    python benchmarks/compress_experiments.py summary  --out runs/compress.jsonl

One fixed architecture of the Experiment 1 space (3 cells x 4 nodes; ops max_pool_3x3,
skip_connect, sep_conv_3x3 in turn along the edges), 8 channels, trained from scratch on a
Fashion-MNIST subset (``--train-limit`` / ``--val-limit``; the test split is only reported),
with seeds ``--seeds``:

- pruning: latency-aware gates at each ``--lams`` value against the magnitude baseline at
  the same latency budget (the gates' kept per-edge latency), both fine-tuned alike;
  accuracy and measured latency (batch 1, one thread);
- lottery: iterative magnitude pruning (``--fraction`` per round, 1..``--rounds`` rounds,
  rewinding to ``--rewind`` steps) against random re-initialisation and random masks at the
  same sparsity, and the dense network;
- quantise: 8 and 4 bits, min-max against trained thresholds; size in bytes; the int8
  kernels' accuracy and latency at 8 bits; widths chosen under a budget halfway between
  all-4 and all-8 bits;
- distill: the 8-channel network trained alone and taught by a 16-channel one.

Rows are appended to ``--out`` (JSON lines) as they finish; a rerun skips rows already there.
Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from search_core.threads import configure_process

OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
DISTILL_DEFAULTS = {"alpha": 0.9, "temperature": 4.0}  # compress.distill.DistillSettings'


def build(channels: int, data: Any, seed: int) -> Any:
    import torch

    from search_core.config import SearchSpace
    from search_core.discrete import DiscreteNetwork
    from search_core.genotype import Genotype

    space = SearchSpace(ops=OPS, cells=3, nodes=4, channels=channels)
    edges = len(space.edges)
    genotype = Genotype(tuple(OPS[(i + 2) % 3] for i in range(edges)),
                        tuple(OPS[i % 3] for i in range(edges)), space.edges)
    torch.manual_seed(seed)
    return DiscreteNetwork(genotype, space, data.in_channels, data.num_classes)


def trained(channels: int, data: Any, seed: int, epochs: int) -> Any:
    from compress import FitSettings, run_stage

    model, _ = run_stage("train", build(channels, data, seed), data,
                         FitSettings(epochs=epochs, lr=0.05, seed=seed))
    return model


def row(experiment: str, seed: int, model: Any, data: Any, record: Any = None,
        **fields: Any) -> dict[str, Any]:
    from search_core.train import accuracy

    out = {"experiment": experiment, "seed": seed, **fields,
           "val_acc": accuracy(model, data.val), "test_acc": accuracy(model, data.test)}
    if record is not None:
        out |= {"after": record.after, "before": record.before,
                "extra": {k: v for k, v in record.extra.items()
                          if k not in ("unit_latency_ms", "probabilities")}}
    return out


def pruning(args: argparse.Namespace, data: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    from compress import Context, FitSettings, run_stage
    from compress.gates import EdgeMagnitudeSettings, GateSettings, unit_latencies
    from search_core.timing import TimingSettings

    fit = FitSettings(epochs=args.finetune, lr=0.02)
    timing = TimingSettings(rounds=14, passes=7)
    for seed in args.seeds:
        cache: dict[str, Any] = {}

        def base(seed: int = seed, cache: dict[str, Any] = cache) -> tuple[Any, Any]:
            if "model" not in cache:
                cache["model"] = trained(8, data, seed, args.epochs)
                cache["context"] = Context(unit_latency_ms=unit_latencies(
                    cache["model"], data.val.x[:1], timing))
            return cache["model"], cache["context"]

        for lam in args.lams:
            def job(seed: int = seed, lam: float = lam) -> dict:
                model, context = base()
                gated, record = run_stage("gates", model, data, GateSettings(
                    lam=lam, timing=timing, fit=replace(fit, seed=seed)), context)
                budget = record.extra["kept_latency_ms"]
                baseline, other = run_stage("edge_magnitude", model, data, EdgeMagnitudeSettings(
                    latency_budget_ms=budget, timing=timing, fit=replace(fit, seed=seed)),
                    context)
                return row("pruning", seed, gated, data, record, lam=lam,
                           baseline=row("magnitude", seed, baseline, data, other))

            yield f"pruning seed={seed} lam={lam}", job


def lottery(args: argparse.Namespace, data: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Per seed one run of iterative magnitude pruning; each round's masks then train both
    controls (the same as the stage with ``control: reinit | random`` at that many rounds,
    without pruning again for each)."""
    import copy

    from compress import FitSettings
    from compress.lottery import LotterySettings, iterative_pruning, sparsity, train_control

    for seed in args.seeds:
        def job(seed: int = seed) -> list[dict]:
            settings = LotterySettings(prune_fraction=args.fraction, rounds=args.rounds,
                                       rewind_step=args.rewind,
                                       fit=FitSettings(epochs=args.epochs, lr=0.05, seed=seed))
            ticket = build(8, data, seed)
            run = iterative_pruning(ticket, data, settings)
            rows = [row("lottery", seed, ticket, data, control="ticket", rounds=args.rounds,
                        sparsity=run.rounds[-1]["sparsity"],
                        extra={"dense_accuracy": run.dense_accuracy, "rounds": run.rounds})]
            for count, masks in enumerate(run.masks, start=1):
                for control in ("reinit", "random"):
                    model = copy.deepcopy(ticket)
                    used = train_control(model, data, run, masks, control, settings.fit)
                    rows.append(row("lottery", seed, model, data, control=control,
                                    rounds=count, sparsity=sparsity(used)))
            return rows

        yield f"lottery seed={seed}", job


def quantise(args: argparse.Namespace, data: Any) -> Iterator[tuple[str, Callable[[], dict]]]:
    from compress import FitSettings, run_stage
    from compress.base import size_bytes, weights
    from compress.quantise import QuantiseSettings

    for seed in args.seeds:
        cache: dict[str, Any] = {}

        def base(seed: int = seed, cache: dict[str, Any] = cache) -> Any:
            if "model" not in cache:
                cache["model"] = trained(8, data, seed, args.epochs)
            return cache["model"]

        fit = FitSettings(epochs=args.finetune, lr=0.001, seed=seed)
        for bits in (8, 4):
            for calibration in ("minmax", "trained"):
                def job(bits: int = bits, calibration: str = calibration, seed: int = seed,
                        fit: FitSettings = fit) -> dict:
                    model, record = run_stage("quantise", base(), data, QuantiseSettings(
                        bits=bits, calibration=calibration, fit=fit))
                    return row("quantise", seed, model, data, record, bits=bits,
                               calibration=calibration)

                yield f"quantise seed={seed} {bits} bits {calibration}", job

        def budget_job(seed: int = seed, fit: FitSettings = fit) -> dict:
            model = base()
            names = [n for n, _ in weights(model)]
            budget = (size_bytes(model, dict.fromkeys(names, 8))
                      + size_bytes(model, dict.fromkeys(names, 4))) // 2
            out, record = run_stage("quantise", model, data, QuantiseSettings(
                size_budget_bytes=budget, fit=fit))
            return row("quantise", seed, out, data, record, bits="budget",
                       calibration="trained", budget_bytes=budget)

        yield f"quantise seed={seed} budget", budget_job
        yield f"quantise seed={seed} float", lambda seed=seed: row(
            "quantise", seed, base(), data, bits=32, calibration="none")


def distill(args: argparse.Namespace, data: Any) -> Iterator[tuple[str, Callable[[], dict]]]:
    from compress import Context, FitSettings, run_stage
    from compress.distill import DistillSettings

    fit_settings = FitSettings(epochs=args.epochs, lr=0.05)
    for seed in args.seeds:
        def alone(seed: int = seed) -> dict:
            return row("distill", seed, trained(8, data, seed, args.epochs), data,
                       teacher="none")

        def taught(seed: int = seed) -> dict:
            teacher = trained(16, data, seed + 100, args.epochs)
            student, record = run_stage("distill", build(8, data, seed), data, DistillSettings(
                temperature=args.temperature, alpha=args.alpha,
                fit=replace(fit_settings, seed=seed)), Context(teacher))
            return row("distill", seed, student, data, record, teacher="16 channels",
                       alpha=args.alpha, temperature=args.temperature)

        yield f"distill seed={seed} alone", alone
        default = {"alpha": args.alpha, "temperature": args.temperature} == DISTILL_DEFAULTS
        yield (f"distill seed={seed} taught" if default else
               f"distill seed={seed} taught alpha={args.alpha} T={args.temperature}"), taught


EXPERIMENTS = {"pruning": pruning, "lottery": lottery, "quantise": quantise, "distill": distill}


def summary(rows: list[dict[str, Any]]) -> None:
    """Mean +- sd over seeds per setting, and the paired differences the claims rest on."""
    def ms(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.4f} (1 seed)" if values else "-"
        return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f} (n={len(values)})"

    def group(name: str, key: Callable[[dict], Any]) -> dict[Any, list[dict]]:
        out: dict[Any, list[dict]] = {}
        for r in rows:
            if r["experiment"] == name:
                out.setdefault(key(r), []).append(r)
        return out

    for lam, runs in sorted(group("pruning", lambda r: r["lam"]).items()):
        gaps = [round(r["val_acc"] - r["baseline"]["val_acc"], 4) for r in runs]
        print(f"pruning lam={lam}: gates val {ms([r['val_acc'] for r in runs])}, latency "
              f"{ms([r['after']['latency_ms'] for r in runs])} ms (before "
              f"{ms([r['before']['latency_ms'] for r in runs])}); magnitude at the same budget "
              f"val {ms([r['baseline']['val_acc'] for r in runs])}, latency "
              f"{ms([r['baseline']['after']['latency_ms'] for r in runs])} ms; gates - "
              f"magnitude per seed: {gaps}")
    for (control, count), runs in sorted(group("lottery", lambda r: (r["control"], r["rounds"])
                                               ).items()):
        print(f"lottery {control} rounds={count} sparsity "
              f"{statistics.mean(r['sparsity'] for r in runs):.3f}: val "
              f"{ms([r['val_acc'] for r in runs])}, test {ms([r['test_acc'] for r in runs])}")
        if control == "ticket":
            for index in range(count):
                print(f"  round {index + 1}: val "
                      f"{ms([r['extra']['rounds'][index]['accuracy'] for r in runs])}; dense "
                      f"{ms([r['extra']['dense_accuracy'] for r in runs])}")
    for (bits, cal), runs in sorted(group("quantise", lambda r: (str(r["bits"]),
                                                                  r["calibration"])).items()):
        size = [r["after"]["bytes"] for r in runs if "after" in r]
        print(f"quantise {bits} bits {cal}: val {ms([r['val_acc'] for r in runs])}, test "
              f"{ms([r['test_acc'] for r in runs])}" + (f", bytes {ms(size)}" if size else ""))
        int8 = [r["extra"]["int8"] for r in runs if "int8" in r.get("extra", {})]
        if int8:
            print(f"  int8 kernels: val {ms([i['accuracy'] for i in int8])}, latency "
                  f"{ms([i['latency_ms'] for i in int8])} ms vs float "
                  f"{ms([i['float_latency_ms'] for i in int8])} ms")
    alone = {r["seed"]: r for r in rows if r["experiment"] == "distill"
             and r["teacher"] == "none"}
    for (teacher, alpha, temperature), runs in sorted(group("distill", lambda r: (
            r["teacher"], *(r.get(k, v) for k, v in DISTILL_DEFAULTS.items()))).items()):
        gaps = [round(r["test_acc"] - alone[r["seed"]]["test_acc"], 4) for r in runs
                if r["seed"] in alone]
        print(f"distill teacher={teacher}" + (f" alpha={alpha} T={temperature}"
                                             if teacher != "none" else "")
              + f": val {ms([r['val_acc'] for r in runs])}, test "
              f"{ms([r['test_acc'] for r in runs])}"
              + (f"; teacher val {ms([r['extra']['teacher_accuracy'] for r in runs])}; "
                 f"test - alone per seed {gaps}" if teacher != "none" else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "summary"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")],
                        default=[0, 1, 2])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--val-limit", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6, help="training from scratch")
    parser.add_argument("--finetune", type=int, default=2, help="epochs after a stage")
    parser.add_argument("--lams", type=lambda t: [float(v) for v in t.split(",")],
                        default=[0.0, 0.003, 0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--fraction", type=float, default=0.54)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rewind", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=DISTILL_DEFAULTS["alpha"],
                        help="distill: teacher's weight")
    parser.add_argument("--temperature", type=float, default=DISTILL_DEFAULTS["temperature"],
                        help="distill: T")
    args = parser.parse_args(argv)
    configure_process(threads=1)
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if args.experiment == "summary":
        summary(rows)
        return 0
    from search_core.data import DataConfig, load_data

    data = load_data(DataConfig(name=args.data, val_fraction=0.1, train_limit=args.train_limit,
                                val_limit=args.val_limit))
    done = {r["key"] for r in rows}
    for key, job in EXPERIMENTS[args.experiment](args, data):
        if key in done:
            continue
        results = job()
        for result in results if isinstance(results, list) else [results]:
            result["key"] = key
            with out.open("a") as handle:
                handle.write(json.dumps(result, default=str) + "\n")
            print(key, {k: result.get(k) for k in ("control", "rounds", "lam", "bits")
                        if k in result}, f"val {result['val_acc']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
