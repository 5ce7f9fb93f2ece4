"""Test hosts on one machine: network namespaces joined by a switch, each with its own address,
hostname and private scratch folder, for testing what crosses a network.

Each host is a network namespace plus a mount and UTS namespace held open by a ``sleep``
process; commands run inside all three through ``nsenter``. The hosts' ports sit on a bridge
in a namespace of their own (the switch), so the machine's own namespace gains no interface
and no address, and the hosts have no default route: traffic goes only between the addresses
made here (a program's attempt to reach any other address fails at once, without a packet
sent), and ``cut`` takes a host's port down as a pulled cable would. ``scratch`` is a tmpfs
mounted at the same path on every host, each seeing only its own (as on separate machines:
nothing there is shared); every other path is the machine's one filesystem, the "shared
folder" (NFS on real hosts).

Needs root, ``ip`` (iproute2), ``nsenter`` and ``unshare`` (util-linux). ``Network.up`` raises
``HostsUnavailable`` with the reason where they are missing; ``down`` kills every process the
hosts started and deletes the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_S = 60  # bound on one setup command


class HostsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, tools missing): the reason."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_S)
    if result.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


def unavailable() -> str | None:
    """Why test hosts cannot be made here, or None where they can (a quick check; making
    them may still fail, ``Network.up`` then says why)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not found (iproute2 / util-linux)"
    return None


@dataclass
class Host:
    name: str
    netns: str
    address: str
    port: str  # its cable's end on the switch
    holder: subprocess.Popen | None = None  # the process holding its mount/UTS namespaces

    def command(self, argv: Sequence[str], cwd: Path | None = None) -> list[str]:
        """``argv`` run on this host (its network, mounts and hostname) in ``cwd`` (by
        default this process's working directory)."""
        assert self.holder is not None, f"host {self.name} is not up"
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u",
                f"--wd={cwd or Path.cwd()}", "--", *argv]

    def run(self, argv: Sequence[str], timeout: float = COMMAND_S,
            env: dict[str, str] | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(argv, cwd), capture_output=True, text=True,
                                timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)} exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def popen(self, argv: Sequence[str], cwd: Path | None = None,
              **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv, cwd), **kwargs)

    def pids(self) -> list[int]:
        """Every process on this host but the namespace holder."""
        result = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                                text=True, timeout=COMMAND_S)
        holder = self.holder.pid if self.holder else -1
        return [int(p) for p in result.stdout.split() if int(p) != holder]

    def kill_all(self) -> list[int]:
        """SIGKILL every process on this host (a host that lost power, its disk kept)."""
        killed = []
        for _ in range(20):  # processes may fork while we kill
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        return killed


@dataclass
class Network:
    """Hosts ``names`` on 10.X.Y.0/24 (X, Y random per network); their scratch folders at
    one new path outside any private folder (services such as PostgreSQL run as other
    users), removed by ``down``."""

    names: Sequence[str]
    hosts: dict[str, Host] = field(default_factory=dict)
    scratch: Path = field(init=False)

    def __post_init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="nas-hpo-scratch-"))
        self.scratch.chmod(0o755)
        self.tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.switch = f"hsw{self.tag}"
        subnet = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
        for number, name in enumerate(self.names, start=2):
            self.hosts[name] = Host(name, netns=f"h{self.tag}{name}"[:15],
                                    address=f"{subnet}.{number}",
                                    port=f"p{self.tag}{number}"[:15])

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def up(self) -> Network:
        reason = unavailable()
        if reason:
            raise HostsUnavailable(reason)
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self.hosts.values():
                self._plug(host)
        except BaseException:
            self.down()
            raise
        return self

    def _plug(self, host: Host) -> None:
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.port, "netns", self.switch, "type", "veth",
            "peer", "name", "eth0", "netns", host.netns)
        _ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        script = (f"hostname {host.name}-{self.tag} && "
                  f"mount -t tmpfs -o mode=1777 scratch {self.scratch} && exec sleep infinity")
        host.holder = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + COMMAND_S
        while not self._mounted(host):
            if host.holder.poll() is not None or time.monotonic() > deadline:
                raise HostsUnavailable(f"host {host.name}: no private mount namespace "
                                       f"(unshare exited {host.holder.poll()})")
            time.sleep(0.05)

    def _mounted(self, host: Host) -> bool:
        assert host.holder is not None
        try:
            mounts = Path(f"/proc/{host.holder.pid}/mounts").read_text()
        except OSError:
            return False
        return f" {self.scratch} tmpfs " in mounts

    def cut(self, name: str) -> None:
        """Pull host ``name``'s cable (its port on the switch goes down)."""
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "down")

    def mend(self, name: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[name].port, "up")

    def down(self) -> None:
        for host in self.hosts.values():
            if host.holder is not None:
                host.kill_all()
                host.holder.kill()
                host.holder.wait(timeout=COMMAND_S)
        for netns in [h.netns for h in self.hosts.values()] + [self.switch]:
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True,
                           timeout=COMMAND_S)
        with contextlib.suppress(OSError):
            self.scratch.rmdir()  # empty: each host's tmpfs went with its namespace
