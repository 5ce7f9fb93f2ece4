"""One trial = one search run + family evaluation, as a black-box objective.

``evaluate`` turns a study and sampled parameters into a ``SearchConfig``
(``hpo.study_config.build_search_config``), runs it and returns the objective value(s) and
everything worth recording.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.study_config import build_search_config, study_probes
from hpo.study_spec import StudySpec
from search_core.config import SearchConfig
from search_core.data import DataConfig
from search_core.errors import ConfigError

if TYPE_CHECKING:
    from search_core.data import DataSplits
    from search_core.engine import EpochMetrics
    from search_core.family import FamilyTable
    from search_core.result import SearchResult
    from search_core.train import TrainRecipe


@functools.lru_cache(maxsize=4)
def cached_data(config: DataConfig) -> DataSplits:
    """Data sets are loaded once per process and shared by its trials."""
    from search_core.data import load_data

    return load_data(config)


def reference_complexity(spec: StudySpec) -> float:
    """The hypervolume box's complexity end: the study's value, else the heaviest architecture
    of the largest cells/nodes/channels the study can sample (same for every trial)."""
    if spec.objective.reference_complexity is not None:
        return spec.objective.reference_complexity
    if not spec.objective.entry.trains:
        return 0.0  # no family, no hypervolume
    from search_core.family import heaviest_complexity

    config, info = largest_config(spec)
    check_latency_table(config, info)
    return heaviest_complexity(config.space, info, spec.objective.complexity)


def largest_config(spec: StudySpec) -> tuple[SearchConfig, dict[str, Any]]:
    """The search config of the largest cells/nodes/channels the study can sample, and a
    summary of its data."""
    largest = {
        name: param.values_range()[1]
        for name, param in spec.params.items()
        if name in ("cells", "nodes", "channels")
    }
    config = build_search_config(spec, largest)
    return config, cached_data(config.data).summary()


def check_fits_in_memory(spec: StudySpec) -> None:
    """Refuse a study whose largest supernet cannot be trained in this machine's memory
    (estimated on the low side from shapes: ``search_core.footprint``), before anything is
    built."""
    if not spec.objective.entry.trains:
        return
    from search_core.footprint import machine_memory, training_bytes_estimate

    config, info = largest_config(spec)
    space, batch = config.space, config.train.batch_size
    need, have = training_bytes_estimate(space, info, batch), machine_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"study {spec.name}: training its largest supernet ({space.cells} cells, "
            f"{space.nodes} nodes, {space.channels} channels, batch {batch}) needs about "
            f"{need / 2**30:,.1f} GiB of memory (estimated from its shapes), more than "
            f"this machine's {have / 2**30:,.1f} GiB; lower search.space cells, nodes or "
            "channels, or search.train.batch_size")


def check_latency_table(config: SearchConfig, info: Mapping[str, Any]) -> None:
    """With ``train.op_costs: latency``, the table must exist and cover the space: fail
    before anything is written, not in every trial."""
    if config.train.op_costs == "latency":
        from search_core.costs import op_cost_weights

        op_cost_weights(config, info["in_channels"], tuple(info["image_size"]),
                        info["num_classes"])


@dataclass
class Evaluation:
    """What one evaluation of the objective gives: its values and what is worth recording."""

    values: list[float]
    family: FamilyTable | None  # None for synthetic objectives
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str | None = None
    threads: dict[str, Any] = field(default_factory=dict)  # what the trial ran with
    device: dict[str, Any] = field(default_factory=dict)  # where (search_core.device)
    precision: str | None = None
    resumed_from: int | None = None  # epochs an earlier attempt had done, when it resumed
    test_values: list[float] | None = None  # the objective on the test split (reporting only)
    pipeline: list[dict[str, Any]] = field(default_factory=list)  # per compressed member


RESUME_FOLDER = "resume"  # beside a study's trial checkpoints: searches to resume


def resume_path(checkpoint: Path | None, config: SearchConfig) -> Path | None:
    """Where the search of ``config`` keeps its resume point: in the study's artifacts,
    named by what it computes (``SearchConfig.identity``), so that a trial run again after
    a worker died, a Ctrl-C or a lost Ray node finds its predecessor's epochs, whatever its
    trial number; None without artifacts."""
    if checkpoint is None:
        return None
    text = json.dumps(config.identity(), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    folder = checkpoint.parent / RESUME_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest}.pt"


def search_or_forget(config: SearchConfig, data: DataSplits,
                     on_epoch: Callable[[EpochMetrics], None] | None,
                     state: Path | None) -> SearchResult:
    """The search, resumable from ``state``. Its resume point is kept when the process is
    interrupted (Ctrl-C) or the disk fails, to be resumed; a search that ended otherwise
    (pruned, diverged, a bad setting) would end so again, and its point is deleted."""
    from search_core.engine import search

    try:
        return search(config, data, on_epoch=on_epoch, state=state)
    except (KeyboardInterrupt, OSError):
        raise
    except Exception:
        if state is not None:
            state.unlink(missing_ok=True)
        raise


def finetune_recipe(spec: StudySpec, seed: int, threads: int | None) -> TrainRecipe | None:
    """How family members are fine-tuned under ``probes.accuracy: finetune`` (None: the
    proxy): the default training recipe for ``probes.finetune_epochs`` from the shared
    weights, seeded like the search."""
    if spec.probes.accuracy != "finetune":
        return None
    from search_core.train import TrainRecipe

    return TrainRecipe(epochs=spec.probes.finetune_epochs, init="inherit", seed=seed,
                       threads=threads, device=spec.device, precision=spec.precision)


def evaluate(
    spec: StudySpec,
    params: Mapping[str, Any],
    seed: int,
    reference: float,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    checkpoint: Path | None = None,
    threads: int | None = None,
    test: bool = False,
) -> Evaluation:
    """Run one search with ``params`` and evaluate its family with the study's objective
    (or compute an objective that does not train: torch is then not even imported).
    ``test``: also the objective with every member's accuracy taken on the test split, for
    reporting (``test_values``); nothing is chosen by it."""
    started = time.perf_counter()
    objective = spec.objective.entry
    if objective.from_params is not None:
        values = objective.from_params(spec.objective, params, seed)
        seconds = (objective.clock(spec.objective, params) if objective.clock is not None
                   else time.perf_counter() - started)
        return Evaluation(values, None, seconds=seconds)
    from search_core.family import evaluate_family
    from search_core.threads import in_effect, torch_threads

    config = build_search_config(spec, params, seed=seed).replace(threads=threads)
    data = cached_data(config.data)
    state = resume_path(checkpoint, config)
    with torch_threads(threads):  # the family evaluation too, not only the search
        threads_used = in_effect()
        result = search_or_forget(config, data, on_epoch, state)

        def family(held_out: DataSplits) -> FamilyTable:
            return evaluate_family(
                result,
                held_out,
                study_probes(spec, config.space.ops),
                complexity=spec.objective.complexity,
                reference=(spec.objective.reference_accuracy, reference),
                finetune=finetune_recipe(spec, seed, threads),
            )

        table = family(data)
        # members measured on the test split in the validation split's place; a member's
        # accuracy is its last value (no epoch or member is chosen by it)
        test_table = family(replace(data, val=data.test)) if test and not spec.pipeline \
            else None
        stages: list[dict[str, Any]] = []
        if spec.pipeline is not None:  # the trial's family: the compressed members
            from hpo.pipeline import compressed_family

            table, stages = compressed_family(result, data, spec.pipeline, params, table)
    saved = str(result.save(checkpoint)) if checkpoint is not None else None
    if state is not None:  # the trial's result is safe: its resume point is not needed
        state.unlink(missing_ok=True)
    assert objective.from_family is not None
    return Evaluation(
        device=result.device,
        precision=config.precision,
        resumed_from=result.resumed_from,
        test_values=(objective.from_family(spec.objective, test_table)
                     if test_table is not None else None),
        values=objective.from_family(spec.objective, table),
        family=table,
        history=result.history,
        seconds=time.perf_counter() - started,
        checkpoint=saved,
        threads=threads_used,
        pipeline=stages,
    )
