# STAND-IN: moved here properly later
"""The ``pipeline`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.pipeline import pipeline

__all__ = ["pipeline"]
