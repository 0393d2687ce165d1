"""Evaluation writes that the shared atomic writer (``nemo_minitron.atomic``) does not cover.

Reports and lm-eval task files are read by other processes (users, lm-eval, CI) while a run may
be interrupted or run concurrently; a reader must see either the old file or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from nemo_minitron.atomic import atomic_file, write_text_atomic

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` (a figure, ...) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_if_changed(path: PathLike, text: str) -> Path:
    """Atomically write ``text`` unless ``path`` already holds exactly it.

    Keeping an unchanged file's mtime lets caches keyed on it (``datasets``) stay valid.
    """
    path = Path(path)
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return path
    return write_text_atomic(path, text)
