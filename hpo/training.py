"""Training a trial's family members on their own, beside their proxy accuracy (``hpo
train``).

Picks members of a complete trial's family (``--s``, ``--probes``, or ``--latency-budget``),
trains each distinct genotype ``--seeds`` times with ``search_core.train.TrainRecipe``, and
reports test accuracy (mean ± sd over seeds), parameters and the proxy accuracy. Every
(genotype, seed) training checkpoints after each epoch under ``--out``: a rerun of the same
command continues where it stopped. The results are recorded in the study (user attribute
``trained_trial_N``), where ``hpo report`` reads them.

``--device`` (default auto: CUDA when torch sees a GPU) and ``--precision`` (default fp32)
say where and how the networks are trained; a device this machine lacks is one line on
stderr before anything is written. Latencies are measured on the CPU whatever the device.
"""

from __future__ import annotations

import functools
import hashlib
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpo.pool import orphan_guard
from hpo.records import TrialRecord
from search_core.errors import ConfigError


@dataclass(frozen=True)
class Member:
    """A family member to train: its genotype, where it came from, its proxy accuracy."""

    genotype_json: str
    labels: tuple[str, ...]  # probe names, or the --s vector
    proxy_accuracy: float | None
    params: int | None = None


@dataclass(frozen=True)
class Job:
    """One training: a genotype and a seed, with everything a worker process needs."""

    member: Member
    seed: int
    recipe: dict[str, Any]
    data: dict[str, Any]
    space: dict[str, Any]
    checkpoint: str
    search_checkpoint: str | None  # for --from inherit


def plain(obj: Any) -> dict[str, Any]:
    from search_core.configtools import to_plain

    return to_plain(obj)


def genotype_key(genotype_json: str) -> str:
    return hashlib.sha256(genotype_json.encode()).hexdigest()[:12]


def data_config(config: Any, limit: str | None) -> Any:
    """The search's data settings (same splits, same test set), ``--train-limit`` applied."""
    if limit is None:
        return config
    if limit == "all":
        return replace(config, train_limit=None)
    try:
        return replace(config, train_limit=int(limit))
    except ValueError:
        raise ConfigError(f"--train-limit: got {limit!r}; expected a number or 'all'") from None


def pick_members(trial: Any, result: Any, probes: str | None,
                 s: list[float] | None) -> list[Member]:
    """The distinct genotypes to train, each with the probes (``probes``: 'all' or names)
    or the complexity vector ``s`` that chose it."""
    from search_core.result import as_simplex_point

    family = list(TrialRecord.from_frozen(trial).family)
    if probes is not None:
        return probe_members(trial.number, family, probes)
    assert s is not None
    s_vec = as_simplex_point(s, len(result.ops))
    genotype = result.genotype(s_vec).to_json()
    proxy = next((r["accuracy"] for r in family if r["genotype"] == genotype), None)
    return [Member(genotype, (f"s={','.join(f'{v:.3g}' for v in s_vec.tolist())}",), proxy)]


def probe_members(number: int, family: list[dict[str, Any]], probes: str) -> list[Member]:
    """The distinct genotypes of the named probes of trial ``number``'s family."""
    names = [r["probe"] for r in family]
    wanted = names if probes == "all" else [p for p in probes.split(",") if p]
    unknown = [p for p in wanted if p not in names]
    if unknown or not wanted:
        raise ConfigError(f"--probes: {unknown or probes!r} not in trial "
                          f"{number}'s family; probes: {', '.join(names[:12])}")
    by_genotype: dict[str, list[dict[str, Any]]] = {}
    for row in (r for r in family if r["probe"] in wanted):
        by_genotype.setdefault(row["genotype"], []).append(row)
    return [Member(g, tuple(r["probe"] for r in group), group[0]["accuracy"],
                   group[0]["params"]) for g, group in by_genotype.items()]


def train_job(job: Job) -> dict[str, Any]:
    """One (genotype, seed) training in this process; its record."""
    return _train(job, on_epoch=None)


def _train(job: Job, on_epoch: Any) -> dict[str, Any]:
    from hpo.evaluation import cached_data
    from search_core.config import SearchSpace
    from search_core.configtools import from_mapping
    from search_core.data import DataConfig
    from search_core.genotype import Genotype
    from search_core.train import TrainRecipe, train_network

    data = cached_data(DataConfig.from_dict(job.data))
    space = from_mapping(SearchSpace, job.space, "space")
    supernet = _search_supernet(job.search_checkpoint) if job.search_checkpoint else None
    trained = train_network(Genotype.from_json(job.member.genotype_json), space, data,
                            TrainRecipe.from_dict(job.recipe), supernet=supernet,
                            checkpoint=Path(job.checkpoint), on_epoch=on_epoch)
    record = trained.to_dict()
    record.pop("recipe")
    return record | {"seed": job.seed}


