"""``hpo run --backend ray`` across real hosts, and the faults real hosts meet.

Four hosts in network namespaces (``tests/hosts.py``): ``head`` (the Ray head, no CPUs for
trials, where the driver runs, as Ray requires), workers ``w1`` and ``w2`` (one CPU each) and
``db`` (PostgreSQL). Each host has its own address, hostname and private scratch folder (Ray's
temp folder, PostgreSQL's data); the rest of the filesystem plays the shared folder (NFS) the
Ray guide (docs/guides/ray.md) asks for ``--artifacts``. The faults: a worker host's Ray
processes killed mid-trial, a worker's cable pulled for longer than Ray's health check,
PostgreSQL restarted mid-run (and gone for good), the driver killed and the command run
again. Each ends with every trial accounted for: completed trials kept, lost attempts
recorded with their reason and run again, no configuration run twice that should run once.

Skipped with the reason where namespaces cannot be made (not root, no PostgreSQL or Ray).
Traffic goes only between the addresses these namespaces hold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from host_services import Postgres, RayCluster
from hosts import Host, HostsUnavailable, Network
from hpo_helpers import TINY_SLOW

pytestmark = pytest.mark.slow

WAIT_S = 240  # bound on one run or wait
PROBE = Path(__file__).resolve().parent / "host_probe.py"
REPO = Path(__file__).resolve().parent.parent
EPOCHS = 6  # a trial takes several seconds: long enough to be caught mid-trial


@dataclass
class Site:
    """The hosts, their services, and ``hpo`` run on the head against them."""

    net: Network
    postgres: Postgres
    ray: RayCluster
    shared: Path  # on the one filesystem every host sees (the Ray guide's shared folder)
    study: Path

    @property
    def head(self) -> Host:
        return self.net["head"]

    def argv(self, name: str, *args: Any) -> list[str]:
        return [sys.executable, "-m", "hpo.cli", "run", "--study", str(self.study),
                "--name", name, "--backend", "ray", "--address", self.ray.address,
                "--storage", self.postgres.url, "--artifacts", "arts", "-q",
                *map(str, args)]

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.ray.env, "PYTHONPATH": str(REPO), **extra}

    def start(self, name: str, *args: Any, **env: str) -> subprocess.Popen:
        """``hpo run`` on the head, from the shared folder (a relative ``--artifacts``)."""
        return self.head.popen(self.argv(name, *args), cwd=self.shared, env=self.env(**env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, name: str, *args: Any, **env: str) -> tuple[int, str]:
        proc = self.start(name, *args, **env)
        _, err = proc.communicate(timeout=WAIT_S)
        return proc.returncode, err

    def trials(self, name: str) -> list[dict[str, Any]]:
        out = self.head.run([sys.executable, str(PROBE), self.postgres.url, name],
                            env=self.env()).stdout
        return [json.loads(line) for line in out.splitlines()]

    def wait_for_trial(self, name: str, where: Callable[[dict[str, Any]], bool],
                       proc: subprocess.Popen) -> dict[str, Any]:
        """The first trial of ``name`` for which ``where`` holds, polled while ``proc`` runs."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"hpo run exited {proc.returncode} first: {proc.stderr.read()}")
            found = [t for t in self.trials(name) if where(t)]
            if found:
                return found[0]
            time.sleep(0.5)
        pytest.fail(f"no trial of {name} matched within {WAIT_S} s")

    def running_on(self, worker: str) -> Callable[[dict[str, Any]], bool]:
        """A trial running on ``worker`` that has reported an epoch (mid-trial)."""
        pids = self.net[worker].pids

        def mid_trial(trial: dict[str, Any]) -> bool:
            pid = trial["attrs"].get("ray_worker_pid")
            return trial["state"] == "RUNNING" and trial["epochs"] >= 1 and pid in pids()

        return mid_trial

    def heal(self) -> None:
        """Every worker host back in the cluster (after a test killed or cut one)."""
        for name in ("w1", "w2"):
            self.net.mend(name)
        alive = set(self.ray.alive_nodes())
        for worker in self.ray.workers:
            if worker.address not in alive:
                worker.kill_all()
                self.ray.join(worker)
        self.ray.wait_for_nodes(1 + len(self.ray.workers))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("hosts")
    net = Network(["head", "w1", "w2", "db"])
    try:
        net.up()
    except HostsUnavailable as err:
        pytest.skip(f"no test hosts: {err}")
    try:
        postgres = Postgres.start(net["db"], net.scratch)
        ray = RayCluster.start(net["head"], [net["w1"], net["w2"]], net.scratch)
        study = yaml.safe_load(TINY_SLOW.read_text())
        study.update(name="hosts", fidelity={"epochs": EPOCHS})
        study_file = root / "hosts.yaml"
        study_file.write_text(yaml.safe_dump(study))
        shared = root / "shared"
        shared.mkdir()
        yield Site(net, postgres, ray, shared, study_file)
    except HostsUnavailable as err:
        pytest.skip(f"no test hosts: {err}")
    finally:
        net.down()


