"""Where a run's trials go: GPUs for local workers, and threads per trial.

On a GPU machine, local ``--jobs`` workers are spread over the visible GPUs,
``--trials-per-gpu`` of them per GPU, each worker seeing only its own GPU through
``CUDA_VISIBLE_DEVICES`` (so ``device: auto`` or ``cuda`` means that GPU inside it). Ray
trials ask Ray for ``--gpus-per-trial`` GPUs (fractions share a GPU) and Ray sets
``CUDA_VISIBLE_DEVICES`` itself. Threads per trial: the usable CPUs shared by the trials
that run at once (at least one), unless ``--threads`` says otherwise.

Pure functions of their arguments except :func:`visible_gpus`, which asks torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from search_core.errors import ConfigError

VISIBLE_VAR = "CUDA_VISIBLE_DEVICES"


def parse_visible(value: str) -> list[str]:
    """The GPU ids of a ``CUDA_VISIBLE_DEVICES`` value ("" or "-1": none)."""
    ids = [part.strip() for part in value.split(",") if part.strip()]
    return [] if ids in ([], ["-1"]) else ids


def visible_gpus(environ: Mapping[str, str] | None = None, count: int | None = None) -> list[str]:
    """The GPUs this process may hand to workers: ``CUDA_VISIBLE_DEVICES``'s entries when
    it is set, else 0..count-1 (``count``: torch's device count when not given)."""
    environ = os.environ if environ is None else environ
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if VISIBLE_VAR in environ:
        return parse_visible(environ[VISIBLE_VAR])[:count]
    return [str(index) for index in range(count)]


def gpu_slots(gpus: Sequence[str], trials_per_gpu: int) -> list[str]:
    """One entry per local worker: ``trials_per_gpu`` workers per GPU, spread so that the
    first workers take different GPUs (2 GPUs, 2 per GPU: 0, 1, 0, 1)."""
    if trials_per_gpu < 1:
        raise ConfigError(f"--trials-per-gpu: got {trials_per_gpu}; need >= 1")
    return [gpu for _ in range(trials_per_gpu) for gpu in gpus]


def worker_gpu(index: int, slots: Sequence[str]) -> str:
    """The GPU of local worker ``index`` (a replacement worker keeps its index's GPU);
    more workers than slots share the GPUs round-robin."""
    return slots[index % len(slots)]


def threads_for(cpus: int, concurrent: int) -> int:
    """Torch threads of each of ``concurrent`` trials sharing ``cpus`` CPUs."""
    return max(1, cpus // max(1, concurrent))


def wants_gpu(device: str) -> bool:
    """Whether a study's device places local workers on GPUs (``cuda:N`` names one GPU
    for every worker: no placement)."""
    return device in ("auto", "cuda")
