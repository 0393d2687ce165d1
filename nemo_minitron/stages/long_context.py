# STAND-IN: replaced by the train branch
"""The ``long_context`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.posttrain.run import long_context

__all__ = ["long_context"]
