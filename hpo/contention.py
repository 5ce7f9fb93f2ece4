"""Training speed on a busy machine: the supernet benchmark beside k CPU-bound neighbours.

Each measurement is a fresh process (``hpo bench supernet --json``), because OpenMP reads its
wait policy once, when torch is imported. The neighbours are busy loops that this module
starts and stops itself; each also ends on its own once its block of measurements has had
all the time it may take, so nothing outlives a killed benchmark for long. Measurements of
every (shape, policy) are interleaved within each block of neighbours, and the blocks
repeat, so a slow spell of the machine spreads over all of them.

Imports no torch: it only starts processes and reads their JSON.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from search_core.errors import ConfigError
from search_core.threads import (
    DEFAULT_WAIT,
    THREAD_VARS,
    WAIT_POLICIES,
    WAIT_VARS,
    check_wait,
    openmp_environment,
    threads_per_trial,
)

# a CPU-bound neighbour: spins until killed or until its lifetime (argv[1] seconds) is over
NEIGHBOUR_CODE = ("import sys, time\nend = time.monotonic() + float(sys.argv[1])\n"
                  "while time.monotonic() < end:\n    pass\n")


@dataclass(frozen=True)
class Shape:
    """A supernet shape of a shipped study (ops, cells and nodes are the defaults)."""

    name: str
    channels: int
    image: int
    in_channels: int = 1


SHAPES = {
    "digits": Shape("digits", channels=8, image=8),  # studies/digits.yaml
    "exp1": Shape("exp1", channels=16, image=28),  # studies/fashion-mnist-exp1.yaml
}


@dataclass(frozen=True)
class Policy:
    """Threads per process and OpenMP wait policy, under a name for the tables."""

    name: str
    threads: int
    wait: str

    @classmethod
    def parse(cls, text: str, cpus: int) -> Policy:
        """``old`` (before the thread policy: one thread per CPU, OpenMP's default wait),
        ``new`` (today's default for one trial), or ``THREADS:WAIT`` (e.g. ``2:passive``)."""
        if text == "old":
            return cls("old", cpus, "openmp")
        if text == "new":
            return cls("new", threads_per_trial(), DEFAULT_WAIT)
        threads, _, wait = text.partition(":")
        if not threads.isdigit() or int(threads) < 1 or wait not in WAIT_POLICIES:
            raise ConfigError(f"--policies: got {text!r}; expected old, new or THREADS:WAIT "
                              f"with WAIT one of {', '.join(WAIT_POLICIES)} (e.g. 2:passive)")
        return cls(text, int(threads), check_wait(wait))

    def environment(self) -> dict[str, str]:
        """The process environment without any thread or wait setting of the caller's,
        then this policy's."""
        env = {k: v for k, v in os.environ.items() if k not in (*WAIT_VARS, *THREAD_VARS)}
        return env | openmp_environment(self.threads, self.wait, base={})


@dataclass(frozen=True)
class Measurement:
    shape: str
    policy: str
    threads: int
    wait: str
    neighbours: int
    repeat: int
    images_per_s: float  # nan when the run failed or timed out


@dataclass(frozen=True)
class Row:
    """Medians over repeats for one (shape, policy, neighbours)."""

    shape: str
    policy: str
    threads: int
    wait: str
    neighbours: int
    images_per_s: float
    slowdown: float  # quiet images/s over these neighbours' images/s, same shape and policy
    fair_slowdown: float
    over_fair: float  # slowdown / fair_slowdown: 1.0 is a fair share of the CPUs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fair_slowdown(threads: int, neighbours: int, cpus: int) -> float:
    """What a fair share of the CPUs costs: quiet, ``threads`` threads use min(threads,
    cpus) CPUs; beside k busy neighbours every runnable thread gets min(1, cpus / (threads
    + k)) of a CPU. (With threads = cpus this is (k + n) / n.)"""
    share = min(1.0, cpus / (threads + neighbours))
    return min(threads, cpus) / (threads * share)


def time_limit(seconds: float) -> float:
    """The most one measurement may take: start-up, warm-up and the timed steps."""
    return seconds * 4 + 120


@contextmanager
def neighbours(count: int, lifetime: float) -> Iterator[None]:
    """``count`` busy-loop processes for the duration of the block (at most ``lifetime``
    seconds, should the block's process be killed)."""
    procs = [subprocess.Popen([sys.executable, "-c", NEIGHBOUR_CODE, str(lifetime)])
             for _ in range(count)]
    try:
        time.sleep(0.5 if count else 0.0)  # let the scheduler see them
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def bench_command(shape: Shape, policy: Policy, seconds: float, steps: int) -> list[str]:
    return [sys.executable, "-m", "hpo.cli", "bench", "supernet", "--json",
            "--channels", str(shape.channels), "--image", str(shape.image),
            "--in-channels", str(shape.in_channels), "--threads", str(policy.threads),
            "--openmp-wait", policy.wait, "--warmup", "2", "--steps", str(steps),
            "--max-seconds", str(seconds)]


def measure_once(shape: Shape, policy: Policy, seconds: float, steps: int) -> float:
    """Images/s of one fresh benchmark process; nan if it failed or overran its bound."""
    try:
        done = subprocess.run(bench_command(shape, policy, seconds, steps),
                              env=policy.environment(), capture_output=True, text=True,
                              timeout=time_limit(seconds), check=False)
    except subprocess.TimeoutExpired:
        return math.nan
    if done.returncode != 0:
        return math.nan
    return float(json.loads(done.stdout.strip().splitlines()[-1])["images_per_s"])


def run(shapes: Sequence[Shape], policies: Sequence[Policy], counts: Sequence[int],
        repeats: int, seconds: float, steps: int = 200,
        on_measurement: Callable[[Measurement], None] | None = None) -> list[Measurement]:
    """Every (shape, policy) beside every count of neighbours, ``repeats`` times."""
    found = []
    block = len(shapes) * len(policies) * time_limit(seconds)
    for repeat in range(repeats):
        for count in counts:
            with neighbours(count, lifetime=block):
                for shape in shapes:
                    for policy in policies:
                        speed = measure_once(shape, policy, seconds, steps)
                        found.append(Measurement(shape.name, policy.name, policy.threads,
                                                 policy.wait, count, repeat, speed))
                        if on_measurement is not None:
                            on_measurement(found[-1])
    return found


def summarise(found: Sequence[Measurement], cpus: int) -> list[Row]:
    """Medians over repeats; slowdowns against the same shape and policy with no neighbours
    (nan when that was not measured)."""
    groups: dict[tuple[str, str, int], list[Measurement]] = {}
    for m in found:
        groups.setdefault((m.shape, m.policy, m.neighbours), []).append(m)
    medians = {key: _median([m.images_per_s for m in ms]) for key, ms in groups.items()}
    rows = []
    for (shape, policy, count), ms in groups.items():
        speed = medians[(shape, policy, count)]
        quiet = medians.get((shape, policy, 0), math.nan)
        fair = fair_slowdown(ms[0].threads, count, cpus)
        slowdown = quiet / speed if speed > 0 else math.inf
        rows.append(Row(shape, policy, ms[0].threads, ms[0].wait, count, speed, slowdown,
                        fair, slowdown / fair))
    return rows


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def quiet_ratios(rows: Sequence[Row], policy: str, baseline: str) -> dict[str, float]:
    """Per shape: quiet images/s of ``policy`` over ``baseline`` (same run)."""
    quiet = {(r.shape, r.policy): r.images_per_s for r in rows if r.neighbours == 0}
    return {shape: quiet[(shape, policy)] / quiet[(shape, baseline)]
            for shape, name in quiet if name == policy and (shape, baseline) in quiet}


def table(rows: Sequence[Row]) -> str:
    lines = [f"{'shape':<7} {'policy':<12} {'threads':>7} {'wait':<8} {'neighbours':>10} "
             f"{'images/s':>9} {'slowdown':>9} {'fair':>5} {'/fair':>6}"]
    for r in rows:
        lines.append(f"{r.shape:<7} {r.policy:<12} {r.threads:>7} {r.wait:<8} "
                     f"{r.neighbours:>10} {r.images_per_s:>9.1f} {r.slowdown:>8.2f}x "
                     f"{r.fair_slowdown:>5.2f} {r.over_fair:>6.2f}")
    return "\n".join(lines)
