"""Keeping an Optuna journal file readable after a write was cut short.

Optuna appends one JSON line per operation, under its lock. A write cut short (a full disk,
a killed process mid-write) leaves a *torn* last line without its newline. Optuna reads
past it, but the next append is glued onto it, and from then on the merged line fails to
parse and every study in the file is unreadable.

Before the harness opens a journal it calls :func:`repair_tail`, and if Optuna still cannot
read it, :func:`repair_after_error`; both work under Optuna's own lock and copy the file to
a backup before they change it:

- a torn tail is cut off;
- a line that does not parse but ends in complete operations (a torn line that a later
  append was glued onto, by an older version of this tool or another program) keeps those
  operations and loses the torn fragment.

Anything else that does not parse is refused with a clear error: the tool never guesses
which operations of a study to drop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from optuna.storages.journal import JournalFileOpenLock

from hpo.records import owner_alive, owner_on_this_host, worker_id
from search_core.errors import ConfigError

log = logging.getLogger(__name__)
OP_START = b'{"op_code":'  # how every operation Optuna writes begins


class JournalError(ConfigError):
    """A journal file that cannot be read or repaired safely; the message says what to do."""


class OwnedJournalLock(JournalFileOpenLock):
    """Optuna's lock of a journal file (a file created with ``O_EXCL``, the same file and
    rules, so other Optuna processes are excluded as before) that names its holder inside
    (``host:pid``). A process killed while holding it left it behind, and Optuna waits out
    a 30 s grace period before breaking it; a lock whose holder was a process on this host
    that no longer exists is broken at once. A holder on another host still gets the grace
    period (nothing here can tell whether it lives)."""

    def acquire(self) -> bool:
        self._break_if_holder_died()
        super().acquire()
        with contextlib.suppress(OSError):  # the file is ours now: sign it
            Path(self._lock_file).write_text(worker_id())
        return True

    def holder(self) -> str:
        try:
            return Path(self._lock_file).read_text(errors="replace").strip()
        except OSError:
            return ""

    def _break_if_holder_died(self) -> None:
        dead = self.holder()
        if not dead or not owner_on_this_host(dead) or owner_alive(dead):
            return
        aside = f"{self._lock_file}.{uuid.uuid4().hex}.dead"
        try:
            os.rename(self._lock_file, aside)  # one process wins the rename
        except OSError:
            return
        if Path(aside).read_text(errors="replace").strip() == dead:
            os.unlink(aside)
            log.info("removed the journal lock left by %s (that process died)", dead)
        else:  # a live holder's lock was taken aside meanwhile: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self._lock_file)
            os.unlink(aside)


@contextmanager
def _locked(lock: JournalFileOpenLock) -> Iterator[None]:
    """Optuna's own lock of the journal: no operation is being appended meanwhile."""
    while not lock.acquire():
        time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()


def check_is_journal(path: Path) -> None:
    """A non-empty file that does not begin with an Optuna operation is not a journal (a
    token, a CSV, someone's JSON lines): refused in one line, and never repaired."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        head = f.read(len(OP_START))
    if head != OP_START:
        raise JournalError(f"{path}: not an Optuna journal (it does not begin with a journal "
                           "operation); pass --storage a journal file written by hpo run, "
                           "or a new path (the tool changed nothing)")


def repair_tail(path: Path, lock: JournalFileOpenLock) -> str | None:
    """Make the end of the file safe to append to: cut off a torn last line, keep the whole
    operations of a last line glued onto a torn one; returns what was done (None: the file
    ends with a whole operation, or is empty). Only a file that is recognisably a journal
    (``check_is_journal``) is ever changed."""
    check_is_journal(path)
    if not path.exists() or path.stat().st_size == 0 or _last_line_whole(path):
        return None
    with _locked(lock):
        return _repair_locked(path)


def repair_after_error(path: Path, lock: JournalFileOpenLock, error: Exception) -> str:
    """Optuna failed to read ``path`` (``error``): repair the whole file, or raise a
    ``JournalError`` that names the file and what to do."""
    check_is_journal(path)
    with _locked(lock):
        done = _repair_locked(path)
    if done is None:
        raise JournalError(f"{path}: Optuna cannot read this journal ({type(error).__name__}: "
                           f"{str(error)[:200]}); restore it from a backup") from None
    return done


def _repair_locked(path: Path) -> str | None:
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    kept, salvaged = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fixed = _salvage(line)
        if fixed is None:
            raise JournalError(
                f"{path}: line {number} is not a journal operation and cannot be repaired "
                "safely; restore the file from a backup (the tool changed nothing)")
        salvaged += fixed is not line
        kept.append(fixed)
    if not tail and not salvaged:
        return None
    backup = _backup(path)
    text = b"\n".join(kept) + (b"\n" if kept else b"")
    tmp = path.with_name(path.name + ".repair.tmp")
    tmp.write_bytes(text)
    tmp.replace(path)
    what = []
    if tail:
        what.append(f"cut off a torn last line of {len(tail)} bytes (a write cut short)")
    if salvaged:
        what.append(f"kept the whole operations of {salvaged} line(s) glued onto torn ones")
    return f"{path}: {' and '.join(what)}; the file before is in {backup}"


def _salvage(line: bytes) -> bytes | None:
    """``line`` if it parses; else its longest suffix of whole operations that parses (a torn
    fragment with a complete operation glued onto it); else None."""
    if _parses(line):
        return line
    start = line.find(OP_START, 1)
    while start != -1:
        if _parses(line[start:]):
            return line[start:]
        start = line.find(OP_START, start + 1)
    return None


def _parses(line: bytes) -> bool:
    """Whether ``line`` is one whole journal operation (a JSON object with an op code)."""
    try:
        operation = json.loads(line)
    except ValueError:
        return False
    return isinstance(operation, dict) and "op_code" in operation


def _last_line_whole(path: Path, chunk: int = 1 << 20) -> bool:
    """Whether the file ends with a newline after an operation that parses (Optuna reads
    past a last line that does not, but the next append would be glued onto it)."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - chunk))
        end = f.read()
    if not end.endswith(b"\n"):
        return False
    lines = end[:-1].split(b"\n")
    if len(lines) == 1 and len(end) < size:  # a last line over ``chunk``: Optuna's read
        return True  # will tell (repair_after_error)
    return not lines[-1].strip() or _parses(lines[-1])


def _backup(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    try:
        shutil.copy2(path, backup)
    except OSError as err:
        raise JournalError(f"{path}: needs a repair but a backup could not be written "
                           f"({err.strerror or err}); free space and rerun") from None
    return backup
