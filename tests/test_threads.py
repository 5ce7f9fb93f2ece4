"""The thread policy (search_core/threads.py): what it decides, what it puts into the
environment of the processes the harness starts, and that OpenMP really runs with it there
(``OMP_DISPLAY_ENV=VERBOSE`` makes GNU OpenMP print its settings when torch loads it; its
spin count is 0 when threads wait passively, 300000 by default, 3e10 when active)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hpo_helpers import TINY, WAIT_S, Hpo

from hpo.contention import Policy, fair_slowdown, summarise
from search_core.errors import ConfigError
from search_core.threads import (
    _cgroup_cpu_quota,
    child_environment,
    configure_process,
    openmp_environment,
    oversubscription,
    threads_per_trial,
    usable_cpus,
)

OPENMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenMP variable of the caller's (CI or a developer's shell may set some)."""
    for name in OPENMP_VARS:
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------- decisions


def test_one_thread_per_trial_unless_told() -> None:
    assert threads_per_trial() == 1
    assert threads_per_trial(jobs=2) == 1
    assert threads_per_trial(threads=2) == 2
    assert oversubscription(threads=1, jobs=2, cpus=2) is None
    assert oversubscription(threads=2, jobs=1, cpus=2) is None
    assert "2 job(s) x 2 thread(s) oversubscribe the 2 usable CPU(s)" in str(
        oversubscription(threads=2, jobs=2, cpus=2))


@pytest.mark.parametrize("threads, jobs", [(0, 1), (-1, 1), (1, 0)])
def test_bad_thread_or_job_counts_are_config_errors(threads: int, jobs: int) -> None:
    with pytest.raises(ConfigError, match=r"--threads|--jobs"):
        threads_per_trial(threads=threads, jobs=jobs)


def test_passive_wait_by_default_but_a_users_own_setting_wins() -> None:
    assert openmp_environment(base={}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp_environment(base={"OMP_WAIT_POLICY": "active"}) == {
        "OMP_WAIT_POLICY": "active"}  # handed on as it is
    assert openmp_environment(base={"GOMP_SPINCOUNT": "1000"}) == {"GOMP_SPINCOUNT": "1000"}
    assert openmp_environment(wait="active", base={"OMP_WAIT_POLICY": "passive"}) == {
        "OMP_WAIT_POLICY": "ACTIVE"}
    assert openmp_environment(wait="openmp", base={}) == {}
    assert openmp_environment(threads=3, base={}) == {
        "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    with pytest.raises(ConfigError, match="passive, active, openmp"):
        openmp_environment(wait="spin", base={})


def test_cgroup_quota_caps_usable_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(tmp_path) is None
    assert _cgroup_cpu_quota(tmp_path / "absent") is None
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_child_environment_is_scoped(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with child_environment(threads=1):
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "OMP_WAIT_POLICY" not in os.environ


def test_configure_process_keeps_a_users_wait_policy(
        clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    configure_process(threads=2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_NUM_THREADS"] == "2"


# ---------------------------------------------------------------------------- benchmark maths


def test_fair_slowdown_is_the_cost_of_a_fair_share_of_the_cpus() -> None:
    assert fair_slowdown(threads=2, neighbours=0, cpus=2) == 1.0
    assert fair_slowdown(threads=2, neighbours=1, cpus=2) == pytest.approx(1.5)  # (k+n)/n
    assert fair_slowdown(threads=2, neighbours=2, cpus=2) == pytest.approx(2.0)
    assert fair_slowdown(threads=1, neighbours=1, cpus=2) == 1.0  # a core of its own
    assert fair_slowdown(threads=1, neighbours=2, cpus=2) == pytest.approx(1.5)


def test_benchmark_policies_parse_and_summaries_compare_with_quiet() -> None:
    assert Policy.parse("old", cpus=4) == Policy("old", 4, "openmp")
    assert Policy.parse("new", cpus=4) == Policy("new", 1, "passive")
    assert Policy.parse("2:active", cpus=4) == Policy("2:active", 2, "active")
    for bad in ("two:passive", "0:passive", "2:spin", "fast"):
        with pytest.raises(ConfigError, match="--policies"):
            Policy.parse(bad, cpus=4)
    env = Policy("old", 2, "openmp").environment()
    assert "OMP_WAIT_POLICY" not in env and env["OMP_NUM_THREADS"] == "2"

    from hpo.contention import Measurement

    found = [Measurement("digits", "old", 2, "openmp", k, r, speed)
             for k, r, speed in [(0, 0, 100.0), (0, 1, 120.0), (1, 0, 10.0), (1, 1, 12.0)]]
    (quiet, loaded) = summarise(found, cpus=2)
    assert quiet.images_per_s == 110.0 and quiet.slowdown == 1.0
    assert loaded.slowdown == pytest.approx(10.0)
    assert loaded.over_fair == pytest.approx(10.0 / 1.5)


# ---------------------------------------------------------------------------- in the processes


PASSIVE, DEFAULT, ACTIVE = "0", "300000", "30000000000"


def _spin_counts(argv: list[str], **env: str) -> list[str]:
    """GNU OpenMP's spin counts in the processes ``argv`` started (torch and scikit-learn
    each load a copy of GNU OpenMP; each prints its settings)."""
    full = {k: v for k, v in os.environ.items() if k not in OPENMP_VARS}
    done = subprocess.run(argv, env=full | env | {"OMP_DISPLAY_ENV": "VERBOSE"},
                          capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.split("=")[1].strip().strip("'") for line in done.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")]


BENCH = [sys.executable, "-m", "hpo.cli", "bench", "supernet", "--channels", "4", "--nodes",
         "2", "--image", "8", "--batch", "4", "--steps", "1", "--warmup", "0", "--json"]


@pytest.mark.slow
def test_openmp_in_hpo_processes_waits_passively_unless_told() -> None:
    assert set(_spin_counts(BENCH)) == {PASSIVE}
    assert set(_spin_counts(BENCH, OMP_WAIT_POLICY="ACTIVE")) == {ACTIVE}  # the user's wins
    assert set(_spin_counts([*BENCH, "--openmp-wait", "active"])) == {ACTIVE}
    assert set(_spin_counts([*BENCH, "--openmp-wait", "openmp"])) == {DEFAULT}
    search = [sys.executable, "-m", "search_core", "--epochs", "1", "--cells", "1", "--nodes",
              "1", "--channels", "2", "--threads", "1"]
    assert set(_spin_counts(search)) == {PASSIVE}


@pytest.mark.slow
def test_local_workers_run_one_passive_thread_each(tmp_path: Path) -> None:
    """--jobs 2 without --threads: each worker process runs its trials with one torch
    thread and was started with the policy's OpenMP environment."""
    cli = Hpo(tmp_path, None)  # type: ignore[arg-type]
    argv = [sys.executable, "-m", "hpo.cli", "run", "--study", str(TINY), "--trials", "4",
            "--jobs", "2", "--storage", str(cli.storage), "--artifacts", str(cli.artifacts),
            "-q"]
    counts = _spin_counts(argv)
    # every process that loads torch prints: the driver and each of the two workers
    assert set(counts) == {PASSIVE} and len(counts) >= 3
    trials = cli.trials("tiny")
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    for trial in trials:
        assert trial.user_attrs["threads"] == {
            "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "torch_threads": 1}
