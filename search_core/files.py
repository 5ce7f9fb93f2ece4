"""Files this package writes: whole or not at all."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any


def write_bytes_atomically(path: Path, data: bytes | memoryview) -> Path:
    """Write a temporary file, flush it to disk, then rename it over ``path``: a reader sees
    the old file or the new one, and a full disk is an ``OSError`` (ENOSPC), never a
    half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def write_atomically(path: Path, payload: dict[str, Any]) -> Path:
    """``payload`` saved by torch (a checkpoint), whole or not at all."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes_atomically(path, buffer.getbuffer())
