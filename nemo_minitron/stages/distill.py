# STAND-IN: replaced by the train branch
"""The ``distill`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.distill.run import distill_checkpoint as distill

__all__ = ["distill"]
