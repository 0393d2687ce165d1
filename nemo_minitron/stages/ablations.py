# STAND-IN: moved here properly later
"""The ``ablations`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.ablations import run_ablations as ablations

__all__ = ["ablations"]
