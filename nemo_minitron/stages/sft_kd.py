# STAND-IN: replaced by the train branch
"""The ``sft_kd`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.posttrain.run import sft_kd

__all__ = ["sft_kd"]
