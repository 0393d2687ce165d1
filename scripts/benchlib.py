"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from nemo_minitron.evaluate.speed import cpu_name

__all__ = ["cpu_name"]