@functools.lru_cache(maxsize=1)
def _search_supernet(checkpoint: str) -> Any:
    """The trial's supernet, loaded once per process (every genotype and seed inherits from
    the same one; training copies its weights and never changes it)."""
    from search_core.result import SearchResult

    return SearchResult.load(checkpoint).supernet


def run_jobs(jobs: list[Job], workers: int, epochs: int, quiet: bool) -> list[dict[str, Any]]:
    """Run the trainings, ``workers`` at once (spawned processes, one thread policy each);
    a progress bar counts epochs (sequential) or trainings (parallel)."""
    from tqdm import tqdm

    if workers == 1:
        bar = tqdm(total=len(jobs) * epochs, unit="epoch", desc="train", file=sys.stderr,
                   disable=quiet, dynamic_ncols=True)
        records = []
        for job in jobs:
            records.append(_train(job, on_epoch=lambda record: _advance(bar, record)))
            bar.n = len(records) * epochs
            bar.refresh()
        bar.close()
        return records
    import multiprocessing

    from search_core.threads import child_environment

    bar = tqdm(total=len(jobs), unit="training", desc="train", file=sys.stderr,
               disable=quiet, dynamic_ncols=True)
    with child_environment(1), ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=orphan_guard, initargs=(os.getpid(),)) as pool:
        records = []
        for record in pool.map(train_job, jobs):
            records.append(record)
            bar.update(1)
    bar.close()
    return records


def _advance(bar: Any, record: dict[str, float]) -> None:
    bar.update(1)
    bar.set_postfix({"val_acc": f"{record['val_acc']:.3f}"}, refresh=False)


def measure_latency(members: list[Member], result: Any, threads: int) -> dict[str, float]:
    """Each genotype's latency on this machine (batch 1, end to end, ``threads`` threads,
    median of interleaved rounds), in ms."""
    from search_core.family import info_layout
    from search_core.genotype import Genotype
    from search_core.timing import TimingSettings, measure_networks

    layout = info_layout(result.config.space, result.data_info)
    timings = measure_networks([Genotype.from_json(m.genotype_json) for m in members], layout,
                               1, TimingSettings(threads=threads))
    return {m.genotype_json: t.median_ms for m, t in zip(members, timings)}


def summarise(members: list[Member], records: list[dict[str, Any]], recipe: Any,
              data: dict[str, Any], trial: int,
              latency: dict[str, float] | None = None) -> dict[str, Any]:
    """Per genotype: test accuracy mean ± sd over seeds, validation accuracy, size, latency
    (ms, measured here), proxy accuracy."""
    rows = []
    for member in members:
        runs = [r for r in records if r["genotype"] == member.genotype_json]
        tests = [r["test_acc"] for r in runs]
        rows.append({
            "labels": list(member.labels), "genotype": member.genotype_json,
            "proxy_accuracy": member.proxy_accuracy,
            "test_acc_mean": statistics.fmean(tests),
            "test_acc_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "val_acc_mean": statistics.fmean(r["val_acc"] for r in runs),
            "params": runs[0]["params"], "cell_params": runs[0]["cell_params"],
            "latency_ms": (latency or {}).get(member.genotype_json),
            "seeds": [r["seed"] for r in runs], "runs": runs,
        })
    return {"trial": trial, "recipe": {k: v for k, v in recipe.to_dict().items() if k != "seed"},
            "data": data, "members": rows}


def _latency(ms: float | None) -> str:
    return "" if ms is None else f", {ms:.3g} ms"


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"trial {summary['trial']}: {len(summary['members'])} genotype(s), "
             f"{summary['recipe']['epochs']} epochs from {summary['recipe']['init']}, "
             "test accuracy mean ± sd over seeds (the test split chose nothing)"]
    for row in summary["members"]:
        proxy = "-" if row["proxy_accuracy"] is None else f"{row['proxy_accuracy']:.4f}"
        lines.append(f"  {','.join(row['labels']):<12} test {row['test_acc_mean']:.4f} ± "
                     f"{row['test_acc_sd']:.4f} (n={len(row['seeds'])}), val "
                     f"{row['val_acc_mean']:.4f}, proxy {proxy}, {row['params']} params, "
                     f"{row['cell_params']} in cells{_latency(row['latency_ms'])}")
    return "\n".join(lines)
