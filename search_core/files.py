"""Files this package writes: whole or not at all."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch


def write_atomically(path: Path, payload: dict[str, Any]) -> Path:
    """Serialise in memory, write a temporary file, then rename it over ``path``: a reader
    sees the old file or the new one, and a full disk is an ``OSError`` (ENOSPC), never a
    half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path
