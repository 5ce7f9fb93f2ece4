"""A local Ray cluster (``hpo run --backend ray`` without an address) listens on loopback only.

Ray reads its loopback switch (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) when it is first
imported; the backend set it after importing Ray, so Ray resolved 127.0.0.1 to the machine's
network address and every server of the local cluster listened on all interfaces, reachable
from other hosts (only Ray's token authentication kept them out). Its own module: no other
Ray cluster of the suite is up while it looks at the listening sockets.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hpo_helpers import TINY_SLOW, WAIT_S

pytestmark = pytest.mark.slow

RAY_SERVERS = ('"gcs_server"', '"raylet"', '"ray::')
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def ray_listeners() -> list[str]:
    """``ss`` lines of the TCP sockets Ray's servers listen on."""
    lines = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return [line for line in lines if any(name in line for name in RAY_SERVERS)]


def test_a_local_cluster_listens_on_loopback_only(tmp_path: Path) -> None:
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    assert not ray_listeners(), "another Ray cluster is running"
    argv = [sys.executable, "-m", "hpo.cli", "run", "--study", str(TINY_SLOW), "--backend",
            "ray", "--trials", "2", "--threads", "1", "-q", "--storage",
            str(tmp_path / "x.journal"), "--artifacts", str(tmp_path / "art")]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: set[str] = set()
    deadline = time.monotonic() + WAIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(line.split()[3] for line in ray_listeners())
        time.sleep(0.2)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert seen, "no Ray server was seen listening"
    assert all(address.startswith(LOOPBACK) for address in seen), sorted(seen)
