# STAND-IN: replaced by the train branch
"""The ``rpo`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.posttrain.run import rpo

__all__ = ["rpo"]
