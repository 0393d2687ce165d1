"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nemo_minitron.evaluate.speed import cpu_name

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["cpu_name", "run_cli"]


def run_cli(*args: str) -> dict[str, Any]:
    """``nemo-minitron <args>`` as a child process: its wall time and peak resident memory."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "nemo_minitron.cli", *args, "--yes"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read() if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"nemo-minitron {' '.join(args)} failed:\n{stderr[-3000:]}")
    return {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}