@pytest.fixture
def healed(site: Site) -> Iterator[Site]:
    yield site
    site.heal()


def assert_accounted(trials: list[dict[str, Any]], complete: int) -> None:
    """Exactly ``complete`` COMPLETE trials, no configuration completed twice, and every FAIL
    trial has its reason and its configuration run again by a later trial."""
    states = Counter(t["state"] for t in trials)
    assert states["COMPLETE"] == complete and not states["RUNNING"], states
    done = [json.dumps(t["params"], sort_keys=True) for t in trials
            if t["state"] == "COMPLETE"]
    assert len(set(done)) == len(done), "a configuration completed twice"
    for trial in trials:
        if trial["state"] == "FAIL":
            assert trial["attrs"].get("fail_reason"), trial
            assert json.dumps(trial["params"], sort_keys=True) in done, \
                f"trial {trial['number']} failed and was not run again"


def assert_moved_to_w2(site: Site, trials: list[dict[str, Any]], hit: int, err: str) -> None:
    """The study is whole, and trial ``hit``, struck on w1, was retried by Tune on w2 from
    its last complete epoch, with one line on stderr."""
    assert_accounted(trials, 4)
    again = trials[hit]
    assert again["attrs"]["ray_node_ip"] == site.net["w2"].address
    assert again["attrs"].get("ray_restarts", 0) >= 1
    assert again["attrs"].get("resumed_from", 0) >= 1  # from its last epoch, not epoch 0
    assert len(warnings(err)) == 1, err


def record(fault: str, trials: list[dict[str, Any]], since: float, err: str,
           hit: int | None = None) -> None:
    """One row of the Ray guide's fault table, appended to ``$NAS_HPO_FAULT_LOG`` if set: the
    trials kept and lost, configurations completed twice, the lines on stderr, and the time
    from ``since`` (the fault, or the rerun) until trial ``hit`` (the one the fault struck)
    completed, else until the next trial completed."""
    path = os.environ.get("NAS_HPO_FAULT_LOG")
    if not path:
        return
    done = [json.dumps(t["params"], sort_keys=True) for t in trials
            if t["state"] == "COMPLETE"]
    after = [t["completed"] for t in trials if t["completed"] and t["completed"] >= since
             and hit in (None, t["number"])]
    row = {"fault": fault, "complete": len(done), "duplicated": len(done) - len(set(done)),
           "failed_attempts": sum(t["state"] == "FAIL" for t in trials),
           "retried_in_place": sum(bool(t["attrs"].get("ray_restarts")) for t in trials),
           "recovered_s": round(min(after) - since, 1) if after else None,
           "stderr": warnings(err)}
    with open(path, "a") as log:
        log.write(json.dumps(row) + "\n")


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("WARNING", "hpo run:"))]


def test_trials_spread_over_both_workers_and_artifacts_reach_the_shared_folder(
        site: Site) -> None:
    code, err = site.run("spread", "--trials", 4)
    assert code == 0, err
    trials = site.trials("spread")
    assert_accounted(trials, 4)
    workers = {site.net[name].address for name in ("w1", "w2")}
    assert {t["attrs"]["ray_node_ip"] for t in trials} == workers
    arts = site.shared / "arts" / "spread"  # relative to the folder hpo ran in
    assert sorted(p.name for p in arts.glob("trial-*.pt")) == [
        f"trial-{n}.pt" for n in range(4)]


