"""Stages that take their settings from ``recipes/`` (pipeline, ablations) load them here."""

from __future__ import annotations

import importlib
from types import ModuleType

from nemo_minitron.nemorun import import_recipes


def recipe_module(name: str = "") -> ModuleType:
    """``recipes.<name>`` (``recipes`` itself for ``""``), from the source checkout if it is not installed."""
    module = f"recipes.{name}" if name else "recipes"
    import_recipes(module)
    return importlib.import_module(module)
