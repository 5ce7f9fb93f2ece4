"""Training throughput of the supernet: images per second of full training steps.

One step is what the search does per minibatch, minus the hypernetwork: logits ``alpha`` ->
Gumbel-Softmax -> supernet forward -> cross-entropy -> backward -> SGD step on the weights
and Adam step on ``alpha``. Steps are timed one by one with ``time.perf_counter`` after
``warmup`` untimed steps; the median step time gives ``images_per_s``. ``max_seconds`` bounds
the timed part (at least ``MIN_STEPS`` steps are timed), for machines where a step may take
seconds.

``device`` (default cpu) and ``precision`` (default fp32, search_core/device.py) say where
the steps run and in what precision the supernet's forward pass runs (autocast; fp16 with
the search's gradient scaler). Models and data are made on the CPU from the seed, then moved:
the same starting point on every device. On a GPU each timed step ends with a
synchronisation, so its time is the GPU's work, not the launch's.

    result = bench_supernet(SearchSpace(channels=16), image=28, in_channels=1, batch=64)
    result.images_per_s
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from search_core.config import SearchSpace, TrainConfig
from search_core.device import (
    autocast,
    check_device_name,
    check_device_precision,
    check_precision,
    device_record,
    grad_scaler,
    resolve_device,
)
from search_core.engine import build_optimizers
from search_core.errors import ConfigError
from search_core.machine import cpu_model
from search_core.reference_supernet import ReferenceSuperNet
from search_core.supernet import SuperNet, gumbel_softmax, straight_through
from search_core.threads import torch_threads

Impl = Literal["fast", "per-edge"]
Mode = Literal["soft", "single_path"]
IMPLS: tuple[str, ...] = ("fast", "per-edge")
MODES: tuple[str, ...] = ("soft", "single_path")
NUM_CLASSES = 10
MIN_STEPS = 3


@dataclass(frozen=True)
class BenchResult:
    """Throughput of one implementation at one shape."""

    impl: str
    mode: str
    images_per_s: float
    step_seconds_median: float
    step_seconds: tuple[float, ...]
    batch: int
    image: int
    in_channels: int
    warmup: int
    threads: int
    peak_rss_mib: float
    device: str = "cpu"  # where the steps ran (cpu or cuda:N)
    precision: str = "fp32"  # of the supernet's forward pass (autocast)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(space: SearchSpace, image: int, in_channels: int, batch: int, steps: int,
           warmup: int, impl: str, mode: str, threads: int | None,
           max_seconds: float | None, device: str = "cpu", precision: str = "fp32") -> None:
    for name, value, low in (("image", image, 1), ("in_channels", in_channels, 1),
                             ("batch", batch, 2), ("steps", steps, 1), ("warmup", warmup, 0)):
        if value < low:
            raise ConfigError(f"{name}: got {value}; need >= {low}")
    if max_seconds is not None and not max_seconds > 0:
        raise ConfigError(f"max_seconds: got {max_seconds}; need > 0 (or None: no bound)")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads: got {threads}; need >= 1")
    if impl not in IMPLS:
        raise ConfigError(f"impl: got {impl!r}; expected one of {', '.join(IMPLS)}")
    if mode not in MODES:
        raise ConfigError(f"mode: got {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "single_path" and impl != "fast":
        raise ConfigError("mode 'single_path' is a mode of the fast supernet; use impl 'fast'")
    check_device_name(device)
    check_precision(precision)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (nothing on the CPU, whose steps are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict[str, Any]:
    """CPU model, cores and torch version: what a throughput number depends on."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}