def test_artifacts_on_a_folder_the_workers_cannot_see_is_one_line(site: Site) -> None:
    private = site.net.scratch / "arts"  # on the head's own disk only
    code, err = site.run("private", "--trials", 2, "--artifacts", private)
    (line,) = err.strip().splitlines()
    assert code == 2 and "not visible on Ray node" in line and str(private) in line, err
    assert not any(t["state"] == "COMPLETE" for t in site.trials("private"))


def strike_w1(site: Site, name: str, fault: Callable[[], None], label: str) -> None:
    """Run 4 trials; once one runs on w1 (an epoch done), ``fault``; then the study must be
    whole, that trial retried on w2 from its last epoch, with one line on stderr."""
    proc = site.start(name, "--trials", 4)
    caught = site.wait_for_trial(name, site.running_on("w1"), proc)
    fault_at = time.time()
    fault()
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    trials = site.trials(name)
    record(label, trials, fault_at, err, hit=caught["number"])
    assert_moved_to_w2(site, trials, caught["number"], err)


def test_a_worker_host_killed_mid_trial(healed: Site) -> None:
    strike_w1(healed, "killed", healed.net["w1"].kill_all,
              "a worker host's Ray processes killed mid-trial")


def test_a_worker_cut_off_longer_than_the_health_check(healed: Site) -> None:
    site = healed

    def cut_past_the_health_check() -> None:
        site.net.cut("w1")
        deadline = time.monotonic() + WAIT_S
        while site.net["w1"].address in site.ray.alive_nodes():  # Ray declares it dead
            assert time.monotonic() < deadline
            time.sleep(1)
        site.net.mend("w1")

    strike_w1(site, "cut", cut_past_the_health_check,
              "a worker's link cut past Ray's health check, then restored")


def test_postgres_restarted_mid_run(site: Site) -> None:
    proc = site.start("restart", "--trials", 4)
    site.wait_for_trial("restart", lambda t: t["state"] == "RUNNING" and t["epochs"] >= 1,
                        proc)
    fault_at = time.time()
    site.postgres.stop()
    time.sleep(5)
    site.postgres.resume()
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    trials = site.trials("restart")
    record("PostgreSQL restarted mid-run (down 5 s)", trials, fault_at, err)
    assert_accounted(trials, 4)
    assert len(warnings(err)) == 1, err  # the database did not answer; retrying


def test_postgres_gone_for_good_is_one_line_then_the_rerun_resumes(site: Site) -> None:
    proc = site.start("gone", "--trials", 4, HPO_STORAGE_RETRY_S="8")
    site.wait_for_trial("gone", lambda t: t["state"] == "COMPLETE", proc)
    site.postgres.stop()
    try:
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        site.postgres.resume()
    assert proc.returncode == 5, err
    assert "Traceback" not in err and site.postgres.password not in err
    assert "run the same command again" in warnings(err)[-1], err
    rerun_at = time.time()
    code, again = site.run("gone", "--trials", 4)
    assert code == 0, again
    trials = site.trials("gone")
    record("PostgreSQL gone past HPO_STORAGE_RETRY_S (8 s), then the command rerun", trials,
           rerun_at, err + again)
    assert_accounted(trials, 4)


def test_the_driver_killed_and_the_command_run_again(site: Site) -> None:
    proc = site.start("driver", "--trials", 4)
    site.wait_for_trial("driver", lambda t: t["state"] == "RUNNING" and t["epochs"] >= 1,
                        proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=WAIT_S)
    kept = {t["number"]: t["values"] for t in site.trials("driver")
            if t["state"] == "COMPLETE"}
    rerun_at = time.time()
    code, err = site.run("driver", "--trials", 4)
    assert code == 0, err
    trials = site.trials("driver")
    record("the driver killed (SIGKILL) mid-trial, then the command rerun", trials,
           rerun_at, err)
    assert_accounted(trials, 4)
    assert {n: trials[n]["values"] for n in kept} == kept
    assert any(t["state"] == "FAIL" for t in trials)  # the killed run's trial, re-run
    assert len(warnings(err)) == 1, err  # those trials marked failed and re-enqueued

