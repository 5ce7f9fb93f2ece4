"""What a study and its trials keep besides Optuna's own fields, and how to read it back."""

from __future__ import annotations

import itertools
import os
import platform
import socket
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna

from search_core.machine import cpu_model
from search_core.threads import openmp_environment, usable_cpus

WORKER_ATTR = "worker"  # "host:pid" of the process running a trial
HEARTBEAT_ATTR = "heartbeat"  # time.time() of the running trial's owner's latest sign of life


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_on_this_host(owner: str) -> bool:
    return owner.rsplit(":", 1)[0] == socket.gethostname()


def owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a trial still runs (unknowable on another host)."""
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions, git commit, CPU and threads: enough to tell two machines' studies apart."""
    versions = {}
    for package in ("nas-hpo", "torch", "optuna", "numpy", "scikit-learn", "scikit-optimize",
                    "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": git_commit(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads_per_trial": threads,
        "openmp": openmp_environment(threads),  # what the trials' processes get
        "host": socket.gethostname(),
    }


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One flat row per trial for `hpo show`."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    if trial.values is not None:
        for i, value in enumerate(trial.values):
            row["value" if len(trial.values) == 1 else f"value_{i}"] = value
    row |= {f"param_{k}": v for k, v in trial.params.items()}
    summary = attrs.get("family_summary", {})
    row["hypervolume"] = summary.get("hypervolume")
    row["controllability"] = summary.get("controllability")
    row["seconds"] = attrs.get("seconds")
    row["fail_reason"] = attrs.get("fail_reason")
    return row


def timing_summary(trials: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Where a study's wall time went, from consecutive complete trials.

    ``evaluate_s``: the search plus family evaluation (the trial's ``seconds``);
    ``overhead_s``: the rest of a trial's cycle — sampling, storage writes, logging, and the
    gap until the next trial starts — per trial (medians over trials)."""
    done = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                   and "seconds" in t.user_attrs), key=lambda t: t.datetime_start)
    if len(done) < 2:
        return {}
    cycles = [
        (nxt.datetime_start - t.datetime_start).total_seconds()
        for t, nxt in itertools.pairwise(done)
    ]
    evaluate_s = [float(t.user_attrs["seconds"]) for t in done[:-1]]
    overhead = [c - e for c, e in zip(cycles, evaluate_s)]
    median = statistics.median
    span = (done[-1].datetime_complete - done[0].datetime_start).total_seconds()
    return {
        "trials": len(done),
        "span_s": span,
        "evaluate_s": median(evaluate_s),
        "overhead_s": median(overhead),
        "overhead_share": median(overhead) / median(evaluate_s),
    }
