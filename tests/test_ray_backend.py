"""``hpo run --backend ray`` on a real two-node Ray cluster on loopback.

The cluster is Ray's own multi-node test utility (``ray.cluster_utils.Cluster``): a head and
a second node, each with one CPU, as separate raylet processes on 127.0.0.1. A trial runs on
each node at once; one trial's worker process is SIGKILLed mid-trial, and Tune retries it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import host_services
import pytest
from hpo_helpers import TINY, TINY_SLOW, WAIT_S, Hpo, cell, grid_product, states, wait_for

from search_core.threads import THREAD_VARS, WAIT_VARS

pytestmark = pytest.mark.slow

# the faults tests/test_hosts.py tests across real hosts run here only where it cannot
across_hosts = pytest.mark.skipif(
    host_services.unavailable() is None, reason="tested across hosts by tests/test_hosts.py")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (shared/NOTES.md)
    from ray.cluster_utils import Cluster

    # the nodes start without OpenMP settings: trials get theirs from the driver's job
    own = {name: os.environ.pop(name) for name in (*WAIT_VARS, *THREAD_VARS)
           if name in os.environ}
    try:
        nodes = Cluster(initialize_head=True,
                        head_node_args={"num_cpus": 1, "include_dashboard": False})
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
    finally:
        os.environ.update(own)
    yield nodes
    import ray

    ray.shutdown()
    nodes.shutdown()


def trial_workers() -> list[int]:
    """Pids of Ray worker processes running a Tune function trainable (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ImplicitFunc" in cmdline:
            found.append(int(entry))
    return found


def kill_one_worker_mid_trial(cli: Hpo, name: str, killed: list[int]) -> None:
    """Wait until a trial has reported an epoch, then SIGKILL the Ray worker process running
    it (the pid it reported, checked to be a Tune trainable's)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if cli.storage.exists() and name in _names(cli):
            running = [t for t in cli.trials(name) if t.state.name == "RUNNING"
                       and t.intermediate_values and "ray_worker_pid" in t.user_attrs]
            workers = trial_workers()
            if running and running[0].user_attrs["ray_worker_pid"] in workers:
                pid = running[0].user_attrs["ray_worker_pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.2)


def _names(cli: Hpo) -> list[str]:
    from hpo.storage import open_storage, study_names

    return study_names(open_storage(str(cli.storage)))


@pytest.mark.slow
@across_hosts
def test_trials_run_on_both_nodes_and_survive_a_killed_worker(cli: Hpo, cluster) -> None:
    killed: list[int] = []
    killer = threading.Thread(target=kill_one_worker_mid_trial, args=(cli, "tiny_slow", killed))
    killer.start()
    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 4,
                     "--concurrency", 2, "--cpus-per-trial", 1, "--retries", 2,
                     study=TINY_SLOW)
    killer.join(timeout=WAIT_S)
    assert result.code == 0, result.err
    assert killed, "no trial worker was found to kill"
    trials = cli.trials("tiny_slow")
    assert states(trials) == {"COMPLETE": 4}
    nodes = {node for t in trials for node in t.user_attrs["ray_nodes"]}
    assert len(nodes) == 2, nodes  # trials (or attempts of them) ran on both nodes
    assert all(t.user_attrs["ray_node_id"] in t.user_attrs["ray_nodes"] for t in trials)
    restarted = [t for t in trials if t.user_attrs.get("ray_restarts")]
    assert len(restarted) == 1, "the killed trial was retried by Tune and completed"
    for trial in trials:
        assert trial.user_attrs["family_summary"]["hypervolume"] >= 0
        assert trial.user_attrs["checkpoint"].endswith(f"tiny_slow/trial-{trial.number}.pt")
        assert len(trial.user_attrs["history"]) == 3
        assert trial.intermediate_values  # per-epoch val_acc reported through Ray


@pytest.mark.slow
def test_ray_and_local_trials_share_one_study(cli: Hpo, cluster) -> None:
    assert cli.run("--trials", 2).code == 0  # local backend first
    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 4)
    assert result.code == 0, result.err
    renamed = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 1,
                      "--name", "renamed")
    assert renamed.code == 0, renamed.err
    (other,) = cli.trials("renamed")  # its checkpoint does not overwrite tiny's trial 0
    assert other.user_attrs["checkpoint"].endswith("renamed/trial-0.pt")
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 4}
    on_ray = [t for t in trials if "ray_node_id" in t.user_attrs]
    assert len(on_ray) == 2
    for trial in on_ray:  # the thread policy reached the Ray workers (--threads 1)
        assert trial.user_attrs["threads"] == {
            "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "torch_threads": 1}
    shown = cli("show", "tiny", "--format", "csv")
    assert shown.code == 0 and len(shown.out.strip().splitlines()) == 1 + 4


@pytest.mark.slow
def test_intensification_through_ray(cli: Hpo, cluster) -> None:
    from hpo.records import CONFIG_ATTR, SEED_INDEX_ATTR

    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 5,
                     "--concurrency", 2, "--noise", "intensify", "--seed", 3)
    assert result.code == 0, result.err
    assert "incumbent" in result.out
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 5}
    pairs = [(t.user_attrs[CONFIG_ATTR], t.user_attrs[SEED_INDEX_ATTR]) for t in trials]
    assert len(set(pairs)) == 5 and max(index for _, index in pairs) >= 1
    for trial, (config, index) in zip(trials, pairs):
        assert trial.user_attrs["seed"] == 3 + index  # the driver's seed reached the worker
        assert trial.params == trials[config].params


@pytest.mark.slow
def test_grid_through_ray_runs_every_cell_once(cli: Hpo, cluster) -> None:
    result = cli.run("--backend", "ray", "--address", cluster.address, "--sampler", "grid",
                     "--trials", 100, "--concurrency", 2)
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 4}
    assert sorted(cell(t.params) for t in trials) == sorted(grid_product(TINY))


@pytest.mark.slow
def test_asha_prunes_through_ray(cli: Hpo, cluster) -> None:
    result = cli.run("--backend", "ray", "--address", cluster.address, "--pruner", "hyperband",
                     "--trials", 6, "--concurrency", 2, study=TINY_SLOW)
    assert result.code == 0, result.err
    counts = states(cli.trials("tiny_slow"))
    assert counts["COMPLETE"] + counts["PRUNED"] == 6 and not counts["FAIL"]


@pytest.mark.slow
@across_hosts
def test_killed_driver_resumes_without_losing_complete_trials(cli: Hpo, cluster) -> None:
    argv = cli.subprocess_argv("run", "--study", TINY_SLOW, "--backend", "ray", "--address",
                               cluster.address, "--trials", 4, "--concurrency", 1)
    with (cli.tmp / "driver.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=cli.tmp, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_for(lambda: _complete_and_running(cli, "tiny_slow"),
                     "a complete and a running Ray trial", proc)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    before = {t.number: t.values for t in cli.trials("tiny_slow") if t.state.name == "COMPLETE"}
    assert before
    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 4,
                     study=TINY_SLOW)
    assert result.code == 0, result.err
    trials = cli.trials("tiny_slow")
    assert states(trials)["COMPLETE"] == 4
    assert {n: trials[n].values for n in before} == before  # nothing completed was lost
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all("died" in t.user_attrs["fail_reason"] for t in failed)


def _complete_and_running(cli: Hpo, name: str) -> bool:
    if not cli.storage.exists() or name not in _names(cli):
        return False
    found = states(cli.trials(name))
    return found["COMPLETE"] >= 1 and found["RUNNING"] >= 1


@pytest.mark.slow
@across_hosts
def test_a_node_leaving_mid_study_does_not_stop_it(cli: Hpo, cluster) -> None:
    """Runs last: removes the second node once trials run, then adds a fresh one back."""
    worker_node = next(node for node in cluster.list_all_nodes() if not node.head)

    def remove_when_busy() -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if cli.storage.exists() and "tiny_slow" in _names(cli) and \
                    states(cli.trials("tiny_slow"))["COMPLETE"] >= 1:
                cluster.remove_node(worker_node, allow_graceful=False)
                return
            time.sleep(0.2)

    remover = threading.Thread(target=remove_when_busy)
    remover.start()
    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 5,
                     "--concurrency", 2, "--retries", 3, study=TINY_SLOW)
    remover.join(timeout=WAIT_S)
    cluster.add_node(num_cpus=1)
    assert result.code == 0, result.err
    assert worker_node not in cluster.list_all_nodes()
    assert states(cli.trials("tiny_slow"))["COMPLETE"] == 5


@pytest.mark.slow
def test_ray_address_from_the_environment_and_relative_artifacts(
        cli: Hpo, cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAY_ADDRESS joins that cluster (no local one started, no num_cpus clash), and a
    relative --artifacts is the folder the user ran hpo in, not a Ray worker's."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    result = cli.run("--backend", "ray", "--trials", 2, "--artifacts", "arts")
    assert result.code == 0, result.err
    trials = cli.trials("tiny")
    assert states(trials) == {"COMPLETE": 2}
    for trial in trials:
        assert Path(trial.user_attrs["checkpoint"]) == work / "arts" / "tiny" / \
            f"trial-{trial.number}.pt"
    assert sorted(p.name for p in (work / "arts" / "tiny").glob("trial-*.pt")) == \
        ["trial-0.pt", "trial-1.pt"]


POSTGRES = os.environ.get("NAS_HPO_TEST_POSTGRES")  # .ci/run starts one


@pytest.mark.slow
@pytest.mark.skipif(POSTGRES is None, reason="no PostgreSQL server: .ci/run starts one "
                    '(eval "$(bash .ci/postgres.sh)")')
def test_no_ray_file_holds_the_storage_password(cli: Hpo, cluster) -> None:
    """Tune pickled the searcher and the trainable's options, PostgreSQL URL and password
    included, into <artifacts>/ray_results (the folder a cluster shares)."""
    assert POSTGRES is not None
    password = POSTGRES.split(":")[2].split("@")[0]
    name = f"raypw{os.getpid()}{int(time.time())}"
    synthetic = Path(__file__).resolve().parent.parent / "studies" / "low-dim-synthetic.yaml"
    result = cli.run("--backend", "ray", "--address", cluster.address, "--trials", 2,
                     "--storage", POSTGRES, "--name", name, study=synthetic)
    assert result.code == 0, result.err
    files = [p for p in cli.artifacts.rglob("*") if p.is_file()]
    assert files, "Ray wrote nothing under --artifacts"
    holding = [str(p) for p in files if password.encode() in p.read_bytes()]
    assert holding == []
    assert password not in result.out + result.err
