"""Where derived data (tokenizer folder, packed corpora) is cached on disk.

One place decides the location so every stage (tests, demo, recipes) reuses the same
artifacts instead of re-tokenizing, and users can relocate it with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "NEMO_MINITRON_CACHE"


def cache_dir() -> Path:
    """Return the cache root, creating it on demand.

    ``$NEMO_MINITRON_CACHE`` wins (CI, shared clusters, read-only homes); otherwise
    ``~/.cache/nemo_minitron``. Read at call time, so tests can point it at ``tmp_path``.
    """
    root = os.environ.get(CACHE_ENV_VAR)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "nemo_minitron"
    path.mkdir(parents=True, exist_ok=True)
    return path