class TrainingStep:
    """One training step of a supernet and its architecture logits (callable on x, y, on
    ``device``), the forward pass in ``precision``."""

    def __init__(self, space: SearchSpace, in_channels: int, impl: str, mode: str,
                 seed: int, device: torch.device | None = None,
                 precision: str = "fp32") -> None:
        self.device = device if device is not None else torch.device("cpu")
        torch.manual_seed(seed)  # built on the CPU: the same weights on every device
        cls = SuperNet if impl == "fast" else ReferenceSuperNet
        self.net = cls(space, in_channels, NUM_CLASSES).train().to(self.device)
        self.alpha = nn.Parameter(
            (1e-3 * torch.randn(2, space.num_edges, space.num_ops)).to(self.device))
        # the search's own optimisers at their default settings
        self.w_opt, self.a_opt = build_optimizers(TrainConfig(), self.net.parameters(),
                                                  [self.alpha])
        self.impl, self.mode, self.precision = impl, mode, precision
        self.scaler = grad_scaler(self.device, precision)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        gamma = gumbel_softmax(self.alpha, 1.0, self.generator)
        with autocast(self.device, self.precision):
            if self.mode == "single_path":
                logits = self.net.single_path(x, straight_through(gamma))  # type: ignore[operator]
            else:
                logits = self.net(x, gamma=gamma)
        loss = nn.functional.cross_entropy(logits.float(), y)
        self.w_opt.zero_grad(set_to_none=True)
        self.a_opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.w_opt.step()
            self.a_opt.step()
            return
        self.scaler.scale(loss).backward()  # fp16: as the search steps (engine._Trainer.step)
        self.scaler.unscale_(self.w_opt)
        self.scaler.unscale_(self.a_opt)
        nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.scaler.step(self.w_opt)
        self.scaler.step(self.a_opt)
        self.scaler.update()


def bench_supernet(
    space: SearchSpace,
    image: int = 28,
    in_channels: int = 1,
    batch: int = 64,
    steps: int = 10,
    warmup: int = 3,
    impl: Impl = "fast",
    mode: Mode = "soft",
    threads: int | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> BenchResult:
    """Time ``steps`` training steps on random data of shape (batch, in_channels, image,
    image); ``threads`` torch threads (None: torch's current setting); stop timing once
    ``max_seconds`` have passed and ``MIN_STEPS`` steps are timed; on ``device``, the
    forward pass in ``precision``."""
    return _run(space, image, in_channels, batch, steps, warmup, ((impl, mode),), threads,
                seed, max_seconds, device, precision)[0]


def compare_supernets(
    space: SearchSpace,
    image: int = 28,
    in_channels: int = 1,
    batch: int = 64,
    steps: int = 10,
    warmup: int = 3,
    mode: Mode = "soft",
    threads: int | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> tuple[BenchResult, BenchResult]:
    """(per-edge, fast) in one run: their steps alternate, so both see the same machine
    load. ``mode`` applies to the fast supernet; the per-edge one is always soft. Both run
    on ``device`` in ``precision``."""
    runs = (("per-edge", "soft"), ("fast", mode))
    return _run(space, image, in_channels, batch, steps, warmup, runs, threads,
                seed, max_seconds, device, precision)  # type: ignore[return-value]


def _run(space: SearchSpace, image: int, in_channels: int, batch: int, steps: int,
         warmup: int, impls: tuple[tuple[str, str], ...], threads: int | None,
         seed: int, max_seconds: float | None, device_name: str = "cpu",
         precision: str = "fp32") -> tuple[BenchResult, ...]:
    """Time (impl, mode) pairs on the same data, their steps alternating."""
    for impl, mode in impls:
        _check(space, image, in_channels, batch, steps, warmup, impl, mode, threads,
               max_seconds, device_name, precision)
    device = resolve_device(device_name)
    check_device_precision(device, precision)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        runs = [TrainingStep(space, in_channels, impl, mode, seed, device, precision)
                for impl, mode in impls]
        data = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, in_channels, image, image, generator=data).to(device)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=data).to(device)
        for _ in range(warmup):
            for run in runs:
                run(x, y)
        _synchronize(device)
        times: list[list[float]] = [[] for _ in runs]
        started = time.perf_counter()
        for step in range(steps):
            for run, seconds in zip(runs, times):
                start = time.perf_counter()
                run(x, y)
                _synchronize(device)
                seconds.append(time.perf_counter() - start)
            if (max_seconds is not None and step + 1 >= MIN_STEPS
                    and time.perf_counter() - started >= max_seconds):
                break
        used_threads = torch.get_num_threads()
    return tuple(
        BenchResult(
            impl=run.impl, mode=run.mode, images_per_s=batch / statistics.median(seconds),
            step_seconds_median=statistics.median(seconds), step_seconds=tuple(seconds),
            batch=batch, image=image, in_channels=in_channels, warmup=warmup,
            threads=used_threads, peak_rss_mib=_peak_rss_mib(),
            device=device_record(device)["device"], precision=precision,
        )
        for run, seconds in zip(runs, times)
    )
