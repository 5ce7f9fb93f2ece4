"""Shared helpers for the ``hpo`` end-to-end tests: the CLI against a storage and artifacts
folder under ``tmp_path``, tiny study files, and small predicates over trials."""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

import hpo.cli
from hpo.storage import open_storage

STUDIES = Path(__file__).resolve().parent / "studies"
TINY = STUDIES / "tiny.yaml"
TINY_SLOW = STUDIES / "tiny_slow.yaml"  # 3 epochs: a trial takes a few seconds
TINY_MULTI = STUDIES / "tiny_multi.yaml"  # objective (accuracy, complexity) of probe A
WAIT_S = 180  # upper bound on any wait for a subprocess
NO_STORAGE = {"table", "studies"}  # commands that read and write files, not a storage


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


class Hpo:
    """The ``hpo`` command against ``tmp_path/x.journal`` and ``tmp_path/art``."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp_path
        self.storage = tmp_path / "x.journal"
        self.artifacts = tmp_path / "art"
        self._capsys = capsys

    def argv(self, command: str, *args: Any) -> list[str]:
        """``args`` come last, so they override these defaults."""
        extra = [] if command in NO_STORAGE else ["--storage", str(self.storage)]
        if command == "run":  # trials in this process (tests patch it), on one torch thread
            extra += ["--artifacts", str(self.artifacts), "--jobs", "1", "--threads", "1", "-q"]
        return [command, *extra, *map(str, args)]

    def __call__(self, command: str, *args: Any) -> Result:
        self._capsys.readouterr()
        code = hpo.cli.main(self.argv(command, *args))
        out, err = self._capsys.readouterr()
        return Result(code, out, err)

    def run(self, *args: Any, study: Path = TINY) -> Result:
        return self("run", "--study", study, *args)

    def subprocess_argv(self, command: str, *args: Any) -> list[str]:
        return [sys.executable, "-m", "hpo.cli", *self.argv(command, *args)]

    def study(self, name: str) -> optuna.Study:
        assert self.storage.exists(), "no storage was written"
        return optuna.load_study(study_name=name, storage=open_storage(str(self.storage)))

    def trials(self, name: str) -> list[FrozenTrial]:
        return self.study(name).get_trials()

    def write_study(self, edit: Callable[[dict[str, Any]], None], base: Path = TINY) -> Path:
        """A copy of a study file, changed by ``edit``, under tmp_path."""
        raw = yaml.safe_load(base.read_text())
        edit(raw)
        path = self.tmp / "edited.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def nothing_written(self) -> bool:
        return not any(p.exists() for p in (self.storage, self.artifacts,
                                            Path(f"{self.storage}.lock")))


def states(trials: list[FrozenTrial]) -> Counter[str]:
    return Counter(t.state.name for t in trials)


def of_state(trials: list[FrozenTrial], state: TrialState) -> list[FrozenTrial]:
    return [t for t in trials if t.state == state]


def cell(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def grid_product(path: Path = TINY) -> set[tuple[tuple[str, Any], ...]]:
    grid = yaml.safe_load(path.read_text())["grid"]
    names = sorted(grid)
    return {cell(dict(zip(names, combo))) for combo in itertools.product(*map(grid.get, names))}


def setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets a dotted key of a study file (``None`` deletes it)."""

    def edit(raw: dict[str, Any]) -> None:
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            del node[last]
        else:
            node[last] = value

    return edit


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"hpo exited ({proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail with ``TimeoutError`` (instead of hanging) when the block runs past ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
