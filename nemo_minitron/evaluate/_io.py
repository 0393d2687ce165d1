"""Atomic file writes for evaluation outputs and generated task files.

Reports and lm-eval task files are read by other processes (users, lm-eval, CI) while a run may
be interrupted or run concurrently; a reader must see either the old file or the new one, never
a truncated one. Each write goes to a temporary sibling that is renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs and caches are shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_if_changed(path: PathLike, text: str) -> Path:
    """Atomically write ``text`` unless ``path`` already holds exactly it.

    Keeping an unchanged file's mtime lets caches keyed on it (``datasets``) stay valid.
    """
    path = Path(path)
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return path
    return atomic_write_bytes(path, data)
