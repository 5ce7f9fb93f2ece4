"""Services on the test hosts of ``tests/hosts.py``: PostgreSQL on a database host (Debian's
package, its data on that host's scratch) and a Ray cluster (a head and workers, each with
its own Ray temp folder on its own scratch), with token authentication as the README
recommends for a cluster on a network."""

from __future__ import annotations

import glob
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hosts
from hosts import Host, HostsUnavailable

from search_core.threads import THREAD_VARS, WAIT_VARS

RAY_PORT = 6379
PG_PORT = 5432
START_S = 120  # bound on starting one service
RAY = str(Path(sys.executable).parent / "ray")  # the ray command beside this Python


def unavailable() -> str | None:
    """Why the hosts and their services cannot be made here, or None (a quick check)."""
    reason = hosts.unavailable()
    if reason:
        return reason
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "no PostgreSQL binaries (apt-get install postgresql)"
    if not Path(RAY).exists():
        return f"{RAY}: not installed (pip install ray[tune])"
    return None


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise HostsUnavailable("no PostgreSQL binaries (apt-get install postgresql)")
    return Path(found[-1]).parent


@dataclass
class Postgres:
    """A PostgreSQL server on ``host``; ``url`` for the ``hpo`` database of role ``hpo``."""

    host: Host
    data: Path
    password: str

    @classmethod
    def start(cls, host: Host, scratch: Path) -> Postgres:
        bin_dir = postgres_bin()
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            raise HostsUnavailable("no postgres user") from None
        server = cls(host, scratch / "pg", password=secrets.token_hex(8))
        subnet = host.address.rsplit(".", 1)[0]  # the test network's hosts may connect
        script = (f"mkdir -p {server.data} && chown postgres {server.data} && "
                  f"echo {server.password} > {server.data}/pw && "
                  f"chown postgres {server.data}/pw && runuser -u postgres -- "
                  f"{bin_dir}/initdb -D {server.data}/db -U postgres -A scram-sha-256 "
                  f"--pwfile={server.data}/pw && echo 'host all all {subnet}.0/24 "
                  f"scram-sha-256' >> {server.data}/db/pg_hba.conf")
        host.run(["sh", "-c", script], timeout=START_S)
        server.resume()
        server.psql(f"CREATE ROLE hpo LOGIN PASSWORD '{server.password}'")
        server.psql("CREATE DATABASE hpo OWNER hpo")
        return server

    @property
    def url(self) -> str:
        return f"postgresql://hpo:{self.password}@{self.host.address}:{PG_PORT}/hpo"

    def _ctl(self, *args: str) -> None:
        self.host.run(["runuser", "-u", "postgres", "--", str(postgres_bin() / "pg_ctl"),
                       "-D", f"{self.data}/db", *args], timeout=START_S)

    def resume(self) -> None:
        self._ctl("-l", f"{self.data}/log", "-w", "-o",
                  f"-c listen_addresses={self.host.address} -p {PG_PORT} -k {self.data}",
                  "start")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def psql(self, sql: str) -> str:
        return self.host.run(["runuser", "-u", "postgres", "--", "env",
                              f"PGPASSWORD={self.password}", str(postgres_bin() / "psql"),
                              "-qAt", "-h", self.host.address, "-p", str(PG_PORT),
                              "-U", "postgres", "-c", sql], timeout=START_S).stdout


def ray_environment(token: str) -> dict[str, str]:
    """Ray's settings on every host: token authentication, Ray's node health checks every
    second (a node is dead after 3 missed checks, ~5 s, not Ray's default ~30 s), and no
    OpenMP settings (trials get theirs from the driver's job)."""
    env = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARS, *WAIT_VARS)}
    env.pop("RAY_ADDRESS", None)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
               RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
               RAY_health_check_failure_threshold="3")
    return env


@dataclass
class RayCluster:
    head: Host
    workers: list[Host]
    scratch: Path
    token: str

    @classmethod
    def start(cls, head: Host, workers: list[Host], scratch: Path) -> RayCluster:
        if not Path(RAY).exists():
            raise HostsUnavailable(f"{RAY}: not installed (pip install ray[tune])")
        cluster = cls(head, workers, scratch, token=secrets.token_hex(16))
        head.run([RAY, "start", "--head", "--node-ip-address", head.address,
                  "--port", str(RAY_PORT), "--num-cpus", "0", "--include-dashboard=false",
                  "--disable-usage-stats", "--temp-dir", str(scratch / "ray")],
                 env=cluster.env, timeout=START_S)
        for worker in workers:
            cluster.join(worker)
        cluster.wait_for_nodes(1 + len(workers))
        return cluster

    @property
    def env(self) -> dict[str, str]:
        return ray_environment(self.token)

    @property
    def address(self) -> str:
        return f"{self.head.address}:{RAY_PORT}"

    def join(self, worker: Host) -> None:
        """Start Ray on ``worker``: one CPU, so the two workers run one trial each."""
        worker.run([RAY, "start", "--address", self.address, "--node-ip-address",
                    worker.address, "--num-cpus", "1", "--disable-usage-stats",
                    "--temp-dir", str(self.scratch / "ray")], env=self.env, timeout=START_S)

    def alive_nodes(self) -> list[str]:
        """Node addresses the head counts alive."""
        script = ("import ray; ray.init(address='auto', logging_level='ERROR'); "
                  "print(' '.join(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))")
        result = self.head.run([sys.executable, "-c", script], env=self.env, timeout=START_S)
        return result.stdout.split()

    def wait_for_nodes(self, count: int) -> None:
        deadline = time.monotonic() + START_S
        while len(self.alive_nodes()) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray: {count} nodes not alive after {START_S} s")
            time.sleep(1)
